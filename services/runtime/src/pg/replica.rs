//! Reads on a streaming replica, writes on the primary: [`Reads`].
//!
//! A service with a read-only replica of its database (CloudNativePG's
//! `<cluster>-ro` Service, or `make up`'s local standby) sends the reads
//! that may be a moment old there and keeps everything else on the
//! primary. A replica is used only while it is known to be close, and the
//! check is made on the very connection a read uses, because a Service
//! such as `<cluster>-ro` spreads connections over several replicas:
//!
//! - **Lag.** Every [`CHECK_INTERVAL`] a monitor notes where the primary's
//!   WAL is (`pg_current_wal_insert_lsn()`, on a connection of its own). A
//!   replica server that has replayed up to a position holds everything the
//!   primary had at the newest sample at or below it, so its lag is at most
//!   the age of that sample. A read takes a replica connection, learns how
//!   far that connection's server has replayed (`pg_last_wal_replay_lsn()`,
//!   asked again when the last answer is older than [`CHECK_INTERVAL`]),
//!   and runs there only if that server is within `max_lag`; otherwise on
//!   the primary.
//! - **Down.** A replica that does not answer the monitor is skipped
//!   altogether until it answers again (a server that answers but lags is
//!   skipped connection by connection, as above); a read that fails on one because
//!   the connection or server went away (or that the standby cancelled for
//!   a conflict with recovery) runs again on the primary at once. A
//!   statement that is merely slow is not retried anywhere.
//! - **Reads after your own write.** A write returns where the primary's
//!   WAL was after it ([`WRITTEN_HEADER`], an LSN as PostgreSQL prints it);
//!   a read that carries a position ([`READ_AFTER_HEADER`]) runs on a
//!   replica connection only if that connection's server has replayed that
//!   far (asked afresh when the last answer is short of it), else on the
//!   primary. The shop's own clients send the furthest position they were
//!   given with every call (see [`crate::upstream`]). Callers that send no
//!   position may read a state up to `max_lag` old; the service also reads
//!   a row the replica does not have (yet) again on the primary, so a
//!   product just added is never "not found".
//!
//! Without a replica, [`Reads`] is just the primary and costs nothing.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{Connection as _, PgConnection};
use tonic::metadata::MetadataMap;

use super::{Db, DbConn};

/// How often the primary's position is sampled, and how old a replica
/// connection's answer may be before it is asked again.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Response metadata of a write: the primary's WAL position after it.
pub const WRITTEN_HEADER: &str = "shop-lsn";

/// Request metadata of a read: the position it must see (a
/// [`WRITTEN_HEADER`] the caller received).
pub const READ_AFTER_HEADER: &str = "shop-min-lsn";

/// Primary samples kept: with [`CHECK_INTERVAL`], 60 s of history; a
/// replica behind the oldest is "very far behind".
const SAMPLES: usize = 240;

/// Replica connections' answers are forgotten after this long unused.
const FORGET_AFTER: Duration = Duration::from_secs(30);

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
    /// Whether a server that has replayed up to `self` has everything the
    /// primary had at `position` (an insert position). The insert position
    /// of a record that ends exactly at a WAL page's end points past the
    /// next page's header, where replay stops before it: those are the same
    /// place (8 KiB pages, 24-byte headers, 40 at a segment's start).
    pub fn covers(self, position: Lsn) -> bool {
        const PAGE: u64 = 8192;
        let in_page = position.0 % PAGE;
        position <= self || ((in_page == 24 || in_page == 40) && self.0 == position.0 - in_page)
    }

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

/// Reads that must see position `after` (if any), each on a close replica
/// or the primary ([`Reads::at`]), or each on the primary
/// ([`Reads::on_primary`]); remembers whether any was served by a replica.
/// Database code that only reads takes a `&ReadAt`.
pub struct ReadAt<'a> {
    reads: &'a Reads,
    after: Option<Lsn>,
    primary_only: bool,
    on_replica: AtomicBool,
}

impl ReadAt<'_> {
    /// Whether a read so far was answered by a replica (so a row it did
    /// not find may exist on the primary).
    pub fn used_replica(&self) -> bool {
        self.on_replica.load(Ordering::Relaxed)
    }
}

impl ReadAt<'_> {
    /// Runs `read` (statements that change nothing) on a connection of a
    /// replica that is close enough, else on the primary; see [`Db::read`].
    pub async fn read<T, F, Fut>(&self, read: F) -> Result<T, sqlx::Error>
    where
        F: Fn(DbConn) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        if let Some(replica) = &self.reads.replica
            && !self.primary_only
            && replica.usable.load(Ordering::Relaxed)
        {
            match replica.checked(self.after).await {
                Ok(Some(conn)) => match read(conn).await {
                    Ok(value) => {
                        replica.on_replica.increment(1);
                        self.on_replica.store(true, Ordering::Relaxed);
                        return Ok(value);
                    }
                    Err(e) if server_unusable(&e) => self.reads.replica_failed(&e),
                    Err(e) => return Err(e),
                },
                // That connection's server is behind: the primary has it.
                Ok(None) => {}
                Err(e) => self.reads.replica_failed(&e),
            }
        }
        if let Some(replica) = &self.reads.replica
            && !self.primary_only
        {
            replica.on_primary.increment(1);
        }
        self.reads.primary.read(read).await
    }
}

/// Whether `error` says the replica (its connection or server) cannot be
/// used now, so the read should run on the primary; a statement that was
/// slow or wrong is not such an error.
fn server_unusable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // 08: connection exception; 57P01-03: shut down or starting;
        // 53300: too many connections; 40001 on a standby: cancelled for a
        // conflict with recovery (WAL replay needed what it read).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "40001"
                )
        }),
        _ => false,
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
    /// Whether reads may try it: the monitor's connection answers (each
    /// read then checks its own connection's server).
    usable: AtomicBool,
    /// Whether it has been measured at all (the first failure is logged).
    measured: AtomicBool,
    /// The lag of the server the monitor's connection reaches, when last
    /// measured, in milliseconds (`u64::MAX`: unknown).
    lag_ms: AtomicU64,
    /// The primary's recent positions, oldest first.
    samples: Mutex<VecDeque<(Instant, Lsn)>>,
    /// Per replica connection (backend pid): when its server last said how
    /// far it had replayed, and that position.
    servers: Mutex<HashMap<i32, (Instant, Lsn)>>,
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
    /// it). Reports into `metrics`: `shop_db_reads_total{server}` (where
    /// reads ran), `shop_db_replica_up` (the replica answers) and
    /// `shop_db_replica_lag_seconds` (of the server the monitor reaches).
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
            lag_ms: AtomicU64::new(u64::MAX),
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            servers: Mutex::new(HashMap::new()),
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
            m.gauge("shop_db_replica_up", &[])
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

    /// Reads that must see `after` (a position the caller sent, if any).
    pub fn at(&self, after: Option<Lsn>) -> ReadAt<'_> {
        ReadAt {
            reads: self,
            after,
            primary_only: false,
            on_replica: AtomicBool::new(false),
        }
    }

    /// Reads that must be current: on the primary.
    pub fn on_primary(&self) -> ReadAt<'_> {
        ReadAt {
            primary_only: true,
            ..self.at(None)
        }
    }

    /// Notes that a read on the replica failed as unusable: reads go to
    /// the primary until the monitor sees it answer again, and kept
    /// connections are tested before their next use (they may be broken).
    fn replica_failed(&self, error: &dyn fmt::Display) {
        super::pool::note_trouble();
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
        let lsn = self
            .primary
            .read(|mut conn| async move { position(&mut conn, INSERTED).await })
            .await;
        match lsn {
            Ok(lsn) => Some(lsn),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the primary's WAL position");
                None
            }
        }
    }

    /// Samples the primary and measures the replica every
    /// [`CHECK_INTERVAL`], each on a connection of its own (a busy pool
    /// must not make a close replica look far), until the service stops
    /// (run it as a background task). Returns at once without a replica.
    pub async fn monitor(self) {
        let Some(replica) = self.replica.clone() else {
            return;
        };
        let mut primary: Option<PgConnection> = None;
        let mut standby: Option<PgConnection> = None;
        let mut ticks = tokio::time::interval(CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Ok(lsn) = ask(&self.primary, &mut primary, async |c: &mut PgConnection| {
                position(c, INSERTED).await
            })
            .await
            {
                replica.sample(Instant::now(), lsn);
            }
            let state = ask(&replica.db, &mut standby, replayed).await;
            replica.measured(Instant::now(), state);
        }
    }
}

/// Runs `query` on the monitor's own connection to `db`, opened (again)
/// when there is none; a failed one is dropped, to be opened next time.
async fn ask<T>(
    db: &Db,
    conn: &mut Option<PgConnection>,
    query: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if conn.is_none() {
        *conn = Some(
            tokio::time::timeout(CHECK_INTERVAL * 4, db.dedicated())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??,
        );
    }
    let Some(c) = conn.as_mut() else {
        return Err(sqlx::Error::PoolClosed);
    };
    let result = tokio::time::timeout(CHECK_INTERVAL * 4, query(c))
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut));
    if result.is_err()
        && let Some(c) = conn.take()
    {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
        });
    }
    result
}

impl Replica {
    /// A replica connection whose server has replayed past `after` and is
    /// within `max_lag`, `None` if the one it got is not, an error if it
    /// cannot get or ask one.
    async fn checked(&self, after: Option<Lsn>) -> Result<Option<DbConn>, sqlx::Error> {
        let mut conn = self.db.acquire().await?;
        let now = Instant::now();
        let known = self.lock_servers().get(&conn.pid()).copied();
        let at = match known {
            Some((asked, at))
                if now.saturating_duration_since(asked) < CHECK_INTERVAL
                    && after.is_none_or(|after| at.covers(after)) =>
            {
                at
            }
            _ => {
                let at = replayed(&mut conn).await?.unwrap_or(Lsn(u64::MAX));
                let mut servers = self.lock_servers();
                servers
                    .retain(|_, (asked, _)| now.saturating_duration_since(*asked) < FORGET_AFTER);
                servers.insert(conn.pid(), (now, at));
                at
            }
        };
        let close = self.lag(now, at).is_some_and(|lag| lag <= self.max_lag);
        Ok((close && after.is_none_or(|after| at.covers(after))).then_some(conn))
    }

    fn lock_servers(&self) -> std::sync::MutexGuard<'_, HashMap<i32, (Instant, Lsn)>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sample(&self, at: Instant, lsn: Lsn) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((at, lsn));
    }

    /// Takes the monitor's measurement: `Ok(Some(position))` from a
    /// standby, `Ok(None)` from a server that is not one (it has
    /// everything), `Err` when it did not answer.
    fn measured(&self, now: Instant, state: Result<Option<Lsn>, sqlx::Error>) {
        let first = !self.measured.swap(true, Ordering::Relaxed);
        let (usable, lag) = match state {
            Ok(at) => (true, self.lag(now, at.unwrap_or(Lsn(u64::MAX)))),
            Err(e) => {
                if first || self.usable.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "read replica does not answer; reading on the primary");
                }
                (false, None)
            }
        };
        let was = self.usable.swap(usable, Ordering::Relaxed);
        self.lag_ms.store(
            lag.map_or(u64::MAX, |l| l.as_millis() as u64),
            Ordering::Relaxed,
        );
        let lag_ms = lag.map(|l| l.as_millis() as u64);
        if !was && usable {
            tracing::info!(
                lag_ms,
                "read replica answers; reading there while it is close"
            );
        }
    }

    /// How far behind a server that replayed up to `at` is, at most: the
    /// age of the newest primary sample it has; `None` when there is no
    /// sample yet or it is behind every sample kept. (Old samples, say
    /// while the primary cannot be asked, make every replica look far.)
    fn lag(&self, now: Instant, at: Lsn) -> Option<Duration> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .rev()
            .find(|(_, lsn)| at.covers(*lsn))
            .map(|(sampled, _)| now.saturating_duration_since(*sampled))
    }
}

/// Where the primary has inserted WAL to: the end of its last record, past
/// a write's commit record even before an asynchronous commit is written
/// out (samples, and what a write's callers get). Not the write position
/// (`pg_current_wal_lsn()`), which may end a page past the last record
/// while the record that crosses it is unfinished: a caught-up standby
/// replays to the end of the last whole record.
const INSERTED: &str = "SELECT pg_current_wal_insert_lsn()::text";

async fn position(conn: &mut PgConnection, sql: &'static str) -> Result<Lsn, sqlx::Error> {
    let text: String = sqlx::query_scalar(sql).fetch_one(conn).await?;
    text.parse().map_err(sqlx::Error::Protocol)
}

/// How far a server has replayed: `Some(position)` from a standby, `None`
/// from a server that is not one.
async fn replayed(conn: &mut PgConnection) -> Result<Option<Lsn>, sqlx::Error> {
    let (standby, at): (bool, Option<String>) =
        sqlx::query_as("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
            .fetch_one(conn)
            .await?;
    if !standby {
        return Ok(None);
    }
    Ok(Some(at.and_then(|r| r.parse().ok()).unwrap_or_default()))
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
        Replica {
            db: Db::new(&args, url.parse().unwrap(), None),
            max_lag,
            usable: AtomicBool::new(false),
            measured: AtomicBool::new(false),
            lag_ms: AtomicU64::new(u64::MAX),
            samples: Mutex::new(VecDeque::new()),
            servers: Mutex::new(HashMap::new()),
            on_replica: metrics.counter("r", &[]),
            on_primary: metrics.counter("p", &[]),
        }
    }

    #[tokio::test]
    async fn lag_is_the_age_of_the_newest_primary_position_the_replica_has() {
        let r = replica(Duration::from_secs(2));
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(r.lag(t0, Lsn(100)), None, "no sample yet");
        // The primary sat at 100 for two samples, then moved to 200 and 300.
        r.sample(t0, Lsn(100));
        r.sample(t0 + s, Lsn(100));
        r.sample(t0 + 2 * s, Lsn(200));
        r.sample(t0 + 3 * s, Lsn(300));
        let now = t0 + 3 * s;
        assert_eq!(r.lag(now, Lsn(300)), Some(Duration::ZERO));
        assert_eq!(r.lag(now + s, Lsn(300)), Some(s), "samples age too");
        assert_eq!(r.lag(now, Lsn(250)), Some(s));
        assert_eq!(r.lag(now, Lsn(100)), Some(2 * s));
        assert_eq!(r.lag(now, Lsn(50)), None, "behind every sample");

        r.measured(now, Ok(Some(Lsn(250))));
        assert!(r.usable.load(Ordering::Relaxed), "answers");
        assert_eq!(r.lag_ms.load(Ordering::Relaxed), 1000);
        r.measured(now + 2 * s, Ok(Some(Lsn(250))));
        assert!(
            r.usable.load(Ordering::Relaxed),
            "answers, lagging: each read checks its server"
        );
        assert_eq!(r.lag_ms.load(Ordering::Relaxed), 3000);
        r.measured(now, Err(sqlx::Error::PoolTimedOut));
        assert!(!r.usable.load(Ordering::Relaxed), "does not answer");
        assert_eq!(r.lag_ms.load(Ordering::Relaxed), u64::MAX);
        r.measured(now, Ok(None));
        assert!(
            r.usable.load(Ordering::Relaxed),
            "not a standby: has everything"
        );
        assert_eq!(r.lag_ms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_position_past_a_page_header_is_the_end_of_the_page_before() {
        assert!(Lsn(100).covers(Lsn(100)) && Lsn(101).covers(Lsn(100)));
        assert!(!Lsn(99).covers(Lsn(100)));
        assert!(Lsn(0x3036000).covers(Lsn(0x3036018)), "short header");
        assert!(Lsn(0x4000000).covers(Lsn(0x4000028)), "segment start");
        assert!(
            !Lsn(0x3035F80).covers(Lsn(0x3036018)),
            "a record short of the page's end"
        );
        assert!(!Lsn(0x3036000).covers(Lsn(0x3036020)));
    }

    #[test]
    fn only_connection_trouble_sends_a_read_to_the_primary() {
        assert!(server_unusable(&sqlx::Error::PoolTimedOut));
        assert!(server_unusable(&sqlx::Error::Io(std::io::Error::other(
            "reset"
        ))));
        assert!(!server_unusable(&sqlx::Error::RowNotFound));
    }
}
