//! Live order status for `watchOrder`: one PostgreSQL `LISTEN order_changed`
//! connection per process fans out to every stream watching an order.
//!
//! A trigger on `orders` announces every status change (see the migration),
//! so a stream learns about changes made by any replica, at commit time.
//! Streams are woken, not sent data: each one re-reads its order, so a
//! missed or duplicated wake-up can never show a wrong status. When the
//! listening connection is lost, every stream is woken once it is back.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;
use uuid::Uuid;

/// The notification channel the migration's trigger uses.
const CHANNEL: &str = "order_changed";

/// Wake-ups for watched orders, shared by every stream of the process.
#[derive(Clone, Debug, Default)]
pub struct Watchers {
    senders: Arc<Mutex<HashMap<Uuid, watch::Sender<u64>>>>,
}

impl Watchers {
    /// A receiver that changes whenever order `id` may have changed.
    pub fn subscribe(&self, id: Uuid) -> watch::Receiver<u64> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.retain(|_, tx| tx.receiver_count() > 0);
        senders
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn wake(&self, id: Uuid) {
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = senders.get(&id) {
            tx.send_modify(|v| *v += 1);
        }
    }

    fn wake_all(&self) {
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        for tx in senders.values() {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// Listens for changes, reconnecting as needed, until the service's
    /// task group stops it.
    pub async fn listen(self, options: PgConnectOptions) {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for order changes yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Changes made while not listening were missed: re-read all.
            self.wake_all();
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Ok(id) = notification.payload().parse() {
                            self.wake(id);
                        }
                    }
                    // The connection was lost and is back: re-read all.
                    Ok(None) => self.wake_all(),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the order change listener");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
