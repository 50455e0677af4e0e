//! Deadlines across services: every outgoing call gets one, and a call made
//! while serving another never outlives the caller's own deadline.
//!
//! gRPC carries a deadline as the `grpc-timeout` header ("how long from
//! now"). tonic's server already enforces the incoming one (the handler is
//! dropped when it passes, which cancels every outgoing call it was
//! awaiting). [`Deadline`] carries it on to the calls the handler makes:
//!
//! ```ignore
//! let deadline = Deadline::of(&request);   // at the top of the handler
//! catalog.products(deadline, ids).await?;  // an Upstream call: min(left - margin, default)
//! ```
//!
//! The outgoing call ends [`MARGIN`] before the caller's deadline, so there
//! is time left to answer the caller when an upstream is too slow; a call
//! with less than that left is not sent at all.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;

/// The `grpc-timeout` header as a duration, if present and well-formed
/// (`<digits><H|M|S|m|u|n>`, at most 8 digits).
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Kept back from the caller's deadline to answer it.
pub const MARGIN: Duration = Duration::from_millis(10);

/// When the call being served must be finished, if the caller said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline from the caller.
    pub const NONE: Deadline = Deadline(None);

    /// The deadline of an incoming request, measured from now.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        Deadline(grpc_timeout(request.metadata().as_ref()).map(|t| Instant::now() + t))
    }

    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline(Some(Instant::now() + timeout))
    }

    /// Time left, `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The sooner of this deadline and `other`.
    pub fn min(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (a, b) => Deadline(a.or(b)),
        }
    }

    /// The timeout for an outgoing call: `default`, or less if the caller's
    /// deadline (minus [`MARGIN`]) comes sooner. `DEADLINE_EXCEEDED` when
    /// not even the margin is left.
    pub fn budget(&self, default: Duration) -> Result<Duration, Status> {
        match self.remaining() {
            Some(left) if left <= MARGIN => Err(Status::deadline_exceeded(
                "deadline exceeded before calling upstream",
            )),
            Some(left) => Ok((left - MARGIN).min(default)),
            None => Ok(default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-timeout", value.parse().unwrap());
        h
    }

    #[test]
    fn grpc_timeout_headers_parse_in_every_unit() {
        assert_eq!(grpc_timeout(&headers("2S")), Some(Duration::from_secs(2)));
        assert_eq!(
            grpc_timeout(&headers("1500m")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(grpc_timeout(&headers("1M")), Some(Duration::from_secs(60)));
        assert_eq!(
            grpc_timeout(&headers("10u")),
            Some(Duration::from_micros(10))
        );
        assert_eq!(grpc_timeout(&headers("5x")), None);
        assert_eq!(
            grpc_timeout(&headers("123456789S")),
            None,
            "at most 8 digits"
        );
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn outgoing_calls_get_the_smaller_of_the_default_and_what_is_left() {
        let mut request = tonic::Request::new(());
        request.set_timeout(Duration::from_millis(300));
        let deadline = Deadline::of(&request);

        let budget = deadline.budget(Duration::from_secs(2)).unwrap();
        assert!(budget <= Duration::from_millis(300) && budget > Duration::from_millis(250));
        assert_eq!(
            Deadline::NONE.budget(Duration::from_secs(2)).unwrap(),
            Duration::from_secs(2)
        );
        let passed = Deadline::after(Duration::ZERO);
        assert_eq!(
            passed.budget(Duration::from_secs(1)).unwrap_err().code(),
            tonic::Code::DeadlineExceeded
        );
    }
}
