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

/// Releases a sweep claims at a time: few enough that releasing them all
/// takes far less than [`db::RELEASE_LEASE`] even with a slow catalog.
const CLAIM_BATCH: i64 = 5;

/// Every `interval`: turns placements older than `abandoned_after` into
/// releases, then releases what is due, a claimed batch at a time, until
/// nothing is. Every order replica runs it; a claim keeps the others off
/// the same rows (see the migration `0007_release_claims.sql`). Runs until
/// the service's task group stops it; a release cut half-way is done again
/// once its claim runs out.
pub async fn sweep(db: Db, catalog: Catalog, interval: Duration, abandoned_after: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        loop {
            let due = match db::due_releases(&db, abandoned_after, CLAIM_BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read reservations to release");
                    break;
                }
            };
            let claimed = due.len() as i64;
            let mut confirmed = 0;
            for order_id in due {
                confirmed += i64::from(release_now(&db, &catalog, order_id).await);
            }
            // A full batch all confirmed: more may be due now; otherwise
            // the failed ones wait for the next round.
            if claimed < CLAIM_BATCH || confirmed < claimed {
                break;
            }
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
