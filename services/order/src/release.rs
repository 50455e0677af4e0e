//! Giving reservations back, reliably.
//!
//! A reservation must be released when an order is cancelled, when
//! `addOrder` fails after the catalog may have reserved, and when a
//! placement was abandoned half-way (the client went away, the process
//! died). Each case leaves a row in `reservation_intents`; this task
//! releases them until the catalog confirms (`releaseStock` is idempotent,
//! so trying twice is harmless), even if the catalog was down for a while.

use std::time::Duration;

use shop_runtime::pg::Db;
use shop_runtime::{deadline::Deadline, health::HealthRegistry};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{catalog::Catalog, db};

/// Releases due reservations every `interval` until the server shuts down.
pub fn spawn(
    pool: Db,
    catalog: Catalog,
    health: HealthRegistry,
    interval: Duration,
    abandoned_after: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = health.on_shutdown() => return,
            }
            let due = match db::due_releases(&pool, abandoned_after, 100).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read reservations to release");
                    continue;
                }
            };
            for order_id in due {
                release_now(&pool, &catalog, order_id).await;
            }
        }
    })
}

/// One attempt to release `order_id`'s reservation; on success its outbox
/// row goes. Returns whether the catalog confirmed.
pub async fn release_now(pool: &Db, catalog: &Catalog, order_id: Uuid) -> bool {
    match catalog.release(order_id, Deadline::NONE).await {
        Ok(_) => {
            if let Err(e) = db::released(pool, order_id).await {
                tracing::warn!(order.id = %order_id, error = %e, "released, but cannot record it (will release again, harmlessly)");
            }
            tracing::info!(order.id = %order_id, "reservation released");
            true
        }
        Err(e) => {
            tracing::warn!(order.id = %order_id, error = %e, "release failed; will retry");
            let _ = db::release_failed(pool, order_id, &e.to_string()).await;
            false
        }
    }
}
