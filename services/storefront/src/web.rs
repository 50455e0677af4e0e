//! The web shop: server-rendered pages (askama templates, escaped by
//! default) that work without JavaScript, for browsers.
//!
//! Every page request passes, in order: the request log, the security
//! headers, the session (cookie → server-side session, created on first
//! visit), and for every POST the CSRF check. Handlers live in the
//! submodules by area.

mod account;
mod admin;
mod assets;
mod orders;
mod session;
mod shop;
mod views;

use std::{borrow::Cow, sync::Arc};

use askama::Template;
use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use shop_runtime::{pg::Db, upstream::Fault};
use tokio_util::sync::CancellationToken;

pub use session::Session;

use crate::{accounts::Accounts, config::Cidr, db::Lifetime, error::Error, upstream::Upstreams};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub pool: Db,
    pub metrics: shop_runtime::metrics::Metrics,
    pub accounts: Accounts,
    pub upstreams: Upstreams,
    /// Cancelled when the listeners close: live status streams end then.
    pub stopping: CancellationToken,
    pub cookie_secure: bool,
    /// The key of the sessions' CSRF tokens.
    pub csrf_key: [u8; 32],
    pub lifetime: Lifetime,
    pub trusted_proxies: Vec<Cidr>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// The web shop's routes.
pub fn router(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(shop::catalog))
        .route("/products/{id}", get(shop::product))
        .route("/cart", get(shop::cart))
        .route("/cart/add", post(shop::add_to_cart))
        .route("/cart/update", post(shop::update_cart))
        .route("/checkout", get(shop::checkout_page).post(shop::checkout))
        .route("/orders", get(orders::list))
        .route("/orders/{id}", get(orders::show))
        .route("/orders/{id}/events", get(orders::events))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/login", get(account::login_page).post(account::login))
        .route(
            "/register",
            get(account::register_page).post(account::register),
        )
        .route("/logout", post(account::logout))
        .route("/admin", get(admin::products))
        .route("/admin/products", post(admin::add_product))
        .route("/admin/products/{id}/stock", post(admin::adjust_stock))
        .route("/admin/orders", get(admin::orders))
        .route("/admin/orders/ship", post(admin::ship))
        .fallback(not_found)
        .layer(middleware::from_fn(session::csrf))
        .layer(middleware::from_fn_with_state(state.clone(), session::load))
        .layer(middleware::from_fn(private));
    Router::new()
        .route("/static/{*path}", get(assets::serve))
        .route("/healthz", get(|| async { "ok" }))
        .merge(pages)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), request_log))
        .with_state(state)
}

/// Every HTTP request is a `http.server` span (the root of a new trace,
/// linked to the browser's `traceparent` if it sends one: visitors do not
/// choose the shop's trace ids), two metrics
/// (`http_server_requests_total{method,route,status}`,
/// `http_server_request_duration_seconds{method,route}`) and one log line:
/// method, route, status, duration. Never the query string, form fields or
/// cookies.
async fn request_log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use tracing::Instrument as _;

    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let quiet = route == "/static/{*path}" || route == "/healthz";
    let span = if quiet {
        tracing::Span::none()
    } else {
        let span = tracing::info_span!(
            "http.server",
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        );
        shop_runtime::telemetry::link_context(&span, request.headers());
        shop_runtime::telemetry::record_trace_ids(&span);
        span
    };
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let status_text = status.to_string();
    state
        .metrics
        .counter(
            "http_server_requests_total",
            &[
                ("method", method.as_str()),
                ("route", &route),
                ("status", &status_text),
            ],
        )
        .increment(1);
    state
        .metrics
        .histogram(
            "http_server_request_duration_seconds",
            &[("method", method.as_str()), ("route", &route)],
        )
        .record(elapsed.as_secs_f64());
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let _entered = span.enter();
    if quiet {
        tracing::debug!(http.method = %method, http.route = %route, http.status_code = status, duration_ms, "http");
    } else if status >= 500 {
        tracing::warn!(http.method = %method, http.route = %route, http.status_code = status, duration_ms, "http");
    } else {
        tracing::info!(http.method = %method, http.route = %route, http.status_code = status, duration_ms, "http");
    }
    response
}

/// Headers that keep pages from being framed, sniffed or scripted from
/// elsewhere: only this origin's scripts and styles run. Served over TLS
/// (secure cookies), browsers are told to use nothing else (HSTS).
async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if state.cookie_secure {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Pages carry a session (a CSRF token, maybe a person's orders): no cache
/// may keep them.
async fn private(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn not_found(session: Session, State(state): State<AppState>) -> Response {
    error_page(
        &session,
        &state,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address.",
        "/",
    )
    .await
}

/// Renders a template, or a plain 500 if the template itself fails.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A friendly error page with `status`.
pub async fn error_page(
    session: &Session,
    state: &AppState,
    status: StatusCode,
    heading: &str,
    message: &str,
    retry: &str,
) -> Response {
    let page = views::ErrorPage {
        layout: views::Layout::new(session, state, "").await,
        heading: heading.to_owned(),
        message: message.to_owned(),
        retry: retry.to_owned(),
    };
    let mut response = render(&page);
    *response.status_mut() = status;
    response
}

/// The page for a failure that stops a whole page: the catalog being down
/// is a friendly 503, internals are never shown.
pub async fn page_error(
    session: &Session,
    state: &AppState,
    error: Error,
    retry: &str,
) -> Response {
    let not_found = (
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing at this address.".into(),
        "/",
    );
    let (page_status, heading, message, retry): (_, _, Cow<'_, str>, _) = match &error {
        Error::Upstream(e) if e.fault == Fault::Unavailable => {
            tracing::warn!(
                upstream = e.upstream,
                message = e.status.message(),
                "upstream unavailable for a page"
            );
            let what = if e.upstream == "productinfo" {
                "catalog"
            } else {
                "order service"
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "We'll be right back",
                format!(
                    "The shop's {what} is not answering right now. Your cart is safe; please try again in a moment."
                )
                .into(),
                retry,
            )
        }
        Error::NotFound(_) => not_found,
        Error::Upstream(e) if e.fault == Fault::NotFound => not_found,
        // Our services word refusals for people: they may be shown.
        Error::Upstream(e) if e.fault == Fault::Refused => (
            StatusCode::CONFLICT,
            "That cannot be done",
            e.status.message().into(),
            retry,
        ),
        Error::Upstream(e) if e.fault == Fault::Denied => (
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your account may not do that.".into(),
            "/",
        ),
        Error::Db(e) if e.is_unavailable() => {
            tracing::warn!(error = %shop_runtime::error::ErrorChain(e), "database unavailable for a page");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "We'll be right back",
                "The shop is not answering right now; please try again in a moment.".into(),
                retry,
            )
        }
        _ => {
            shop_runtime::error::log_internal(&error);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "That did not work, and it is not your fault. Please try again.".into(),
                retry,
            )
        }
    };
    error_page(session, state, page_status, heading, &message, retry).await
}

/// 303 See Other to `to` (the POST-redirect-GET step).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Only paths of this origin are followed after login and form posts: no
/// open redirects. Browsers drop tabs and newlines from a URL and read `\`
/// as `/`, so `/\t/evil.example` and `/\\evil.example` would leave the
/// shop: a path must start with one `/` and hold printable ASCII (spaces
/// inside) only, with no `\`, and so must its percent-decoded form.
pub fn safe_next(next: &str) -> &str {
    fn local(path: &[u8]) -> bool {
        path.first() == Some(&b'/')
            && !matches!(path.get(1), Some(b'/' | b'\\'))
            && path
                .iter()
                .all(|b| (b.is_ascii_graphic() || *b == b' ') && *b != b'\\')
    }
    if local(next.as_bytes()) && local(&percent_decode(next.as_bytes())) {
        next
    } else {
        "/"
    }
}

/// `%XX` sequences decoded (others left as they are).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match (
            s[i],
            s.get(i + 1).copied().and_then(hex),
            s.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// What the session's user may see, or a redirect to the login page.
// The error is the whole response to send; built once per request, its size
// does not matter.
#[allow(clippy::result_large_err)]
pub fn require_login(session: &Session, next: &str) -> Result<crate::accounts::User, Response> {
    session
        .user
        .clone()
        .ok_or_else(|| see_other(&format!("/login?next={}", urlencode(next))))
}

/// Percent-encodes `s` for a query string.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        for good in [
            "/",
            "/checkout",
            "/orders/42?notice=placed",
            "/?q=green tea&page=2",
            "/a%20b",
        ] {
            assert_eq!(safe_next(good), good);
        }
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "\\/evil",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "\t//evil.example",
            " //evil.example",
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%2F/evil.example",
            "/%5C/evil.example",
            "/%5cevil",
            "/\u{0}/evil",
            "/\u{a0}/evil",
            "/é",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(hostile), "/", "{hostile:?}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("/orders/1?x=a b&c"), "/orders/1%3Fx%3Da%20b%26c");
    }
}
