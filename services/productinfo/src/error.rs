//! Everything that can go wrong in `productinfo`, and the one place that
//! decides which gRPC status each failure becomes.

use shop_runtime::{
    error::{FieldViolations, Precondition, failed_precondition},
    pg::DbError,
};
use tonic::Status;
use uuid::Uuid;

/// A product that does not have enough stock for a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: String,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] FieldViolations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("product {0} already exists")]
    IdTaken(Uuid),
    #[error("a product named {0:?} already exists")]
    NameTaken(String),
    #[error("not enough stock")]
    InsufficientStock(Vec<Shortage>),
    #[error("stock of {product_id} is {stock}; removing {removing} would make it negative")]
    StockWouldGoNegative {
        product_id: String,
        stock: i64,
        removing: i64,
    },
    #[error(
        "{product_id} does not track stock, so there are no units to remove; add {removing} or more to start tracking"
    )]
    StockNotTracked { product_id: String, removing: i64 },
    #[error("order {0} already released its reservation; use a new order id")]
    ReservationReleased(String),
    #[error("order {0} already holds a different reservation")]
    ReservationDiffers(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::IdTaken(_) | Error::NameTaken(_) => Status::already_exists(e.to_string()),
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
            Error::StockWouldGoNegative { .. }
            | Error::StockNotTracked { .. }
            | Error::ReservationReleased(_)
            | Error::ReservationDiffers(_) => Status::failed_precondition(e.to_string()),
            Error::Invalid(v) => v.into(),
            Error::Db(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(e.into())
    }
}
