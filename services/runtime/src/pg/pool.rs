//! A service's connections to its own database: [`Db`].
//!
//! Why not sqlx's `PgPool`: it pings every connection it gets back (one
//! more round trip per call, as costly as a point select), and a call
//! waiting for a connection cannot be told apart from one running a query,
//! so nothing can cancel the query of a call whose client went away.
//!
//! How it works:
//! - **Bounded.** One semaphore permit per connection that may be open
//!   (`--db-max-connections`). A call takes a permit, then an idle
//!   connection or a new one, and gives both back when it drops its
//!   [`DbConn`]. A call that gets no permit within `--db-acquire-timeout`
//!   fails `UNAVAILABLE`; while it waits it is one semaphore waiter, nothing
//!   more, and it stops waiting the moment its call is dropped.
//! - **No round trip on release.** A connection comes back clean (nothing
//!   unsent, no transaction open) and is kept for the next call as it is.
//!   Anything else (a transaction left open, a call cancelled mid-query)
//!   is recovered by a background task that still holds the permit: it
//!   cancels the running statement (`pg_cancel_backend`, from one extra
//!   connection kept for that), waits for the connection to be ready,
//!   and keeps it, or closes it if it is broken.
//! - **Cancelled calls cancel their queries.** The server's call layer
//!   drops an unfinished call inside [`while_cancelling`]; a connection
//!   dropped there may be mid-query, so its statement is cancelled instead
//!   of left running for the next caller to wait behind.
//! - **Bounded statements.** Every connection is opened with
//!   `statement_timeout`, `lock_timeout` and
//!   `idle_in_transaction_session_timeout` (flags), so no query, lock wait
//!   or forgotten transaction holds a connection for long.
//! - **Restarts.** While the database is away, a call's connect is tried
//!   again until `--db-acquire-timeout` (a connection cut before its first
//!   statement counts as not made); a read ([`Db::read`]) that fails on a
//!   connection broken by a restart runs once more on a new one.
//!   So a restart shorter than the acquire timeout fails no read.
//! - **Trouble.** When a database error says connections may be broken
//!   (see [`DbError`](super::DbError)), connections kept before it are
//!   pinged before their next use. The mark is process-wide: trouble on a
//!   read replica ([`Reads`](super::Reads)) costs the primary's kept
//!   connections one ping each too, which is cheap and never wrong.

use std::{
    cell::Cell,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{
    ConnectOptions as _, Connection as _,
    postgres::{PgConnectOptions, PgConnection},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::DbArgs;

/// Bumped whenever a database error suggests connections may be broken:
/// connections kept before it are pinged before their next use.
static TROUBLE: AtomicU64 = AtomicU64::new(0);

pub(super) fn note_trouble() {
    TROUBLE.fetch_add(1, Ordering::Relaxed);
}

fn trouble() -> u64 {
    TROUBLE.load(Ordering::Relaxed)
}

thread_local! {
    static CANCELLING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `drop` (dropping a call that did not finish: its client went away
/// or its deadline passed) so that connections dropped in it cancel the
/// statement they may be running.
pub fn while_cancelling<R>(drop: impl FnOnce() -> R) -> R {
    let before = CANCELLING.with(|c| c.replace(true));
    let result = drop();
    CANCELLING.with(|c| c.set(before));
    result
}

/// Connections kept idle longer than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a cancelled call's statement gets to end on its own before it
/// is cancelled.
const CANCEL_AFTER: Duration = Duration::from_millis(50);

/// Pause between attempts to connect to a database that is away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// How long recovering a connection may take before it is closed instead.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The service's database: connections handed to one call at a time.
/// Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("max", &self.inner.max)
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: PgConnectOptions,
    max: u32,
    acquire_timeout: Duration,
    permits: Arc<Semaphore>,
    /// Most recently used last: warm connections are reused first.
    idle: Mutex<Vec<Idle>>,
    open: AtomicUsize,
    waiters: AtomicI64,
    acquire_seconds: Option<metrics::Histogram>,
    /// The connection that cancels other connections' statements.
    canceller: tokio::sync::Mutex<Option<PgConnection>>,
}

struct Idle {
    conn: PgConnection,
    pid: i32,
    epoch: u64,
    since: Instant,
}

impl Db {
    /// Connections to the database of `options`, sized and bounded by
    /// `args`; nothing is opened until the first call (a service starts,
    /// and reports NOT_SERVING, while its database is still coming up).
    /// Reports into `metrics` if given.
    pub fn new(
        args: &DbArgs,
        options: PgConnectOptions,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> Self {
        let ms = |d: Duration| d.as_millis().to_string();
        let options = options.options([
            ("statement_timeout", ms(args.db_statement_timeout)),
            ("lock_timeout", ms(args.db_lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                ms(args.db_idle_in_transaction_timeout),
            ),
        ]);
        let max = args.db_max_connections.max(1);
        let db = Db {
            inner: Arc::new(Inner {
                options,
                max,
                acquire_timeout: args.db_acquire_timeout,
                permits: Arc::new(Semaphore::new(max as usize)),
                idle: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
                waiters: AtomicI64::new(0),
                acquire_seconds: metrics.map(|m| m.histogram("shop_db_pool_acquire_seconds", &[])),
                canceller: tokio::sync::Mutex::new(None),
            }),
        };
        if let Some(m) = metrics {
            m.watch_pool(&db);
        }
        db
    }

    /// Most connections open at once.
    pub fn max(&self) -> u32 {
        self.inner.max
    }

    /// Connections open now (idle or in use).
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Open connections not in use by a call.
    pub fn idle(&self) -> usize {
        self.inner.lock().len()
    }

    /// Calls waiting for a connection right now.
    pub fn waiters(&self) -> i64 {
        self.inner.waiters.load(Ordering::Relaxed)
    }

    /// A connection for one call: a kept one, or a new one. Back to the
    /// kept ones when dropped.
    pub async fn acquire(&self) -> Result<DbConn, sqlx::Error> {
        let started = Instant::now();
        let permit = {
            let _waiting = Waiting::new(&self.inner.waiters);
            tokio::time::timeout(
                self.inner.acquire_timeout,
                self.inner.permits.clone().acquire_owned(),
            )
            .await
        };
        let permit = match permit {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        let conn = match self.kept().await {
            Some(idle) => Ok((idle.conn, idle.pid)),
            None => self.connect(started + self.inner.acquire_timeout).await,
        };
        if let Some(h) = &self.inner.acquire_seconds {
            h.record(started.elapsed().as_secs_f64());
        }
        let (conn, pid) = conn?;
        Ok(DbConn {
            conn: Some(conn),
            pid,
            epoch: trouble(),
            permit: Some(permit),
            db: self.clone(),
        })
    }

    /// A connection of its own, outside the pool's count, with the pool's
    /// settings: for a background task that must not wait behind calls.
    pub async fn dedicated(&self) -> Result<PgConnection, sqlx::Error> {
        self.inner.options.connect().await
    }

    /// Runs `read` (statements that change nothing) on a connection. If it
    /// fails because its connection was broken (the database restarted
    /// since the connection's last use, or just after it was opened), it
    /// runs once more on another, which waits for the database as any new
    /// connection does (up to the acquire timeout).
    pub async fn read<T, F, Fut>(&self, read: F) -> Result<T, sqlx::Error>
    where
        F: Fn(DbConn) -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        match read(self.acquire().await?).await {
            Err(e) if super::broken(&e) => {
                tracing::debug!(error = %e, "a connection was broken; reading again on another");
                note_trouble();
                read(self.acquire().await?).await
            }
            result => result,
        }
    }

    /// The most recently used kept connection that is still good: too old
    /// ones are closed, ones kept before trouble are pinged first.
    async fn kept(&self) -> Option<Idle> {
        loop {
            let mut idle = self.inner.lock().pop()?;
            if idle.since.elapsed() > IDLE_TIMEOUT {
                self.closed(idle.conn);
                continue;
            }
            if idle.epoch != trouble() {
                if idle.conn.ping().await.is_err() {
                    self.closed(idle.conn);
                    continue;
                }
                idle.epoch = trouble();
            }
            return Some(idle);
        }
    }

    /// A new connection, tried again every 100 ms while the database cannot
    /// be reached, until `deadline`, which also bounds each attempt.
    async fn connect(&self, deadline: Instant) -> Result<(PgConnection, i32), sqlx::Error> {
        loop {
            // The first statement counts as part of connecting: a server
            // that starts shutting down just after accepting ends it too.
            let attempt = async {
                let mut conn = self.inner.options.connect().await?;
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut conn)
                    .await?;
                Ok::<_, sqlx::Error>((conn, pid))
            };
            // Bounded too: a server that accepts and never answers (or an
            // address that drops packets) must not hold the call past it.
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, attempt)
                .await
                .unwrap_or(Err(sqlx::Error::PoolTimedOut));
            match attempt {
                Ok(connected) => {
                    self.inner.open.fetch_add(1, Ordering::Relaxed);
                    return Ok(connected);
                }
                Err(e) if super::broken(&e) && Instant::now() + RECONNECT_PAUSE < deadline => {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Forgets a connection that is being closed.
    fn closed(&self, conn: PgConnection) {
        self.inner.open.fetch_sub(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
        });
    }

    fn keep(&self, conn: PgConnection, pid: i32, epoch: u64) {
        self.inner.lock().push(Idle {
            conn,
            pid,
            epoch,
            since: Instant::now(),
        });
    }

    /// Brings back a connection whose call did not leave it clean: cancels
    /// its statement if it is still running after [`CANCEL_AFTER`], waits
    /// until it is ready (a transaction left open is rolled back by the
    /// server when sqlx's queued ROLLBACK is flushed), then keeps it, or
    /// closes it. Holds the connection's permit until then.
    async fn recover(self, mut conn: PgConnection, pid: i32, permit: OwnedSemaphorePermit) {
        let ready = match tokio::time::timeout(CANCEL_AFTER, conn.ping()).await {
            Ok(result) => result,
            Err(_) => {
                self.cancel(pid).await;
                tokio::time::timeout(RECOVER_TIMEOUT, conn.ping())
                    .await
                    .unwrap_or(Err(sqlx::Error::PoolTimedOut))
            }
        };
        if ready.is_ok() && !conn.is_in_transaction() {
            self.keep(conn, pid, trouble());
        } else {
            self.closed(conn);
        }
        drop(permit);
    }

    /// Cancels whatever backend `pid` is running, from the connection kept
    /// for that (opened on first use).
    async fn cancel(&self, pid: i32) {
        let mut canceller = self.inner.canceller.lock().await;
        if canceller.is_none() {
            *canceller = self.inner.options.connect().await.ok();
        }
        let Some(conn) = canceller.as_mut() else {
            return;
        };
        let cancelled = sqlx::query("SELECT pg_cancel_backend($1)")
            .bind(pid)
            .execute(&mut *conn)
            .await;
        match cancelled {
            Ok(_) => tracing::debug!(pid, "statement of a cancelled call cancelled"),
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot cancel the statement of a cancelled call");
                *canceller = None;
            }
        }
    }

    /// Closes every connection and refuses new calls.
    pub async fn close(&self) {
        self.inner.permits.close();
        let idle: Vec<Idle> = std::mem::take(&mut *self.inner.lock());
        for idle in idle {
            self.inner.open.fetch_sub(1, Ordering::Relaxed);
            let _ = tokio::time::timeout(Duration::from_secs(1), idle.conn.close()).await;
        }
        if let Some(canceller) = self.inner.canceller.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), canceller.close()).await;
        }
    }
}

/// Counts a waiting call for as long as it waits, however its wait ends.
struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
    fn new(waiters: &'a AtomicI64) -> Self {
        waiters.fetch_add(1, Ordering::Relaxed);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection taken by one call; use it as `&mut *conn`.
pub struct DbConn {
    conn: Option<PgConnection>,
    pid: i32,
    epoch: u64,
    permit: Option<OwnedSemaphorePermit>,
    db: Db,
}

impl std::fmt::Debug for DbConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConn")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl DbConn {
    /// The server process serving this connection (`pg_backend_pid()`).
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl std::ops::Deref for DbConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("a DbConn holds its connection until dropped"))
    }
}

impl std::ops::DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a DbConn holds its connection until dropped"))
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        let (Some(conn), Some(permit)) = (self.conn.take(), self.permit.take()) else {
            return;
        };
        let cancelled = CANCELLING.with(Cell::get);
        let clean = !cancelled
            && !std::thread::panicking()
            && !conn.should_flush()
            && !conn.is_in_transaction();
        if clean && self.epoch == trouble() {
            // Kept before the permit goes back, so the next call finds it.
            self.db.keep(conn, self.pid, self.epoch);
            drop(permit);
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.db.clone().recover(conn, self.pid, permit));
            }
            Err(_) => {
                self.db.inner.open.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            }
        }
    }
}

#[cfg(test)]
mod tests;
