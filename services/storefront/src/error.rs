//! Everything that can go wrong in the storefront. The gRPC API and the web
//! pages show failures differently (a status, a page), each in one place:
//! `impl From<Error> for Status` here, and [`crate::web::page_error`].

use shop_runtime::{
    error::{FieldViolations, internal},
    pg::DbError,
    upstream::{Fault, UpstreamError},
};
use std::time::Duration;

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] FieldViolations),
    #[error("an account with this email already exists")]
    EmailTaken,
    /// The same for an unknown email and a wrong password: no enumeration.
    #[error("wrong email or password")]
    WrongCredentials,
    #[error("too many failed logins; try again in a few minutes")]
    RateLimited,
    #[error("too many new accounts from your address; try again later")]
    TooManyRegistrations,
    /// No password hashing slot came in time: the shop is busy.
    #[error("the shop is busy; try again in a moment")]
    Busy,
    #[error(
        "a cart holds at most {} different products",
        crate::db::MAX_CART_LINES
    )]
    CartFull,
    /// `ADMIN_EMAIL` is a customer's: the storefront will not promote it.
    #[error(
        "ADMIN_EMAIL {0} belongs to an account someone registered; the storefront will not make it an admin. Choose another email, or remove that account"
    )]
    AdminEmailTaken(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The catalog or the order service answered with an error.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A bug or a broken invariant, with its cause.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl Error {
    /// Whether the named upstream could not be reached (as opposed to
    /// answering "no").
    pub fn is_upstream_unavailable(&self, name: &str) -> bool {
        matches!(self, Error::Upstream(e) if e.upstream == name && e.fault == Fault::Unavailable)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::EmailTaken => Status::already_exists(e.to_string()),
            Error::WrongCredentials => Status::unauthenticated(e.to_string()),
            Error::RateLimited | Error::TooManyRegistrations | Error::CartFull => {
                Status::resource_exhausted(e.to_string())
            }
            Error::Busy => shop_runtime::pushback::refuse(e.to_string(), Duration::from_secs(1)),
            e @ Error::AdminEmailTaken(_) => Status::failed_precondition(e.to_string()),
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::Upstream(e) => e.into_status(),
            Error::Invalid(v) => v.into(),
            Error::Db(e) => e.into(),
            e @ Error::Internal(_) => internal(&e),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(e.into())
    }
}
