//! Everything that can go wrong in `order`, and the one place that decides
//! which gRPC status each failure becomes.

use shop_runtime::error::{FieldViolations, internal};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(FieldViolations),
    #[error("order {0} not found")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The catalog said no (not enough stock...): its status, passed on
    /// with its details.
    #[error("catalog refused: {}", .0.message())]
    Refused(Status),
    #[error("{0}")]
    Aborted(String),
    /// The catalog could not be reached or did not answer in time.
    #[error("catalog unavailable: {}", .0.message())]
    CatalogUnavailable(Status),
    /// The catalog answered in a way that means a bug or misconfiguration.
    #[error("unexpected answer from the catalog: {0:?}")]
    CatalogBroken(Status),
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
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
            Error::NotFound(id) => Status::not_found(format!("order {id} not found")),
            Error::FailedPrecondition(why) => Status::failed_precondition(why),
            Error::Refused(status) => status,
            Error::Aborted(why) => Status::aborted(why),
            Error::CatalogUnavailable(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "catalog unavailable");
                Status::unavailable(
                    "the catalog is unavailable; nothing was ordered, try again later",
                )
            }
            e @ Error::CatalogBroken(_) => internal(&e),
            Error::Unavailable(cause) => {
                tracing::warn!(error = %shop_runtime::error::ErrorChain(&cause), "database unavailable");
                Status::unavailable("order database unavailable; try again later")
            }
            e @ Error::Database(_) => internal(&e),
        }
    }
}
