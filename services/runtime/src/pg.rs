//! PostgreSQL plumbing every service shares: pools sized on purpose, which
//! database errors mean "unavailable", and the health check that reports
//! whether the database answers.

use std::{
    str::FromStr as _,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{
    ConnectOptions as _, Connection as _, PgPool,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
};
use tokio::task::JoinHandle;
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
            Err(e) if is_unavailable(&e) && started.elapsed() < wait => {
                tracing::warn!(database = %target, error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => anyhow::bail!("cannot connect to the database at {target}: {e}"),
        }
    }
}

/// Applies `migrator`'s pending migrations (under PostgreSQL's advisory
/// lock, so replicas starting together take turns), first waiting up to
/// `wait` for the database to become reachable.
pub async fn migrate(
    options: &PgConnectOptions,
    migrator: &sqlx::migrate::Migrator,
    wait: Duration,
) -> anyhow::Result<()> {
    // A first connection, retried, gives clear errors while the database
    // comes up; the migrator then runs on a one-connection pool.
    connect_patiently(options, wait).await?.close().await?;
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

/// A service's pool, instrumented: every connection a call takes goes
/// through [`Db::acquire`], which counts the calls waiting and times the
/// wait (`shop_db_pool_waiters`, `shop_db_pool_acquire_seconds`).
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    waiters: Arc<AtomicI64>,
    acquire_seconds: Option<metrics::Histogram>,
}

impl Db {
    /// Wraps `pool`, reporting into `metrics` if given.
    pub fn new(pool: PgPool, metrics: Option<&crate::metrics::Metrics>) -> Self {
        let db = Db {
            pool,
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

    /// A connection from the pool (back to the pool when dropped).
    pub async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
        let started = Instant::now();
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let conn = self.pool.acquire().await;
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        if let Some(h) = &self.acquire_seconds {
            h.record(started.elapsed().as_secs_f64());
        }
        conn
    }
}

/// Whether a database error means "the database is not reachable right now"
/// (the call may succeed later: `UNAVAILABLE`) rather than a bug (`INTERNAL`).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
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
/// look dead), and sets `services` SERVING or NOT_SERVING accordingly. Stops
/// once the registry shuts down. The first check runs at once.
pub fn spawn_health_check(
    options: PgConnectOptions,
    migrator: &'static sqlx::migrate::Migrator,
    health: HealthRegistry,
    services: Vec<String>,
    interval: Duration,
) -> JoinHandle<()> {
    let required = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    tokio::spawn(async move {
        let timeout = interval.max(Duration::from_secs(1));
        let mut conn: Option<PgConnection> = None;
        let mut last: Option<bool> = None;
        loop {
            let ok = tokio::time::timeout(timeout, check(&options, &mut conn, required))
                .await
                .unwrap_or(false);
            if !ok {
                conn = None;
            }
            if health.is_shutting_down() {
                break;
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
    })
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
