//! Everything that can go wrong in `productinfo`, and the one place that
//! decides which gRPC status each failure becomes.

use shop_runtime::error::{FieldViolations, Precondition, failed_precondition, internal};
use tonic::Status;

/// A product that does not have enough stock for a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: String,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(FieldViolations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("not enough stock")]
    InsufficientStock(Vec<Shortage>),
    #[error("stock of {product_id} is {stock}; removing {removing} would make it negative")]
    StockWouldGoNegative {
        product_id: String,
        stock: i64,
        removing: i64,
    },
    #[error("{0}")]
    ReservationConflict(String),
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
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::AlreadyExists(what) => Status::already_exists(what),
            Error::InsufficientStock(shortages) => failed_precondition(
                "not enough stock",
                shortages
                    .into_iter()
                    .map(|s| Precondition {
                        kind: "STOCK".into(),
                        description: format!(
                            "product {}: {} requested, {} available",
                            s.product_id, s.requested, s.available
                        ),
                        subject: s.product_id,
                    })
                    .collect(),
            ),
            e @ Error::StockWouldGoNegative { .. } => Status::failed_precondition(e.to_string()),
            Error::ReservationConflict(what) => Status::failed_precondition(what),
            Error::Unavailable(cause) => {
                tracing::warn!(error = %shop_runtime::error::ErrorChain(&cause), "database unavailable");
                Status::unavailable("catalog database unavailable; try again later")
            }
            e @ Error::Database(_) => internal(&e),
        }
    }
}
