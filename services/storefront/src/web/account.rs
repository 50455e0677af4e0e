//! Registering, logging in and out.

use axum::{
    Form,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    AppState, Session, page_error, render, safe_next, see_other,
    session::{cookie, expired_cookie, hash, random_token},
    views::{FormErrors, Layout, LoginPage, RegisterPage},
};
use crate::{accounts, db, error::Error};

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_page(
    session: Session,
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
) -> Response {
    if session.user.is_some() {
        return see_other(safe_next(&q.next));
    }
    render(&LoginPage {
        layout: Layout::new(&session, &state, "").await,
        email: String::new(),
        next: safe_next(&q.next).to_owned(),
        problem: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// Replaces the visitor's session with a logged-in one (new cookie id,
/// anonymous cart merged) and goes to `next`.
async fn start_session(
    state: &AppState,
    session: &Session,
    user: &accounts::User,
    next: &str,
    notice: &str,
) -> Response {
    let rotated = async {
        let id = random_token()?;
        db::rotate_session(
            &state.pool,
            &session.id_hash,
            &hash(&id),
            user.id,
            state.lifetime,
        )
        .await?;
        Ok::<_, Error>(id)
    };
    let id = match rotated.await {
        Ok(id) => id,
        Err(e) => return page_error(session, state, e, "/login").await,
    };
    let next = safe_next(next);
    let sep = if next.contains('?') { '&' } else { '?' };
    let mut response = see_other(&format!("{next}{sep}notice={notice}"));
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(state, &id));
    response
}

pub async fn login(
    session: Session,
    State(state): State<AppState>,
    Form(form): Form<LoginForm>,
) -> Response {
    match state
        .accounts
        .login(&form.email, &form.password, &session.client)
        .await
    {
        Ok(user) => start_session(&state, &session, &user, &form.next, "welcome").await,
        Err(e @ (Error::WrongCredentials | Error::RateLimited | Error::Busy)) => {
            let status = match e {
                Error::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                Error::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut response = render(&LoginPage {
                layout: Layout::new(&session, &state, "").await,
                email: form.email.trim().to_owned(),
                next: safe_next(&form.next).to_owned(),
                problem: Some(format!("{}{}", capitalise(&e.to_string()), ".")),
            });
            *response.status_mut() = status;
            retry_later(response)
        }
        Err(e) => page_error(&session, &state, e, "/login").await,
    }
}

/// A refusal for being busy or too many tries says when to come back.
fn retry_later(mut response: Response) -> Response {
    let seconds = match response.status() {
        StatusCode::SERVICE_UNAVAILABLE => "1",
        StatusCode::TOO_MANY_REQUESTS => "60",
        _ => return response,
    };
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(seconds),
    );
    response
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

pub async fn register_page(
    session: Session,
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
) -> Response {
    render(&RegisterPage {
        layout: Layout::new(&session, &state, "").await,
        name: String::new(),
        email: String::new(),
        next: safe_next(&q.next).to_owned(),
        problem: None,
        errors: FormErrors::default(),
    })
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn register(
    session: Session,
    State(state): State<AppState>,
    Form(form): Form<RegisterForm>,
) -> Response {
    let registered = state
        .accounts
        .register(&form.email, &form.password, &form.name, &session.client)
        .await;
    let (problem, errors, status) = match registered {
        Ok(user) => {
            return start_session(&state, &session, &user, &form.next, "registered").await;
        }
        Err(e @ (Error::TooManyRegistrations | Error::Busy)) => (
            Some(format!("{}.", capitalise(&e.to_string()))),
            FormErrors::default(),
            if matches!(e, Error::Busy) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::TOO_MANY_REQUESTS
            },
        ),
        Err(Error::Invalid(v)) => (
            None,
            FormErrors::from_status(&v.into_status()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(Error::EmailTaken) => (
            Some("An account with this email already exists. Log in instead?".to_owned()),
            FormErrors::default(),
            StatusCode::CONFLICT,
        ),
        Err(e) => return page_error(&session, &state, e, "/register").await,
    };
    let mut response = render(&RegisterPage {
        layout: Layout::new(&session, &state, "").await,
        name: form.name,
        email: form.email,
        next: safe_next(&form.next).to_owned(),
        problem,
        errors,
    });
    *response.status_mut() = status;
    retry_later(response)
}

pub async fn logout(session: Session, State(state): State<AppState>) -> Response {
    if let Err(e) = db::delete_session(&state.pool, &session.id_hash).await {
        return page_error(&session, &state, e, "/").await;
    }
    let mut response = see_other("/?notice=logged-out");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, expired_cookie(&state));
    response.into_response()
}
