//! The client side of [`super::rpc`]: wraps a channel (usually a
//! [`Balanced`](crate::balance::Balanced) one) so every outgoing call
//!
//! - is a `grpc.client` span, child of whatever span makes the call (the
//!   incoming call's, so one trace runs through every service), with
//!   `rpc.*` and `server.address` attributes;
//! - carries that span's W3C `traceparent` to the server;
//! - counts the go-grpc-prometheus client metrics.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{Code, body::Body};
use tower::Service;
use tracing::Instrument as _;

use super::{
    Methods,
    call::{Call, Direction, MessageCounter, ObservedBody, Side, StatsTable},
    grpc_status, inject_context, record_trace_ids,
};
use crate::metrics::Metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A channel whose calls are traced and counted.
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    table: Arc<StatsTable>,
    upstream: Arc<str>,
}

impl<S> std::fmt::Debug for Observed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl<S> Observed<S> {
    /// Observes calls to `upstream` (a name for spans, e.g. "productinfo")
    /// through `inner`, recording into `metrics`.
    pub fn new(inner: S, upstream: &str, metrics: &Metrics, methods: Methods) -> Self {
        Self {
            inner,
            table: Arc::new(StatsTable::new(Side::Client, metrics.clone(), methods)),
            upstream: upstream.into(),
        }
    }
}

impl<S> Service<http::Request<Body>> for Observed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let stats = self.table.get(&path);
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %stats.service,
            rpc.method = %stats.method,
            rpc.grpc.status_code = tracing::field::Empty,
            server.address = %self.upstream,
        );
        record_trace_ids(&span);
        inject_context(&span, request.headers_mut());
        let sent = MessageCounter::new(&stats, span.clone(), Direction::Sent);
        let received = MessageCounter::new(&stats, span.clone(), Direction::Received);
        let mut call = Call::start(stats, span.clone(), path, None);
        let request = request.map(|body| Body::new(ObservedBody::counted(body, sent)));
        // Take the ready clone; leave a fresh one for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                match inner.call(request).await {
                    Ok(response) => {
                        if let Some(code) = grpc_status(response.headers()) {
                            call.code = Some(code);
                        }
                        Ok(response.map(|body| Body::new(ObservedBody::new(body, received, call))))
                    }
                    Err(e) => {
                        let e: BoxError = e.into();
                        // The balancer's own status (with its metadata, such
                        // as "never sent") goes on as it is.
                        let status = tonic::Status::try_from_error(e).unwrap_or_else(|_| {
                            tonic::Status::new(Code::Unavailable, "upstream call failed")
                        });
                        call.code = Some(status.code());
                        drop(call);
                        Err(Box::new(status) as BoxError)
                    }
                }
            }
            .instrument(span),
        )
    }
}
