#!/usr/bin/env python3
"""Are generated keys and passwords generated once and kept on upgrades?

    keep_test.py OUTDIR        (HELM: the helm binary)

The chart generates signing keys, certificates and passwords when it finds
none, and reads them back with `lookup` on upgrades. Without a cluster,
this test renders a first install, serves its Secrets and ConfigMaps from
fake_apiserver.py as "the cluster", and renders upgrades against it with
`helm template --is-upgrade --dry-run=server`:

  1. an upgrade keeps every generated key, certificate and password, and the
     pods' checksum annotation (a no-op upgrade restarts nothing); the
     migration hook's copy of each database password equals the original;
  2. control: rendered without the cluster, the values differ (so 1 is lookup's doing);
  3. rotation: with the storefront's key Secret deleted, the upgrade makes a
     new key and a new certificate for it, and keeps the order's;
  4. a password supplied as a value replaces the generated one.

What it cannot prove: how a real API server and RBAC answer lookup.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rendered  # noqa: E402
import yaml  # noqa: E402

CHART = Path(__file__).resolve().parents[2] / "helm" / "shop"
HELM = os.environ.get("HELM", "helm")
passed = failed = 0


def check(cond: bool, what: str) -> None:
    global passed, failed
    if cond:
        passed += 1
        print(f"  ok   {what}")
    else:
        failed += 1
        print(f"  FAIL {what}")


def render(out: Path, *args: str, cluster: Path | None = None) -> list[dict]:
    cmd = [HELM, "template", "shop", str(CHART), "--namespace", "shop", *args]
    env = dict(os.environ)
    if cluster is not None:
        port = free_port()
        kubeconfig = out.with_suffix(".kubeconfig")
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            "users: [{name: fake, user: {}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: shop}}]\n"
            "current-context: fake\n"
        )
        env["KUBECONFIG"] = str(kubeconfig)
        server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_apiserver.py")), str(port), str(cluster)])
        try:
            wait_port(port)
            cmd += ["--dry-run=server"]
            out.write_text(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        finally:
            server.terminate()
            server.wait()
    else:
        out.write_text(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    return rendered.load_file(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("fake API server did not start")


def data(docs: list[dict], kind: str, name: str) -> dict:
    obj = rendered.find(docs, kind, name)
    return rendered.data_of(obj) if obj else {}


def kept(docs: list[dict]) -> dict:
    """Everything the chart generates, by object and key."""
    out = {}
    for d in docs:
        if d["kind"] == "Secret" and not rendered.is_hook(d) or (d["kind"] == "ConfigMap" and d["metadata"]["name"] == "shop-issuers"):
            for k, v in rendered.data_of(d).items():
                out[f"{d['kind']} {d['metadata']['name']}/{k}"] = v
    return out


def checksums(docs: list[dict]) -> dict:
    return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in docs if d["kind"] == "Deployment"}


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    first_path = out / "keep-install.yaml"
    first = render(first_path)
    generated = kept(first)
    # 3 x (service role + superuser password), 2 x (private key + certificate), the admin's password
    check(len(generated) == 11, f"the first install generates 11 keys, certificates and passwords: {len(generated)}")

    # 1. upgrade against the cluster the first install made
    upgrade = render(out / "keep-upgrade.yaml", "--is-upgrade", cluster=first_path)
    after = kept(upgrade)
    changed = sorted(k for k in generated if after.get(k) != generated[k])
    check(not changed, f"an upgrade keeps all of them{': changed ' + ', '.join(changed) if changed else ''}")
    check(checksums(first) == checksums(upgrade), "a no-op upgrade leaves the pods' checksum annotations alone (no restarts)")
    for svc in ("productinfo", "order", "storefront"):
        copy = data(upgrade, "Secret", f"shop-{svc}-migrate").get("password")
        check(copy == generated[f"Secret shop-{svc}-db/password"], f"{svc}: the pre-upgrade migration hook gets the same database password")

    # 2. control: no cluster, no lookup
    blind = kept(render(out / "keep-blind.yaml", "--is-upgrade"))
    same = sorted(k for k in generated if blind.get(k) == generated[k])
    check(not same, "control: without the cluster every value is new (so lookup is what keeps them)")

    # 3. rotation of the storefront's key
    cluster = [d for d in first if not (d["kind"] == "Secret" and d["metadata"]["name"] == "shop-storefront-signing-key")]
    rotated_cluster = out / "keep-rotated-cluster.yaml"
    rotated_cluster.write_text(yaml.safe_dump_all(cluster))
    rotated = kept(render(out / "keep-rotated.yaml", "--is-upgrade", cluster=rotated_cluster))
    check(rotated["Secret shop-storefront-signing-key/private.pem"] != generated["Secret shop-storefront-signing-key/private.pem"],
          "rotation: with its Secret deleted, the storefront gets a new key")
    check(rotated["ConfigMap shop-issuers/storefront.pem"] != generated["ConfigMap shop-issuers/storefront.pem"],
          "rotation: and a new certificate for the new key")
    check(rotated["ConfigMap shop-issuers/order.pem"] == generated["ConfigMap shop-issuers/order.pem"]
          and rotated["Secret shop-order-signing-key/private.pem"] == generated["Secret shop-order-signing-key/private.pem"],
          "rotation: the order's key and certificate stay")

    # 4. a supplied value wins
    supplied = kept(render(out / "keep-supplied.yaml", "--is-upgrade", "--set", "storefront.admin.password=new-admin-password",
                           cluster=first_path))
    check(supplied["Secret shop-storefront-admin/password"] == b"new-admin-password", "a supplied admin password replaces the generated one")

    print(f"keep: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
