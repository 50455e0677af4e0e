//! Everything that can go wrong in the storefront. The gRPC API and the web
//! pages show failures differently (a status, a page), each in one place:
//! `impl From<Error> for Status` here, and [`crate::web::page_error`].

use shop_runtime::error::{FieldViolations, internal};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(FieldViolations),
    #[error("an account with this email already exists")]
    EmailTaken,
    /// The same for an unknown email and a wrong password: no enumeration.
    #[error("wrong email or password")]
    WrongCredentials,
    #[error("too many failed logins; try again in a few minutes")]
    RateLimited,
    #[error("{0} not found")]
    NotFound(String),
    /// An upstream service answered with an error.
    #[error("{service} answered {}: {}", .status.code(), .status.message())]
    Upstream {
        service: &'static str,
        status: Status,
    },
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Whether the named upstream could not be reached (as opposed to
    /// answering "no").
    pub fn is_upstream_unavailable(&self, name: &str) -> bool {
        matches!(self, Error::Upstream { service, status }
            if *service == name && matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled))
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if shop_runtime::pg::is_unavailable(&e) {
            Error::Unavailable(e)
        } else {
            Error::Database(e)
        }
    }
}

impl From<FieldViolations> for Error {
    fn from(v: FieldViolations) -> Self {
        Error::Invalid(v)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(v) => v.into_status(),
            Error::EmailTaken => Status::already_exists(e.to_string()),
            Error::WrongCredentials => Status::unauthenticated(e.to_string()),
            Error::RateLimited => Status::resource_exhausted(e.to_string()),
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::Upstream { service, status } => match status.code() {
                // The caller's own mistakes pass through with their details.
                Code::InvalidArgument
                | Code::NotFound
                | Code::FailedPrecondition
                | Code::AlreadyExists
                | Code::PermissionDenied
                | Code::Aborted => status,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    Status::unavailable(format!("{service} is unavailable; try again later"))
                }
                _ => {
                    tracing::error!(%service, code = ?status.code(), message = status.message(), "upstream failed");
                    Status::internal("internal error")
                }
            },
            Error::Unavailable(cause) => {
                tracing::warn!(error = %shop_runtime::error::ErrorChain(&cause), "database unavailable");
                Status::unavailable("storefront database unavailable; try again later")
            }
            e @ (Error::Database(_) | Error::Internal(_)) => internal(&e),
        }
    }
}
