//! Browser sessions and CSRF protection.
//!
//! - The cookie holds 32 random bytes; the database keeps only their
//!   SHA-256. It is `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` with
//!   the `__Host-` name prefix when `--cookie-secure` is set.
//! - A visitor gets a cookie on the first page, but a session row only once
//!   there is something to keep (the first cart line, a login): pages read
//!   by visitors who change nothing write nothing. Logging in starts a new
//!   session id (no session fixation) and merges the anonymous cart.
//! - The CSRF token of a session is an HMAC of its id under a key derived
//!   from the storefront's signing key (the same on every replica), so a
//!   form carries one before any row exists. Every POST must send it as
//!   `_csrf`, compared in constant time; otherwise 403 and nothing happens.
//! - Sessions last `SESSION_TTL` past their last use and never longer than
//!   `SESSION_MAX_LIFETIME` from their start; the cookie's `Max-Age` follows.
//! - The client address (for rate limits) is the connection's peer, or,
//!   when the peer is one of `TRUSTED_PROXIES`, the nearest address in
//!   `X-Forwarded-For` that is not a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use super::AppState;
use crate::{accounts::User, config::Cidr, db, db::CartOwner, error::Error};

/// How long a form's body may take to arrive (a client trickling it in
/// would hold its connection).
const FORM_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest form body read (forms are small; this stops floods).
const MAX_FORM: usize = 64 * 1024;

/// The visitor's session, put into every page request by [`load`].
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the cookie's id.
    pub id_hash: Vec<u8>,
    pub csrf: String,
    pub user: Option<User>,
    /// Where the request came from, for rate limits.
    pub client: String,
    /// Whether the session has a row (something to keep).
    stored: bool,
}

impl Session {
    /// Whose cart this session shows.
    pub fn cart_owner(&self) -> CartOwner {
        match &self.user {
            Some(user) => CartOwner::User(user.id),
            None => CartOwner::Session(self.id_hash.clone()),
        }
    }

    /// Whose cart a change goes to: an anonymous session is stored first.
    pub async fn cart_owner_to_change(&self, state: &AppState) -> Result<CartOwner, Error> {
        if self.user.is_none() && !self.stored {
            db::store_session(&state.pool, &self.id_hash, state.lifetime).await?;
        }
        Ok(self.cart_owner())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

fn cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-sid" } else { "sid" }
}

/// 32 random bytes, URL-safe base64; an error if the OS has no randomness
/// to give (never a predictable id).
pub fn random_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(anyhow::anyhow!("the OS random source failed: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `id` looks like one of [`random_token`]'s.
fn well_formed(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn hash(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

/// The CSRF token of the session whose id hashes to `id_hash`.
pub fn csrf_token(key: &[u8; 32], id_hash: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"csrf\0");
    mac.update(id_hash);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The `Set-Cookie` value for session id `id`.
pub fn cookie(state: &AppState, id: &str) -> HeaderValue {
    let mut value = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        cookie_name(state.cookie_secure),
        state.lifetime.ttl.min(state.lifetime.max).as_secs()
    );
    if state.cookie_secure {
        value.push_str("; Secure");
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A `Set-Cookie` value that deletes the session cookie.
pub fn expired_cookie(state: &AppState) -> HeaderValue {
    let mut value = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        cookie_name(state.cookie_secure)
    );
    if state.cookie_secure {
        value.push_str("; Secure");
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn cookie_value<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Where a request comes from: its peer, unless the peer is a trusted
/// proxy; then the nearest `X-Forwarded-For` entry that is not one (proxies
/// append, so entries further left are the client's own claims).
fn client_address(peer: Option<IpAddr>, forwarded: Option<&str>, trusted: &[Cidr]) -> String {
    let Some(peer) = peer else {
        return "unknown".into();
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(&peer) {
        return peer.to_string();
    }
    let mut nearest = peer;
    for entry in forwarded.unwrap_or_default().rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        nearest = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    nearest.to_string()
}

/// Finds the visitor's session (or starts an unstored one) and hands it to
/// the handler.
pub async fn load(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let client = client_address(
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
        request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok()),
        &state.trusted_proxies,
    );
    let existing = cookie_value(&request, cookie_name(state.cookie_secure))
        .filter(|id| well_formed(id))
        .map(|id| (id.to_owned(), hash(id)));
    let mut set_cookie = None;
    let session = match existing {
        Some((id, id_hash)) => match db::load_session(&state.pool, &id_hash).await {
            Ok(Some(row)) => {
                let remaining = row.expires_at - chrono::Utc::now();
                if remaining.num_seconds() < state.lifetime.ttl.as_secs() as i64 / 2
                    && db::extend_session(&state.pool, &id_hash, state.lifetime)
                        .await
                        .is_ok()
                {
                    // The cookie's Max-Age follows the session's new expiry.
                    set_cookie = Some(id);
                }
                let user = match (row.user_id, row.email, row.role) {
                    (Some(id), Some(email), Some(role)) => Some(User::from(db::UserRow {
                        id,
                        email,
                        name: row.name.unwrap_or_default(),
                        password_hash: String::new(),
                        role,
                    })),
                    _ => None,
                };
                Session {
                    csrf: csrf_token(&state.csrf_key, &id_hash),
                    id_hash,
                    user,
                    client,
                    stored: true,
                }
            }
            // A cookie without a row: a visitor who has changed nothing
            // yet (or whose session ended): keep the id, store nothing.
            Ok(None) => Session {
                csrf: csrf_token(&state.csrf_key, &id_hash),
                id_hash,
                user: None,
                client,
                stored: false,
            },
            Err(e) => return unavailable(e),
        },
        None => {
            let id = match random_token() {
                Ok(id) => id,
                Err(e) => return unavailable(e),
            };
            let id_hash = hash(&id);
            set_cookie = Some(id);
            Session {
                csrf: csrf_token(&state.csrf_key, &id_hash),
                id_hash,
                user: None,
                client,
                stored: false,
            }
        }
    };
    request.extensions_mut().insert(session);
    let mut response = next.run(request).await;
    if let Some(id) = set_cookie
        && !response.headers().contains_key(header::SET_COOKIE)
    {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, cookie(&state, &id));
    }
    response
}

fn unavailable(error: Error) -> Response {
    tracing::warn!(error = %error, "session store unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        "The shop is not answering right now; please try again in a moment.",
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// Refuses every POST whose `_csrf` form field is not the session's token.
pub async fn csrf(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(expected) = request
        .extensions()
        .get::<Session>()
        .map(|s| s.csrf.clone())
    else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(FORM_READ_TIMEOUT, axum::body::to_bytes(body, MAX_FORM));
    let bytes = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response(),
        Err(_) => return (StatusCode::REQUEST_TIMEOUT, "the form came too slowly").into_response(),
    };
    let sent = serde_urlencoded::from_bytes::<CsrfField>(&bytes)
        .map(|f| f.csrf)
        .unwrap_or_default();
    if !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        tracing::warn!(path = %parts.uri.path(), "form without a valid CSRF token refused");
        return (
            StatusCode::FORBIDDEN,
            axum::response::Html(
                "<!doctype html><title>Form expired</title><h1>This form has expired</h1>\
                 <p>Go back, reload the page and try again.</p>",
            ),
        )
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_only_when_equal() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn random_tokens_are_long_distinct_and_well_formed() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(well_formed(&a));
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}=", &a[..42])));
    }

    #[test]
    fn csrf_tokens_belong_to_one_session_and_one_key() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let (s1, s2) = (hash("one"), hash("two"));
        assert_eq!(csrf_token(&k1, &s1), csrf_token(&k1, &s1));
        assert_ne!(csrf_token(&k1, &s1), csrf_token(&k1, &s2));
        assert_ne!(csrf_token(&k1, &s1), csrf_token(&k2, &s1));
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // Not a proxy: its own claims are ignored.
        assert_eq!(
            client_address(ip("203.0.113.9"), Some("1.1.1.1"), &trusted),
            "203.0.113.9"
        );
        // A proxy: the nearest entry it did not add itself.
        assert_eq!(
            client_address(ip("10.1.2.3"), Some("1.1.1.1, 198.51.100.7"), &trusted),
            "198.51.100.7"
        );
        // Through two proxies: skip the inner one.
        assert_eq!(
            client_address(
                ip("10.1.2.3"),
                Some("1.1.1.1, 198.51.100.7, 10.9.9.9"),
                &trusted
            ),
            "198.51.100.7"
        );
        // A proxy that forwards nothing, or garbage: the proxy itself.
        assert_eq!(client_address(ip("10.1.2.3"), None, &trusted), "10.1.2.3");
        assert_eq!(
            client_address(ip("10.1.2.3"), Some("nonsense"), &trusted),
            "10.1.2.3"
        );
        assert_eq!(client_address(None, Some("1.1.1.1"), &trusted), "unknown");
    }
}
