//! Reads on a streaming replica, writes on the primary: [`Reads`].
//!
//! A service with a read-only replica of its database (CloudNativePG's
//! `<cluster>-ro` Service, or `make up`'s local standby) sends the reads
//! that may be a moment old there and keeps everything else on the
//! primary. A replica is used only while it is known to be close:
//!
//! - **Lag.** Every [`CHECK_INTERVAL`] a monitor notes where the primary's
//!   WAL is (`pg_current_wal_lsn()`), then where the replica has replayed
//!   to (`pg_last_wal_replay_lsn()`). The replica holds everything the
//!   primary had at the latest sample at or below its replay position, so
//!   its lag is at most the time since that sample. Past `max_lag` (or with
//!   replay paused that long) reads go to the primary until it catches up.
//! - **Down.** A replica that does not answer the monitor, or fails a read
//!   because it is unreachable (or cancelled the read for a conflict with
//!   recovery), is skipped: the read runs again on the primary at once, and
//!   the monitor takes the replica back once it answers again.
//! - **Reads after your own write.** A write returns where the primary's
//!   WAL was after it ([`WRITTEN_HEADER`], an LSN as PostgreSQL prints it);
//!   a read that carries a position ([`READ_AFTER_HEADER`]) goes to the
//!   replica only once the replica is known to have replayed that far,
//!   else to the primary. The shop's own clients do this for every call
//!   (see [`crate::upstream`]), so a storefront that added a product reads
//!   it back. Callers that send no position may read a state up to
//!   `max_lag` old; the service also reads a row the replica does not have
//!   (yet) again on the primary, so a product just added is never "not
//!   found".
//!
//! Without a replica, [`Reads`] is just the primary and costs nothing.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tonic::metadata::MetadataMap;

use super::{Db, DbError};

/// How often the monitor compares the replica with the primary.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Response metadata of a write: the primary's WAL position after it.
pub const WRITTEN_HEADER: &str = "shop-lsn";

/// Request metadata of a read: the position it must see (a
/// [`WRITTEN_HEADER`] the caller received).
pub const READ_AFTER_HEADER: &str = "shop-min-lsn";

/// Primary samples kept: with [`CHECK_INTERVAL`], 60 s of history; a
/// replica behind the oldest is "very far behind".
const SAMPLES: usize = 240;

/// A position in PostgreSQL's write-ahead log, printed as PostgreSQL does
/// (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a WAL position such as 16/B374D848");
        let (high, low) = s.split_once('/').ok_or_else(bad)?;
        let high = u32::from_str_radix(high, 16).map_err(|_| bad())?;
        let low = u32::from_str_radix(low, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl Lsn {
    /// The position a request asks to read after, if it names a valid one
    /// (anything else is ignored: at worst the read goes to the replica).
    pub fn read_after(metadata: &MetadataMap) -> Option<Lsn> {
        metadata.get(READ_AFTER_HEADER)?.to_str().ok()?.parse().ok()
    }

    /// The position a write's response reports, if any.
    pub fn written(metadata: &MetadataMap) -> Option<Lsn> {
        metadata.get(WRITTEN_HEADER)?.to_str().ok()?.parse().ok()
    }

    /// Notes the position on a write's response metadata.
    pub fn stamp_written(self, metadata: &mut MetadataMap) {
        if let Ok(value) = self.to_string().parse() {
            metadata.insert(WRITTEN_HEADER, value);
        }
    }

    /// Asks a read to see this position.
    pub fn stamp_read_after(self, metadata: &mut MetadataMap) {
        if let Ok(value) = self.to_string().parse() {
            metadata.insert(READ_AFTER_HEADER, value);
        }
    }
}

/// Which server answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Primary,
    Replica,
}

/// A read's result and which server it came from.
#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    pub from: Source,
}

/// A failure that may mean the server could not be used (then a read on
/// the replica runs again on the primary).
pub trait ServerFailure {
    fn server_unusable(&self) -> bool;
}

impl ServerFailure for DbError {
    fn server_unusable(&self) -> bool {
        // 40001 on a standby: the read was cancelled for a conflict with
        // recovery (WAL replay needed what it was reading).
        self.is_unavailable()
            || matches!(self.source_error(), sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
    }
}

/// Where a service's reads go: the primary, and a replica when one is
/// configured and close enough. Cheap to clone.
#[derive(Clone)]
pub struct Reads {
    primary: Db,
    replica: Option<Arc<Replica>>,
}

impl fmt::Debug for Reads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reads")
            .field("replica", &self.replica.is_some())
            .finish_non_exhaustive()
    }
}

struct Replica {
    db: Db,
    max_lag: Duration,
    /// Whether reads may go there now (answering, and within `max_lag`).
    usable: AtomicBool,
    /// Whether it has been measured at all (the first failure is logged).
    measured: AtomicBool,
    /// How far it had replayed when last asked.
    replayed: AtomicU64,
    /// Its lag when last measured, in milliseconds (`u64::MAX`: unknown).
    lag_ms: AtomicU64,
    /// The primary's recent positions, oldest first.
    samples: Mutex<VecDeque<(Instant, Lsn)>>,
    on_replica: metrics::Counter,
    on_primary: metrics::Counter,
}

impl Reads {
    /// Every read on `primary`.
    pub fn primary_only(primary: Db) -> Self {
        Self {
            primary,
            replica: None,
        }
    }

    /// Reads on `replica` while it is within `max_lag` of `primary`
    /// (nothing is used until the [`monitor`](Self::monitor) has measured
    /// it). Reports into `metrics`: `shop_db_reads_total{server}`,
    /// `shop_db_replica_lag_seconds`, `shop_db_replica_usable`.
    pub fn with_replica(
        primary: Db,
        replica: Db,
        max_lag: Duration,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let replica = Arc::new(Replica {
            db: replica,
            max_lag,
            usable: AtomicBool::new(false),
            measured: AtomicBool::new(false),
            replayed: AtomicU64::new(0),
            lag_ms: AtomicU64::new(u64::MAX),
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            on_replica: metrics.counter("shop_db_reads_total", &[("server", "replica")]),
            on_primary: metrics.counter("shop_db_reads_total", &[("server", "primary")]),
        });
        let watched = Arc::downgrade(&replica);
        metrics.add_collector(move |m| {
            let Some(replica) = watched.upgrade() else {
                return;
            };
            let lag = replica.lag_ms.load(Ordering::Relaxed);
            let lag = if lag == u64::MAX {
                f64::INFINITY
            } else {
                lag as f64 / 1000.0
            };
            m.gauge("shop_db_replica_lag_seconds", &[]).set(lag);
            m.gauge("shop_db_replica_usable", &[])
                .set(f64::from(u8::from(replica.usable.load(Ordering::Relaxed))));
        });
        Self {
            primary,
            replica: Some(replica),
        }
    }

    /// The primary: for writes, and reads that must be current.
    pub fn primary(&self) -> &Db {
        &self.primary
    }

    /// The server `from` names (the primary if there is no replica).
    pub fn server(&self, from: Source) -> Db {
        match (&self.replica, from) {
            (Some(replica), Source::Replica) => replica.db.clone(),
            _ => self.primary.clone(),
        }
    }

    /// Whether a replica is configured.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Where a read that must see `after` goes now.
    pub fn pick(&self, after: Option<Lsn>) -> (Db, Source) {
        match &self.replica {
            Some(replica) if replica.serves(after) => {
                replica.on_replica.increment(1);
                (replica.db.clone(), Source::Replica)
            }
            Some(replica) => {
                replica.on_primary.increment(1);
                (self.primary.clone(), Source::Primary)
            }
            None => (self.primary.clone(), Source::Primary),
        }
    }

    /// Runs `read` where [`pick`](Self::pick) says; if the replica turns out
    /// unusable, marks it so and runs `read` again on the primary.
    pub async fn read<T, E, F, Fut>(&self, after: Option<Lsn>, read: F) -> Result<Served<T>, E>
    where
        E: ServerFailure + fmt::Display,
        F: Fn(Db) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (db, from) = self.pick(after);
        match read(db).await {
            Ok(value) => Ok(Served { value, from }),
            Err(e) if from == Source::Replica && e.server_unusable() => {
                self.replica_failed(&e);
                if let Some(replica) = &self.replica {
                    replica.on_primary.increment(1);
                }
                let value = read(self.primary.clone()).await?;
                Ok(Served {
                    value,
                    from: Source::Primary,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Notes that a read on the replica failed as unusable: reads go to
    /// the primary until the monitor sees it answer again.
    pub fn replica_failed(&self, error: &dyn fmt::Display) {
        if let Some(replica) = &self.replica
            && replica.usable.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(error = %error, "read replica failed; reading on the primary");
        }
    }

    /// Where the primary's WAL is now, when there is a replica to compare
    /// with (a write's callers send it back to read their write): `None`
    /// without a replica, or when the primary does not say.
    pub async fn written(&self) -> Option<Lsn> {
        self.replica.as_ref()?;
        match lsn(&self.primary, "SELECT pg_current_wal_insert_lsn()::text").await {
            Ok(lsn) => Some(lsn),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the primary's WAL position");
                None
            }
        }
    }

    /// Measures the replica every [`CHECK_INTERVAL`] until the service
    /// stops (run it as a background task). Returns at once without one.
    pub async fn monitor(self) {
        let Some(replica) = self.replica.clone() else {
            return;
        };
        let mut ticks = tokio::time::interval(CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Ok(lsn) = lsn(&self.primary, "SELECT pg_current_wal_lsn()::text").await {
                replica.sample(Instant::now(), lsn);
            }
            let state = replay_state(&replica.db).await;
            replica.measured(Instant::now(), state);
        }
    }
}

impl Replica {
    fn serves(&self, after: Option<Lsn>) -> bool {
        self.usable.load(Ordering::Relaxed)
            && after.is_none_or(|after| after.0 <= self.replayed.load(Ordering::Relaxed))
    }

    fn sample(&self, at: Instant, lsn: Lsn) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((at, lsn));
    }

    /// Takes a measurement: `Ok(Some(position))` from a standby,
    /// `Ok(None)` from a server that is not one (it has everything), `Err`
    /// when it did not answer.
    fn measured(&self, now: Instant, state: Result<Option<Lsn>, DbError>) {
        let first = !self.measured.swap(true, Ordering::Relaxed);
        let (usable, replayed, lag) = match state {
            Ok(None) => (true, Lsn(u64::MAX), Some(Duration::ZERO)),
            Ok(Some(replayed)) => {
                let lag = self.lag(now, replayed);
                (lag.is_some_and(|lag| lag <= self.max_lag), replayed, lag)
            }
            Err(e) => {
                if first || self.usable.load(Ordering::Relaxed) {
                    tracing::warn!(error = %crate::error::ErrorChain(&e), "read replica does not answer; reading on the primary");
                }
                (false, Lsn(0), None)
            }
        };
        let was = self.usable.swap(usable, Ordering::Relaxed);
        self.replayed.store(replayed.0, Ordering::Relaxed);
        self.lag_ms.store(
            lag.map_or(u64::MAX, |l| l.as_millis() as u64),
            Ordering::Relaxed,
        );
        match (was, usable) {
            (false, true) => tracing::info!(
                lag_ms = lag.map(|l| l.as_millis() as u64),
                "reading on the replica"
            ),
            (true, false) if lag.is_some() => tracing::warn!(
                lag_ms = lag.map(|l| l.as_millis() as u64),
                max_lag_ms = self.max_lag.as_millis() as u64,
                "read replica lags too far; reading on the primary"
            ),
            _ => {}
        }
    }

    /// How far behind a replica that replayed up to `replayed` is, at
    /// most: the time since the newest primary sample it has (zero when it
    /// has the newest); `None` when it is behind every sample kept.
    fn lag(&self, now: Instant, replayed: Lsn) -> Option<Duration> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (_, newest) = samples.back()?;
        if replayed >= *newest {
            return Some(Duration::ZERO);
        }
        samples
            .iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replayed)
            .map(|(at, _)| now.saturating_duration_since(*at))
    }
}

/// A WAL position the primary reports: where it has written to (samples:
/// a caught-up standby has replayed exactly that far), or, for a write's
/// callers, where it has inserted to (past the write's commit record even
/// before an asynchronous commit is written out).
async fn lsn(db: &Db, sql: &'static str) -> Result<Lsn, DbError> {
    let text: String = db
        .read(|mut conn| async move { sqlx::query_scalar(sql).fetch_one(&mut *conn).await })
        .await?;
    text.parse()
        .map_err(|e: String| DbError::Other(sqlx::Error::Protocol(e)))
}

/// `Some(replayed)` from a standby, `None` from a server that is not one.
async fn replay_state(db: &Db) -> Result<Option<Lsn>, DbError> {
    let (standby, replayed): (bool, Option<String>) = db
        .read(|mut conn| async move {
            sqlx::query_as("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
                .fetch_one(&mut *conn)
                .await
        })
        .await?;
    if !standby {
        return Ok(None);
    }
    let replayed = replayed.and_then(|r| r.parse().ok()).unwrap_or_default();
    Ok(Some(replayed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_print_and_parse_as_postgresql_does() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, (0x16 << 32) | 0xB374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        for bad in ["", "16", "x/1", "1/2/3", "123456789/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    fn replica(max_lag: Duration) -> Replica {
        let metrics = crate::metrics::Metrics::new("test");
        let url = "postgres://nobody@127.0.0.1:1/none";
        let args = crate::config::DbArgs {
            database_url: url.into(),
            database_password_file: None,
            db_max_connections: 1,
            db_acquire_timeout: Duration::from_secs(1),
            db_health_interval: Duration::from_secs(1),
            db_statement_timeout: Duration::from_secs(1),
            db_lock_timeout: Duration::from_secs(1),
            db_idle_in_transaction_timeout: Duration::from_secs(1),
        };
        let db = Db::new(&args, url.parse().unwrap(), None);
        Replica {
            db,
            max_lag,
            usable: AtomicBool::new(false),
            measured: AtomicBool::new(false),
            replayed: AtomicU64::new(0),
            lag_ms: AtomicU64::new(u64::MAX),
            samples: Mutex::new(VecDeque::new()),
            on_replica: metrics.counter("r", &[]),
            on_primary: metrics.counter("p", &[]),
        }
    }

    #[tokio::test]
    async fn lag_is_the_age_of_the_newest_primary_position_the_replica_has() {
        let r = replica(Duration::from_secs(2));
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // The primary sat at 100 for two samples, then moved to 200 and 300.
        r.sample(t0, Lsn(100));
        r.sample(t0 + s, Lsn(100));
        r.sample(t0 + 2 * s, Lsn(200));
        r.sample(t0 + 3 * s, Lsn(300));
        let now = t0 + 3 * s;
        assert_eq!(r.lag(now, Lsn(300)), Some(Duration::ZERO));
        assert_eq!(r.lag(now, Lsn(250)), Some(s));
        assert_eq!(r.lag(now, Lsn(100)), Some(2 * s));
        assert_eq!(r.lag(now, Lsn(50)), None, "behind every sample");

        r.measured(now, Ok(Some(Lsn(250))));
        assert!(r.serves(None));
        assert!(r.serves(Some(Lsn(250))));
        assert!(!r.serves(Some(Lsn(251))), "a write it has not replayed");
        r.measured(now + s, Ok(Some(Lsn(250))));
        assert!(r.serves(None), "2 s behind, within max_lag");
        r.measured(now + 2 * s, Ok(Some(Lsn(250))));
        assert!(!r.serves(None), "3 s behind");
        r.measured(now, Err(DbError::Unavailable(sqlx::Error::PoolTimedOut)));
        assert!(!r.serves(None), "down");
        r.measured(now, Ok(None));
        assert!(
            r.serves(Some(Lsn(u64::MAX - 1))),
            "not a standby: has everything"
        );
    }
}
