// Progressive enhancement only: every page works without this file.
// Live order status: elements with data-live="/orders/<id>/events" follow
// the server-sent events of that order and update their text and colour.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-live]")) {
    if (!("EventSource" in window)) return;
    const events = new EventSource(el.dataset.live);
    events.addEventListener("status", (e) => {
      const { label, css } = JSON.parse(e.data);
      el.textContent = label;
      el.className = "status " + css;
      if (css === "shipped" || css === "cancelled") {
        for (const form of document.querySelectorAll("[data-hide-when-final]")) form.hidden = true;
      }
    });
    events.addEventListener("end", () => events.close());
  }
});
