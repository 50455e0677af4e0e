//! Giving reservations back, reliably.
//!
//! A reservation must be released when an order is cancelled, when
//! `addOrder` fails after the catalog may have reserved, and when a
//! placement was abandoned half-way (the client went away, the process
//! died). Each case leaves a row in `reservation_intents`; [`sweep`]
//! releases them until the catalog confirms (`releaseStock` is idempotent,
//! so trying twice is harmless), even if the catalog was down for a while.

use std::time::Duration;

use shop_runtime::{deadline::Deadline, pg::Db};
use uuid::Uuid;

use crate::{catalog::Catalog, db};

/// Every `interval`: turns placements older than `abandoned_after` into
/// releases, then releases what is due. Runs until the service's task group
/// stops it; a release cut half-way is simply done again next time.
pub async fn sweep(db: Db, catalog: Catalog, interval: Duration, abandoned_after: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let due = match db::due_releases(&db, abandoned_after, 100).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read reservations to release");
                continue;
            }
        };
        for order_id in due {
            release_now(&db, &catalog, order_id).await;
        }
    }
}

/// One attempt to release `order_id`'s reservation; on success its outbox
/// row goes. Returns whether the catalog confirmed.
pub async fn release_now(db: &Db, catalog: &Catalog, order_id: Uuid) -> bool {
    match catalog.release(order_id, Deadline::NONE).await {
        Ok(_) => {
            if let Err(e) = db::released(db, order_id).await {
                tracing::warn!(order.id = %order_id, error = %e, "released, but cannot record it (will release again, harmlessly)");
            }
            tracing::info!(order.id = %order_id, "reservation released");
            true
        }
        Err(e) => {
            tracing::warn!(order.id = %order_id, error = %e, "release failed; will retry");
            if let Err(e) = db::release_failed(db, order_id, &e.to_string()).await {
                tracing::warn!(order.id = %order_id, error = %e, "cannot record the failed release");
            }
            false
        }
    }
}
