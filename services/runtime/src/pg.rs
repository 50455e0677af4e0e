//! PostgreSQL plumbing every service shares: pools sized on purpose, which
//! database errors mean "unavailable", and the health check that reports
//! whether the database answers.

use std::{
    collections::VecDeque,
    str::FromStr as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{
    ConnectOptions as _, Connection as _, PgPool, Postgres,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
};
use tokio::sync::oneshot;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{config::DbArgs, health::HealthRegistry};

/// Connection options from `--database-url` and `--database-password-file`,
/// tagged with the service's name so `pg_stat_activity` shows who is who.
pub fn connect_options(args: &DbArgs, application_name: &str) -> anyhow::Result<PgConnectOptions> {
    let mut options = PgConnectOptions::from_str(&args.database_url)
        .map_err(|e| anyhow::anyhow!("invalid --database-url: {e}"))?
        .application_name(application_name);
    if let Some(path) = &args.database_password_file {
        let password = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        options = options.password(password.trim_end_matches(['\n', '\r']));
    }
    Ok(options)
}

/// A pool that connects on first use, so the service starts (and reports
/// NOT_SERVING) even while its database is still coming up.
///
/// Sizing: at most `--db-max-connections` (default 8: a few per core of a
/// small node keeps PostgreSQL busy without queueing inside it); one stays
/// open so the first call after a quiet spell does not pay for a connect.
/// A call that cannot get a connection within `--db-acquire-timeout` fails
/// `UNAVAILABLE` instead of queueing forever.
///
/// Connections are not pinged before each use (that would double the round
/// trips of every call): a connection broken by a database restart fails
/// its one call `UNAVAILABLE` and is dropped, and the health watcher turns
/// readiness off while the database is away.
pub fn pool(args: &DbArgs, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(args.db_max_connections.max(1))
        .min_connections(1)
        .acquire_timeout(args.db_acquire_timeout)
        .idle_timeout(Duration::from_secs(600))
        .test_before_acquire(false)
        .connect_lazy_with(options)
}

/// One connection, retried for up to `wait` while the database is not yet
/// reachable (a migration Job may start before its database). The error
/// names the server and the cause, never the password.
pub async fn connect_patiently(
    options: &PgConnectOptions,
    wait: Duration,
) -> anyhow::Result<PgConnection> {
    let started = std::time::Instant::now();
    let target = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    loop {
        match options.connect().await {
            Ok(conn) => return Ok(conn),
            Err(e) if unavailable(&e) && started.elapsed() < wait => {
                tracing::warn!(database = %target, error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => anyhow::bail!("cannot connect to the database at {target}: {e}"),
        }
    }
}

/// How long [`migrate`] waits for the database to become reachable.
const MIGRATE_WAIT: Duration = Duration::from_secs(60);

/// Applies `migrator`'s pending migrations (under PostgreSQL's advisory
/// lock, so replicas starting together take turns), first waiting up to a
/// minute for the database to become reachable.
pub async fn migrate(
    options: &PgConnectOptions,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<()> {
    // A first connection, retried, gives clear errors while the database
    // comes up; the migrator then runs on a one-connection pool.
    connect_patiently(options, MIGRATE_WAIT)
        .await?
        .close()
        .await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    migrator
        .run(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
    pool.close().await;
    Ok(())
}

/// A service's pool, instrumented and without a round trip per release.
///
/// Every connection a call takes goes through [`Db::acquire`], which counts
/// the calls waiting and times the wait (`shop_db_pool_waiters`,
/// `shop_db_pool_acquire_seconds`).
///
/// sqlx's pool pings every connection it gets back (one more round trip to
/// PostgreSQL per query, as costly as a point select). [`DbConn`] instead
/// keeps a connection that comes back in a clean state — nothing left to
/// send, no transaction open — for the next call, handing it straight to a
/// call already waiting if there is one. A connection dropped in the middle
/// of a query is safe to reuse: sqlx reads the rest of the answer before the
/// next statement. One dropped with unsent bytes or an open transaction goes
/// back through sqlx (which finishes it or closes it). When a database error
/// says connections may be broken ([`DbError`]), kept connections
/// are no longer reused without that check.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    kept: Arc<Mutex<Kept>>,
    waiters: Arc<AtomicI64>,
    acquire_seconds: Option<metrics::Histogram>,
}

/// Connections back from calls, and calls waiting for one.
#[derive(Debug, Default)]
struct Kept {
    /// Most recently used last: warm connections are reused first.
    idle: Vec<(PoolConnection<Postgres>, u64)>,
    waiting: VecDeque<oneshot::Sender<(PoolConnection<Postgres>, u64)>>,
}

/// Bumped whenever a database error suggests connections may be broken:
/// connections kept before it are handed back to sqlx, which tests them.
static TROUBLE: AtomicU64 = AtomicU64::new(0);

fn note_trouble() {
    TROUBLE.fetch_add(1, Ordering::Relaxed);
}

impl Db {
    /// Wraps `pool`, reporting into `metrics` if given.
    pub fn new(pool: PgPool, metrics: Option<&crate::metrics::Metrics>) -> Self {
        let db = Db {
            pool,
            kept: Arc::default(),
            waiters: Arc::new(AtomicI64::new(0)),
            acquire_seconds: metrics.map(|m| m.histogram("shop_db_pool_acquire_seconds", &[])),
        };
        if let Some(m) = metrics {
            m.watch_pool(&db);
        }
        db
    }

    /// The pool itself.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Calls waiting for a connection right now.
    pub fn waiters(&self) -> i64 {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Open connections not in use by a call.
    pub fn idle(&self) -> usize {
        self.pool.num_idle() + self.lock().idle.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection: a kept one, or one from the pool, or the first one a
    /// finishing call gives back. Back to the pool (or kept) when dropped.
    pub async fn acquire(&self) -> Result<DbConn, sqlx::Error> {
        let started = Instant::now();
        let epoch = TROUBLE.load(Ordering::Relaxed);
        let handed = {
            let mut kept = self.lock();
            // Kept before the last trouble: let sqlx test it on the way back.
            while let Some((conn, kept_epoch)) = kept.idle.pop() {
                if kept_epoch == epoch {
                    drop(kept);
                    self.record(started);
                    return Ok(self.wrap(conn, epoch));
                }
                drop(conn);
            }
            let (tx, rx) = oneshot::channel();
            kept.waiting.push_back(tx);
            rx
        };
        self.waiters.fetch_add(1, Ordering::Relaxed);
        // The pool's side runs as its own task: a connection it is opening
        // is never abandoned half-way when a handed-over one comes first
        // (it goes to the pool's idle queue instead).
        let pool = self.pool.clone();
        let mut from_pool = tokio::spawn(async move { pool.acquire().await });
        let result = tokio::select! {
            biased;
            Ok((conn, kept_epoch)) = handed => Ok(self.wrap(conn, kept_epoch)),
            // A connection handed over meanwhile is dropped with `handed`
            // and so goes back to the pool.
            joined = &mut from_pool => match joined {
                Ok(conn) => conn.map(|c| self.wrap(c, epoch)),
                Err(_) => Err(sqlx::Error::WorkerCrashed),
            },
        };
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        self.record(started);
        result
    }

    fn wrap(&self, conn: PoolConnection<Postgres>, epoch: u64) -> DbConn {
        DbConn {
            conn: Some(conn),
            epoch,
            kept: self.kept.clone(),
        }
    }

    fn record(&self, started: Instant) {
        if let Some(h) = &self.acquire_seconds {
            h.record(started.elapsed().as_secs_f64());
        }
    }

    /// Closes every connection (kept ones first) and waits for them.
    pub async fn close(&self) {
        {
            let mut kept = self.lock();
            kept.idle.clear();
            kept.waiting.clear();
        }
        self.pool.close().await;
    }
}

/// A connection taken by one call; use it as `&mut *conn`.
pub struct DbConn {
    conn: Option<PoolConnection<Postgres>>,
    epoch: u64,
    kept: Arc<Mutex<Kept>>,
}

impl std::fmt::Debug for DbConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConn").finish_non_exhaustive()
    }
}

impl std::ops::Deref for DbConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("a DbConn holds its connection until dropped"))
    }
}

impl std::ops::DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a DbConn holds its connection until dropped"))
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let clean = !std::thread::panicking()
            && !conn.should_flush()
            && !conn.is_in_transaction()
            && self.epoch == TROUBLE.load(Ordering::Relaxed);
        if !clean {
            // sqlx finishes it (flush, rollback, ping) or closes it.
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut handing = (conn, self.epoch);
        while let Some(waiter) = kept.waiting.pop_front() {
            match waiter.send(handing) {
                Ok(()) => return,
                Err(back) => handing = back,
            }
        }
        kept.idle.push(handing);
    }
}

/// A database error, sorted once for every service: the database is not
/// reachable right now (the call may succeed later: `UNAVAILABLE`), or
/// anything else (a bug: `INTERNAL`). Each service's error enum wraps it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    /// Sorts `error`. An "unavailable" (or protocol) error also stops [`Db`]
    /// from reusing its kept connections without sqlx testing them first:
    /// they may be broken too.
    fn from(error: sqlx::Error) -> Self {
        let unavailable = unavailable(&error);
        if unavailable || matches!(error, sqlx::Error::Protocol(_)) {
            note_trouble();
        }
        if unavailable {
            DbError::Unavailable(error)
        } else {
            DbError::Other(error)
        }
    }
}

impl DbError {
    /// Whether the database was not reachable.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }

    /// The underlying error, for matching on what the database said.
    pub fn source_error(&self) -> &sqlx::Error {
        match self {
            DbError::Unavailable(e) | DbError::Other(e) => e,
        }
    }
}

impl From<DbError> for tonic::Status {
    /// "Try again later", or an opaque internal error with the cause logged.
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(cause) => {
                tracing::warn!(error = %crate::error::ErrorChain(&cause), "database unavailable");
                tonic::Status::unavailable("the database is unavailable; try again later")
            }
            e @ DbError::Other(_) => crate::error::internal(&e),
        }
    }
}

fn unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01-03: admin/crash shutdown,
            // cannot connect now; 53300: too many connections.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The name of the constraint a database error violated, if any.
pub fn violated_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// Checks every `interval` whether the database answers and holds every
/// migration of `migrator` (so a pod is not ready before its schema is),
/// on a connection of its own (a busy pool must not make a healthy service
/// look dead), and sets `services` SERVING or NOT_SERVING accordingly. The
/// first check runs at once; it runs until the service's task group stops it.
pub async fn health_check(
    options: PgConnectOptions,
    migrator: &'static sqlx::migrate::Migrator,
    health: HealthRegistry,
    services: Vec<String>,
    interval: Duration,
) {
    let required = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let timeout = interval.max(Duration::from_secs(1));
    let mut conn: Option<PgConnection> = None;
    let mut last: Option<bool> = None;
    loop {
        let ok = tokio::time::timeout(timeout, check(&options, &mut conn, required))
            .await
            .unwrap_or(false);
        if !ok {
            conn = None;
            note_trouble();
        }
        if last != Some(ok) {
            if ok {
                tracing::info!("database reachable and migrated: SERVING");
            } else {
                tracing::warn!("database unreachable or not migrated: NOT_SERVING");
            }
            last = Some(ok);
        }
        let status = if ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in &services {
            health.set(service, status);
        }
        tokio::time::sleep(interval).await;
    }
}

async fn check(options: &PgConnectOptions, conn: &mut Option<PgConnection>, required: i64) -> bool {
    if conn.is_none() {
        match options.connect().await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                tracing::debug!(error = %e, "health check cannot connect");
                return false;
            }
        }
    }
    let Some(c) = conn.as_mut() else {
        return false;
    };
    let applied: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(c)
            .await;
    match applied {
        Ok(version) => version.unwrap_or(0) >= required,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
            tracing::debug!("no migrations applied yet");
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, "health check query failed");
            *conn = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Executor as _;

    async fn db(cluster: &shop_devdb::Cluster, max: u32) -> Db {
        let url = cluster.fresh_database("pool").await.unwrap();
        let args = DbArgs {
            database_url: url,
            database_password_file: None,
            db_max_connections: max,
            db_acquire_timeout: Duration::from_secs(5),
            db_health_interval: Duration::from_secs(1),
        };
        Db::new(pool(&args, connect_options(&args, "test").unwrap()), None)
    }

    async fn backend_pid(conn: &mut DbConn) -> Result<i32, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_kept_reused_and_survive_a_killed_backend() {
        let cluster = shop_devdb::Cluster::temporary().unwrap();
        let db = db(&cluster, 4).await;

        // Kept: the same backend serves the next call, sqlx's pool holds none idle.
        let first = backend_pid(&mut db.acquire().await.unwrap()).await.unwrap();
        let again = backend_pid(&mut db.acquire().await.unwrap()).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(db.idle(), 1 + db.pool().num_idle());

        // A transaction left open goes back through sqlx (rolled back), not kept.
        {
            let mut conn = db.acquire().await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            tx.execute("CREATE TABLE t (x int)").await.unwrap();
        }
        let mut conn = db.acquire().await.unwrap();
        assert!(!conn.is_in_transaction());
        let tables: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert_eq!(tables, 0, "the open transaction was rolled back");
        let kept_pid = backend_pid(&mut conn).await.unwrap();
        drop(conn);

        // Its backend killed while kept: one call fails UNAVAILABLE, the next works
        // on a new connection.
        let mut other = db.pool().acquire().await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(kept_pid)
            .execute(&mut *other)
            .await
            .unwrap();
        drop(other);
        let mut results = Vec::new();
        for _ in 0..3 {
            let mut conn = db.acquire().await.unwrap();
            let result = backend_pid(&mut conn).await;
            drop(conn);
            // As the services do: every error is sorted into a DbError.
            let result = result.map_err(DbError::from);
            if let Err(e) = &result {
                assert!(e.is_unavailable(), "{e:?}");
            }
            results.push(result);
        }
        let failed: Vec<&DbError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.len() <= 1, "{failed:?}");
        let last = results.last().unwrap().as_ref().unwrap();
        assert_ne!(*last, kept_pid);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_call_gets_the_connection_a_finishing_call_gives_back() {
        let cluster = shop_devdb::Cluster::temporary().unwrap();
        let db = db(&cluster, 1).await;
        let held = db.acquire().await.unwrap();
        let waiting = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut conn = db.acquire().await?;
                backend_pid(&mut conn).await
            })
        };
        // The waiter registers; then the only connection comes back to it.
        while db.waiters() == 0 {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        drop(held);
        let pid = waiting.await.unwrap().unwrap();
        assert!(pid > 0);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "handed over, not left waiting for the 5 s acquire timeout"
        );
        db.close().await;
        assert!(db.pool().is_closed());
    }
}
