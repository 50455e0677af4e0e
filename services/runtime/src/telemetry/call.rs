//! What servers and clients observe about one call, shared by
//! [`super::rpc`] and [`super::client`]: the bodies that count streamed
//! messages and notice the end of the call, and the record written when it
//! ends (metrics, span status, and on servers the log line).

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll, ready},
    time::Instant,
};

use bytes::Bytes;
use http_body::{Body, Frame};
use metrics::{Counter, Histogram};
use pin_project_lite::pin_project;
use tonic::Code;

use super::{CallKind, MESSAGE_TARGET, Methods};
use crate::metrics::Metrics;

/// Message events recorded per call and direction (the rest are counted).
const MAX_MESSAGE_EVENTS: u64 = 64;

/// Which end of the call we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// The metric handles of one method on one side, registered once.
pub(crate) struct MethodStats {
    pub(crate) service: String,
    pub(crate) method: String,
    pub(crate) kind: CallKind,
    /// Health and reflection: no spans, quieter logs.
    pub(crate) plumbing: bool,
    started: Counter,
    msg_sent: Counter,
    msg_received: Counter,
    seconds: Histogram,
    handled: [OnceLock<Counter>; 17],
    metrics: Metrics,
    side: Side,
}

impl MethodStats {
    fn handled(&self, code: Code) -> &Counter {
        self.handled[code as usize].get_or_init(|| {
            let name = match self.side {
                Side::Server => "grpc_server_handled_total",
                Side::Client => "grpc_client_handled_total",
            };
            self.metrics.counter(
                name,
                &[
                    ("grpc_type", self.kind.as_str()),
                    ("grpc_service", &self.service),
                    ("grpc_method", &self.method),
                    ("grpc_code", go_code_name(code)),
                ],
            )
        })
    }
}

/// Stats per method path, made on first use. Unknown paths share one entry,
/// so a client sending made-up paths cannot grow the registry.
pub(crate) struct StatsTable {
    side: Side,
    metrics: Metrics,
    methods: Methods,
    table: Mutex<HashMap<String, Arc<MethodStats>>>,
}

impl StatsTable {
    pub(crate) fn new(side: Side, metrics: Metrics, methods: Methods) -> Self {
        Self {
            side,
            metrics,
            methods,
            table: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Arc<MethodStats> {
        let known = self.methods.get(path);
        let key = if known.is_some() { path } else { "" };
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stats) = table.get(key) {
            return stats.clone();
        }
        let (service, method, kind) = known
            .cloned()
            .unwrap_or_else(|| ("unknown".into(), "unknown".into(), CallKind::Unary));
        let prefix = match self.side {
            Side::Server => "grpc_server_",
            Side::Client => "grpc_client_",
        };
        let labels = [
            ("grpc_type", kind.as_str()),
            ("grpc_service", service.as_str()),
            ("grpc_method", method.as_str()),
        ];
        let name = |suffix: &str| -> &'static str {
            match (prefix, suffix) {
                ("grpc_server_", "started") => "grpc_server_started_total",
                ("grpc_server_", "sent") => "grpc_server_msg_sent_total",
                ("grpc_server_", "received") => "grpc_server_msg_received_total",
                ("grpc_server_", _) => "grpc_server_handling_seconds",
                (_, "started") => "grpc_client_started_total",
                (_, "sent") => "grpc_client_msg_sent_total",
                (_, "received") => "grpc_client_msg_received_total",
                _ => "grpc_client_handling_seconds",
            }
        };
        let stats = Arc::new(MethodStats {
            plumbing: service.starts_with("grpc.health.")
                || service.starts_with("grpc.reflection."),
            started: self.metrics.counter(name("started"), &labels),
            msg_sent: self.metrics.counter(name("sent"), &labels),
            msg_received: self.metrics.counter(name("received"), &labels),
            seconds: self.metrics.histogram(name("seconds"), &labels),
            handled: Default::default(),
            metrics: self.metrics.clone(),
            side: self.side,
            service,
            method,
            kind,
        });
        table.insert(key.to_owned(), stats.clone());
        stats
    }
}

/// One call in flight. Dropping it records the call: `handled` and latency
/// metrics, the span's status, and (servers) one log line. A call that
/// never learned its status was cut short: CANCELLED.
pub(crate) struct Call {
    pub(crate) stats: Arc<MethodStats>,
    pub(crate) span: tracing::Span,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) path: String,
    pub(crate) start: Instant,
    pub(crate) code: Option<Code>,
}

impl Call {
    pub(crate) fn start(
        stats: Arc<MethodStats>,
        span: tracing::Span,
        path: String,
        peer: Option<SocketAddr>,
    ) -> Self {
        stats.started.increment(1);
        Call {
            stats,
            span,
            peer,
            path,
            start: Instant::now(),
            code: None,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        let elapsed = self.start.elapsed();
        self.stats.handled(code).increment(1);
        self.stats.seconds.record(elapsed.as_secs_f64());
        self.span.record("rpc.grpc.status_code", code as i64);
        let failed = match self.stats.side {
            // Server spans fail only for the server's own faults.
            Side::Server => matches!(
                code,
                Code::Unknown
                    | Code::DeadlineExceeded
                    | Code::Unimplemented
                    | Code::Internal
                    | Code::Unavailable
                    | Code::DataLoss
            ),
            Side::Client => code != Code::Ok,
        };
        if failed {
            self.span.record("otel.status_code", "ERROR");
        }
        if self.stats.side == Side::Client {
            return;
        }
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
        let method = self.path.as_str();
        let grpc_code = code_name(code);
        let _entered = self.span.enter();
        if matches!(
            code,
            Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented
        ) {
            tracing::warn!(
                grpc.method = method,
                grpc.code = grpc_code,
                duration_ms,
                peer,
                "rpc"
            );
        } else if self.stats.plumbing || code == Code::ResourceExhausted {
            // Probes, and clients told to back off (counted in metrics): a
            // line each would flood the log exactly when the server is busy.
            tracing::debug!(
                grpc.method = method,
                grpc.code = grpc_code,
                duration_ms,
                peer,
                "rpc"
            );
        } else {
            tracing::info!(
                grpc.method = method,
                grpc.code = grpc_code,
                duration_ms,
                peer,
                "rpc"
            );
        }
    }
}

/// Splits a byte stream into gRPC length-prefixed messages (1-byte flag,
/// 4-byte big-endian length, payload) and counts whole messages.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    header: [u8; 5],
    header_len: usize,
    remaining: u64,
    longest: u32,
}

impl Frames {
    /// The longest message announced so far, in bytes (known from its
    /// header, before its payload arrives).
    pub(crate) fn longest(&self) -> u32 {
        self.longest
    }

    /// Feeds `data`; returns how many messages it completed.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut done = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = (self.remaining as usize).min(data.len());
                data = &data[take..];
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    done += 1;
                }
            } else {
                let take = (5 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                data = &data[take..];
                if self.header_len == 5 {
                    self.header_len = 0;
                    let len = u32::from_be_bytes([
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ]);
                    self.longest = self.longest.max(len);
                    if len == 0 {
                        done += 1;
                    } else {
                        self.remaining = u64::from(len);
                    }
                }
            }
        }
        done
    }
}

/// Which way messages go through a body, for counters and span events.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Sent,
    Received,
}

/// Counts the messages flowing through a body (and records the first few
/// as span events).
pub(crate) struct MessageCounter {
    frames: Frames,
    counter: Counter,
    span: tracing::Span,
    direction: Direction,
    seen: u64,
}

impl MessageCounter {
    pub(crate) fn new(stats: &MethodStats, span: tracing::Span, direction: Direction) -> Self {
        let counter = match direction {
            Direction::Sent => stats.msg_sent.clone(),
            Direction::Received => stats.msg_received.clone(),
        };
        Self {
            frames: Frames::default(),
            counter,
            span,
            direction,
            seen: 0,
        }
    }

    fn observe(&mut self, data: &[u8]) {
        let n = self.frames.feed(data);
        if n == 0 {
            return;
        }
        self.counter.increment(n);
        for _ in 0..n {
            self.seen += 1;
            if self.seen <= MAX_MESSAGE_EVENTS && !self.span.is_disabled() {
                let kind = match self.direction {
                    Direction::Sent => "SENT",
                    Direction::Received => "RECEIVED",
                };
                tracing::event!(target: MESSAGE_TARGET, parent: &self.span, tracing::Level::DEBUG, message.r#type = kind, message.id = self.seen, "message");
            }
        }
    }
}

pin_project! {
    /// A body whose messages are counted. A response body also completes
    /// its call when the trailers pass (or when it is dropped early); a
    /// request body (what the other end sends us) has no call to complete.
    pub struct ObservedBody<B> {
        // `None` only while being dropped.
        #[pin]
        inner: Option<B>,
        counter: MessageCounter,
        call: Option<Call>,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.call.is_some() {
                // Dropped before its end: the client went away mid-stream,
                // so whatever statement the stream is running is cancelled.
                crate::pg::while_cancelling(|| this.inner.set(None));
            }
        }
    }
}

impl<B> ObservedBody<B> {
    /// A response body that ends `call`.
    pub(crate) fn new(inner: B, counter: MessageCounter, call: Call) -> Self {
        Self {
            inner: Some(inner),
            counter,
            call: Some(call),
        }
    }

    /// A request body, only counted.
    pub(crate) fn counted(inner: B, counter: MessageCounter) -> Self {
        Self {
            inner: Some(inner),
            counter,
            call: None,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for ObservedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.counter.observe(data);
                }
                if let Some(trailers) = f.trailers_ref()
                    && let Some(mut call) = this.call.take()
                {
                    call.code = Some(grpc_status(trailers).unwrap_or(Code::Unknown));
                }
            }
            Some(Err(_)) => {
                if let Some(mut call) = this.call.take() {
                    call.code.get_or_insert(Code::Internal);
                }
            }
            None => {
                this.call.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

/// The `grpc-status` header or trailer, if present and valid.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

/// The canonical upper-case name of a code, as in the gRPC spec: `NOT_FOUND`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The name of a code as Go's `codes.Code.String()` spells it, which is what
/// go-grpc-prometheus puts in `grpc_code` (dashboards filter on it).
pub fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len as usize));
        m
    }

    #[test]
    fn messages_are_counted_however_the_bytes_are_split() {
        let mut stream = message(3);
        stream.extend(message(0));
        stream.extend(message(300));
        for chunk in [1, 2, 5, 7, 64, stream.len()] {
            let mut frames = Frames::default();
            let n: u64 = stream.chunks(chunk).map(|c| frames.feed(c)).sum();
            assert_eq!(n, 3, "chunks of {chunk}");
        }
    }
}
