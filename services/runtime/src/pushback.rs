//! Retry pushback (gRFC A6): a refused call's `RESOURCE_EXHAUSTED` carries
//! `grpc-retry-pushback-ms`, how long the client should wait before trying
//! again. [`Upstream`](crate::upstream::Upstream) and `shopctl load` honour it.
//!
//! A fixed wait turns an overload into a storm of refusals: 2,000 refused
//! callers asked back in 100 ms make 20,000 calls a second that each cost
//! the server a stream, a header decode and an answer — more than the calls
//! it serves. [`Pushback`] stretches the wait with the overload instead, so
//! refusals stay a small fraction of the work served (see
//! [`Pushback::refused`]), and spreads the retries with jitter.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tonic::Status;

/// The metadata key of the hint.
pub const HEADER: &str = "grpc-retry-pushback-ms";

/// The shortest wait asked for, and the wait of refusals that do not adapt.
pub const SHORTEST: Duration = Duration::from_millis(100);

/// The longest wait asked for: past it, a client is better off failing over.
const LONGEST: Duration = Duration::from_secs(5);

/// How often the wait is worked out again.
const WINDOW: Duration = Duration::from_secs(1);

/// Refusals per second the wait aims at, as a share of the calls served.
const REFUSALS_PER_SERVED: f64 = 0.25;

/// `RESOURCE_EXHAUSTED` with `message`, asking the client to come back after
/// `wait`.
pub fn refuse(message: impl Into<String>, wait: Duration) -> Status {
    let mut status = Status::resource_exhausted(message);
    if let Ok(value) = wait.as_millis().to_string().parse() {
        status.metadata_mut().insert(HEADER, value);
    }
    status
}

/// The wait a refusal asked for, if it carried the hint.
pub fn of(status: &Status) -> Option<Duration> {
    let ms: u64 = status.metadata().get(HEADER)?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

/// One server's adaptive pushback.
pub struct Pushback {
    started: Instant,
    served: AtomicU64,
    refused: AtomicU64,
    window: Mutex<Window>,
}

/// The current wait and the counts when it was set.
struct Window {
    since: Duration,
    served: u64,
    refused: u64,
    wait: Duration,
}

impl Default for Pushback {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            served: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            window: Mutex::new(Window {
                since: Duration::ZERO,
                served: 0,
                refused: 0,
                wait: SHORTEST,
            }),
        }
    }
}

impl Pushback {
    /// Counts a call let in.
    pub fn served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal; the wait to ask of this client, plus up to half of
    /// it again at random, so refused clients do not all come back at once.
    ///
    /// Each refused client comes back after about the current wait, so the
    /// clients waiting to retry number about refusals per second × wait.
    /// Once a second the wait becomes what brings their retries down to
    /// [`REFUSALS_PER_SERVED`] of the calls served per second, between
    /// [`SHORTEST`] and [`LONGEST`]. When the overload goes, so do the
    /// refusals: the next one, a second or more later, asks for the
    /// shortest wait again.
    pub fn refused(&self) -> Duration {
        self.refused_at(self.started.elapsed())
            .mul_f64(1.0 + fastrand::f64() / 2.0)
    }

    fn refused_at(&self, now: Duration) -> Duration {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let span = now.saturating_sub(w.since);
        if span >= WINDOW * 2 {
            // A second or more without refusals: the overload is over.
            let served = self.served.load(Ordering::Relaxed);
            (w.since, w.served, w.refused, w.wait) = (now, served, refused, SHORTEST);
        } else if span >= WINDOW {
            let served = self.served.load(Ordering::Relaxed);
            let per_second = |n: u64| n as f64 / span.as_secs_f64();
            let waiting = per_second(refused - w.refused) * w.wait.as_secs_f64();
            let budget = (per_second(served - w.served) * REFUSALS_PER_SERVED).max(1.0);
            w.wait = Duration::from_secs_f64(waiting / budget).clamp(SHORTEST, LONGEST);
            (w.since, w.served, w.refused) = (now, served, refused);
        }
        w.wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `refusals` and `served` calls spread over one second from `at`.
    fn second(p: &Pushback, at: Duration, served: u64, refusals: u64) -> Duration {
        p.served.fetch_add(served, Ordering::Relaxed);
        let mut wait = SHORTEST;
        for n in 0..refusals {
            wait = p.refused_at(at + WINDOW.mul_f64(n as f64 / refusals as f64));
        }
        wait
    }

    #[test]
    fn the_wait_grows_with_the_overload_and_falls_when_it_goes() {
        let p = Pushback::default();
        assert_eq!(second(&p, Duration::ZERO, 10_000, 100), SHORTEST);
        // 20,000 refusals a second at 100 ms: 2,000 clients waiting; to
        // bring them down to a quarter of 10,000 served a second, each
        // must wait 0.8 s.
        second(&p, WINDOW, 10_000, 20_000);
        let wait = second(&p, WINDOW * 2, 10_000, 2_500);
        assert!(
            wait > Duration::from_millis(700) && wait < Duration::from_millis(900),
            "{wait:?}"
        );
        // The same clients at 0.8 s make 2,500 refusals a second: steady.
        let steady = second(&p, WINDOW * 3, 10_000, 2_500);
        assert!(
            steady > Duration::from_millis(700) && steady < Duration::from_millis(900),
            "{steady:?}"
        );
        // Quiet for a minute, then one refusal: the shortest wait again.
        assert_eq!(p.refused_at(WINDOW * 64), SHORTEST);
    }

    #[test]
    fn a_server_serving_nothing_asks_for_the_longest_wait_at_most() {
        let p = Pushback::default();
        second(&p, Duration::ZERO, 0, 1_000);
        assert_eq!(second(&p, WINDOW, 0, 1_000), LONGEST);
    }

    #[test]
    fn the_hint_goes_out_and_comes_back() {
        let status = refuse("busy", Duration::from_millis(250));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(of(&status), Some(Duration::from_millis(250)));
        assert_eq!(of(&Status::resource_exhausted("no hint")), None);
    }
}
