//! Everything that can go wrong in `order`, each variant a fact, and the one
//! place that decides which gRPC status each one becomes.

use shop_runtime::{
    error::{FieldViolations, internal},
    pg::DbError,
    upstream::UpstreamError,
};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::{order::OrderState, watch::TooMany};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] FieldViolations),
    #[error("order {0:.100} not found")]
    NotFound(String),
    #[error("this idempotency key was already used for a different order")]
    KeyReused,
    #[error("an order with this idempotency key is being placed right now; retry shortly")]
    PlacementInFlight,
    #[error("placing the order took too long and it was abandoned; nothing was ordered")]
    PlacementAbandoned,
    #[error("the order total is too large")]
    TotalTooLarge,
    #[error("order {id} is {state} and can no longer change")]
    Final { id: Uuid, state: OrderState },
    #[error(
        "the items of order {0} cannot change; nothing was updated (cancel it and place a new one)"
    )]
    ItemsChanged(Uuid),
    #[error("{}", match .0 {
        TooMany::Caller(n) => format!("at most {n} order watches at once per caller; close one first"),
        TooMany::Total(n) => format!("this server already serves {n} order watches; try again later"),
    })]
    TooManyWatches(TooMany),
    /// The catalog said no, or could not be reached.
    #[error(transparent)]
    Catalog(#[from] UpstreamError),
    /// The catalog answered something a working catalog never sends.
    #[error("the catalog sent {0}")]
    CatalogBroken(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::KeyReused
            | Error::TotalTooLarge
            | Error::Final { .. }
            | Error::ItemsChanged(_) => Status::failed_precondition(e.to_string()),
            Error::PlacementInFlight | Error::PlacementAbandoned => Status::aborted(e.to_string()),
            Error::TooManyWatches(_) => Status::resource_exhausted(e.to_string()),
            Error::Catalog(e) => match e.into_status() {
                // A placement that could not reach the catalog has released
                // whatever it may have reserved: say so.
                status if status.code() == Code::Unavailable => Status::unavailable(
                    "the catalog is unavailable; nothing was ordered, try again later",
                ),
                status => status,
            },
            e @ Error::CatalogBroken(_) => internal(&e),
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
