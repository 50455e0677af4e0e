//! Live order status for `watchOrder`: one PostgreSQL `LISTEN order_changed`
//! connection per process, and one read of an order per change, shared by
//! every stream watching it.
//!
//! A trigger on `orders` announces every status change (see the migration),
//! so a stream learns about changes made by any replica, at commit time.
//! A notification names the order; the order is then read once and the
//! record goes to all its watchers (a thousand streams on one order cost
//! one query per change, not a thousand). A missed or duplicated
//! notification can never show a wrong status: each one re-reads. When the
//! listening connection is lost, every watched order is read again once
//! it is back.
//!
//! Watching is bounded: at most `--watch-max-per-caller` streams per caller
//! (token subject) and `--watch-max-total` per process; each stream ends
//! after `--watch-max-lifetime` (clients watch again).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use shop_runtime::{metrics::Metrics, pg::Db};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{db, order::OrderRecord};

/// The notification channel the migration's trigger uses.
const CHANNEL: &str = "order_changed";

/// How many watches may be open.
#[derive(Debug, Clone, Copy)]
pub struct WatchLimits {
    pub per_caller: usize,
    pub total: usize,
}

/// The latest read of one watched order (`None` until the first change).
pub type Latest = watch::Receiver<Option<Arc<OrderRecord>>>;

/// Watched orders, shared by every stream of the process.
#[derive(Clone)]
pub struct Watchers {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    limits: WatchLimits,
    state: Mutex<State>,
    /// `shop_order_watch_reads_total`: one per change of a watched order.
    reads: metrics::Counter,
}

#[derive(Default)]
struct State {
    orders: HashMap<Uuid, watch::Sender<Option<Arc<OrderRecord>>>>,
    per_caller: HashMap<String, usize>,
    total: usize,
}

/// Why a watch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooMany {
    Caller(usize),
    Total(usize),
}

/// One stream's watch of an order: its latest reads, and its place among
/// the caller's watches until dropped.
pub struct Watch {
    pub latest: Latest,
    id: Uuid,
    caller: String,
    watchers: Watchers,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut state = self.watchers.inner.lock();
        state.total = state.total.saturating_sub(1);
        let id = self.id;
        if state
            .orders
            .get(&id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            // The last watcher of this order (its receiver goes just after).
            state.orders.remove(&id);
        }
        if let Some(n) = state.per_caller.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                state.per_caller.remove(&self.caller);
            }
        }
    }
}

impl Watchers {
    /// Watchers reading changed orders from `db`, counting the reads into
    /// `metrics`.
    pub fn new(db: Db, limits: WatchLimits, metrics: &Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                limits,
                state: Mutex::default(),
                reads: metrics.counter("shop_order_watch_reads_total", &[]),
            }),
        }
    }

    /// A watch of order `id` for `caller`, unless the caller or the process
    /// already has as many as allowed.
    pub fn watch(&self, id: Uuid, caller: &str) -> Result<Watch, TooMany> {
        let mut state = self.inner.lock();
        let limits = self.inner.limits;
        if state.total >= limits.total {
            return Err(TooMany::Total(limits.total));
        }
        let mine = state.per_caller.get(caller).copied().unwrap_or(0);
        if mine >= limits.per_caller {
            return Err(TooMany::Caller(limits.per_caller));
        }
        state.total += 1;
        *state.per_caller.entry(caller.to_owned()).or_default() += 1;
        let latest = state
            .orders
            .entry(id)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        Ok(Watch {
            latest,
            id,
            caller: caller.to_owned(),
            watchers: self.clone(),
        })
    }

    /// Reads order `id` once, if anyone watches it, for all its watchers.
    fn changed(&self, id: Uuid) {
        let watched = self
            .inner
            .lock()
            .orders
            .get(&id)
            .is_some_and(|tx| tx.receiver_count() > 0);
        if watched {
            let watchers = self.clone();
            tokio::spawn(async move { watchers.read(id).await });
        }
    }

    async fn read(&self, id: Uuid) {
        self.inner.reads.increment(1);
        let record = match db::get(&self.inner.db, id).await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(order.id = %id, error = %e, "cannot read a watched order");
                return;
            }
        };
        if let Some(tx) = self.inner.lock().orders.get(&id) {
            tx.send_replace(record.map(Arc::new));
        }
    }

    /// Reads every watched order again (after missing notifications).
    fn all_changed(&self) {
        let ids: Vec<Uuid> = self.inner.lock().orders.keys().copied().collect();
        for id in ids {
            self.changed(id);
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
            self.all_changed();
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Ok(id) = notification.payload().parse() {
                            self.changed(id);
                        }
                    }
                    // The connection was lost and is back: re-read all.
                    Ok(None) => self.all_changed(),
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

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
