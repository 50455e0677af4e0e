//! Browser sessions and CSRF protection.
//!
//! - The cookie holds 32 random bytes; the database keeps only their
//!   SHA-256. It is `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` with
//!   the `__Host-` name prefix when `--cookie-secure` is set.
//! - Every visitor gets a session on the first page (so forms always carry a
//!   CSRF token); logging in replaces it with a new id (no session
//!   fixation) and merges the anonymous cart into the user's.
//! - Every POST must send the session's synchronizer token as `_csrf`,
//!   compared in constant time; otherwise 403 and nothing happens.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};

use super::AppState;
use crate::{accounts::User, db, db::CartOwner};

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
}

impl Session {
    /// Whose cart this session shows.
    pub fn cart_owner(&self) -> CartOwner {
        match &self.user {
            Some(user) => CartOwner::User(user.id),
            None => CartOwner::Session(self.id_hash.clone()),
        }
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

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // getrandom only fails when the OS has no entropy source at all.
    let _ = getrandom::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

/// The `Set-Cookie` value for session id `id`.
pub fn cookie(state: &AppState, id: &str) -> HeaderValue {
    let mut value = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        cookie_name(state.cookie_secure),
        state.session_ttl.as_secs()
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

fn client_address(request: &Request, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for
        && let Some(forwarded) = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next_back())
    {
        return forwarded.trim().to_owned();
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Finds the visitor's session, or starts one, and hands it to the handler.
pub async fn load(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let client = client_address(&request, state.trust_forwarded_for);
    let existing = cookie_value(&request, cookie_name(state.cookie_secure)).map(hash);
    let mut new_id = None;
    let session = match existing {
        Some(id_hash) => match db::load_session(&state.pool, &id_hash).await {
            Ok(Some(row)) => {
                let remaining = row.expires_at - chrono::Utc::now();
                if remaining.num_seconds() < state.session_ttl.as_secs() as i64 / 2 {
                    let _ = db::extend_session(&state.pool, &id_hash, state.session_ttl).await;
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
                Some(Session {
                    id_hash,
                    csrf: row.csrf_token,
                    user,
                    client: client.clone(),
                })
            }
            Ok(None) => None,
            Err(e) => return unavailable(e),
        },
        None => None,
    };
    let session = match session {
        Some(s) => s,
        None => {
            let id = random_token();
            let csrf = random_token();
            let id_hash = hash(&id);
            if let Err(e) =
                db::create_session(&state.pool, &id_hash, None, &csrf, state.session_ttl).await
            {
                return unavailable(e);
            }
            new_id = Some(id);
            Session {
                id_hash,
                csrf,
                user: None,
                client,
            }
        }
    };
    request.extensions_mut().insert(session);
    let mut response = next.run(request).await;
    if let Some(id) = new_id
        && !response.headers().contains_key(header::SET_COOKIE)
    {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, cookie(&state, &id));
    }
    response
}

fn unavailable(error: crate::error::Error) -> Response {
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
    let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response(),
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
    fn random_tokens_are_long_and_distinct() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
