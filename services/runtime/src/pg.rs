//! PostgreSQL plumbing every service shares: the connections of a service
//! ([`Db`], in `pg/pool.rs`), which database errors mean "unavailable"
//! ([`DbError`]), migrations, and the health check that reports whether
//! the database answers.

mod pool;
pub mod replica;
pub mod url;

use std::time::Duration;

use sqlx::{
    ConnectOptions as _, Connection as _,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
};
use tonic_health::pb::health_check_response::ServingStatus;

pub use pool::{Db, DbConn, while_cancelling};
pub use replica::{Lsn, ReadAt, Reads};

use crate::{config::DbArgs, health::HealthRegistry};

/// Connection options from `--database-url` and `--database-password-file`,
/// tagged with the service's name so `pg_stat_activity` shows who is who.
pub fn connect_options(args: &DbArgs, application_name: &str) -> anyhow::Result<PgConnectOptions> {
    let mut options = url::parse(&args.database_url)
        .map_err(|e| anyhow::anyhow!("invalid --database-url: {e:#}"))?
        .application_name(application_name);
    if let Some(path) = &args.database_password_file {
        let password = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        options = options.password(password.trim_end_matches(['\n', '\r']));
    }
    Ok(options)
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
            pool::note_trouble();
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

/// Whether `error` says the connection itself is gone (as opposed to the
/// statement failing): the database restarted, or cannot be reached.
fn broken(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
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
            // cannot connect now; 53300: too many connections; 57014: a
            // statement past its statement_timeout (or cancelled); 55P03: a
            // lock not had within lock_timeout.
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "57014" | "55P03"
                )
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

/// Failed checks in a row that make a serving service NOT_SERVING.
const OUTAGE_CHECKS: u32 = 2;

/// Checks every `interval` whether the database answers and holds every
/// migration of `migrator` (so a pod is not ready before its schema is),
/// on a connection of its own (a busy pool must not make a healthy service
/// look dead), and sets `services` SERVING or NOT_SERVING accordingly: at
/// once when the service was not serving, after [`OUTAGE_CHECKS`] failed
/// checks in a row when it was. The first check runs at once; it runs until
/// the service's task group stops it.
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
    let mut failures = 0;
    loop {
        let ok = tokio::time::timeout(timeout, check(&options, &mut conn, required))
            .await
            .unwrap_or(false);
        if !ok {
            conn = None;
            pool::note_trouble();
        }
        failures = if ok { 0 } else { failures + 1 };
        // A serving service rides out one failed check: a database restart
        // of a second or two is waited for by the calls themselves (a
        // connect is retried until --db-acquire-timeout), and taking every
        // replica out of its callers' rotation would fail them instead.
        let ok = ok || (last == Some(true) && failures < OUTAGE_CHECKS);
        if failures == 1 && ok {
            tracing::warn!(
                "database unreachable or not migrated; still SERVING until the next check fails too"
            );
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
