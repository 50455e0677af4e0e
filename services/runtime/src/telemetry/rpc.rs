//! The tower layer on every gRPC server of the shop, observing each call:
//!
//! - a span `grpc.server` with the OpenTelemetry RPC attributes
//!   (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`,
//!   `network.peer.address`), child of the caller's span when the request
//!   carries a W3C `traceparent`; streamed messages are span events;
//! - the go-grpc-prometheus server metrics;
//! - one log line when the call ends: method, gRPC status, duration, peer.
//!
//! A layer rather than an interceptor because it must see the end of the
//! call: the status of a unary call arrives in the trailers, and a streaming
//! call lasts until its response body ends or the client goes away.
//! Health and reflection get metrics and debug-level lines, no spans.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tonic::{Code, body::Body, transport::server::TcpConnectInfo};
use tower::{Layer, Service};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{
    Methods,
    call::{Call, Direction, MessageCounter, ObservedBody, Side, StatsTable},
    extract_context, grpc_status, record_trace_ids,
};
use crate::metrics::Metrics;

pub use super::call::{code_name, go_code_name};

/// Observes every call of the server it wraps.
#[derive(Clone)]
pub struct RpcLayer {
    table: Arc<StatsTable>,
}

impl std::fmt::Debug for RpcLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcLayer").finish_non_exhaustive()
    }
}

impl RpcLayer {
    /// Records into `metrics`; `methods` tells each method's kind.
    pub fn new(metrics: Metrics, methods: Methods) -> Self {
        Self {
            table: Arc::new(StatsTable::new(Side::Server, metrics, methods)),
        }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            table: self.table.clone(),
        }
    }
}

/// The service made by [`RpcLayer`].
#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    table: Arc<StatsTable>,
}

impl<S, ResBody> Service<http::Request<Body>> for RpcService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>>,
    ResBody: http_body::Body<Data = bytes::Bytes>,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let stats = self.table.get(&path);
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(|info| info.remote_addr());
        let span = if stats.plumbing {
            tracing::Span::none()
        } else {
            let span = tracing::info_span!(
                "grpc.server",
                otel.name = %path.trim_start_matches('/'),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %stats.service,
                rpc.method = %stats.method,
                rpc.grpc.status_code = tracing::field::Empty,
                shop.fault = tracing::field::Empty,
                network.peer.address = tracing::field::display(peer.map(|p| p.ip().to_string()).unwrap_or_default()),
            );
            let _ = span.set_parent(extract_context(request.headers()));
            record_trace_ids(&span);
            span
        };
        let received = MessageCounter::new(&stats, span.clone(), Direction::Received);
        let sent = MessageCounter::new(&stats, span.clone(), Direction::Sent);
        let call = Call::start(stats, span.clone(), path, peer);
        let request = request.map(|body| Body::new(ObservedBody::counted(body, received)));
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture {
            inner: Some(inner),
            call: Some((call, sent)),
            span,
        }
    }
}

pin_project! {
    /// Response future of [`RpcService`].
    pub struct ResponseFuture<F> {
        // `None` only while being dropped.
        #[pin]
        inner: Option<F>,
        call: Option<(Call, MessageCounter)>,
        span: tracing::Span,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.call.is_some() {
                // Dropped before the handler answered: the client went away
                // or the deadline passed, so the handler's statement (if
                // one is running) is cancelled with it.
                crate::pg::while_cancelling(|| this.inner.set(None));
            }
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<ObservedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            unreachable!("ResponseFuture polled while being dropped");
        };
        let result = {
            let _entered = this.span.enter();
            ready!(inner.poll(cx))
        };
        let Some((mut call, sent)) = this.call.take() else {
            unreachable!("ResponseFuture polled after completion");
        };
        match result {
            Ok(response) => {
                if let Some(code) = grpc_status(response.headers()) {
                    // Trailers-only response: the status came with the headers.
                    call.code = Some(code);
                }
                Poll::Ready(Ok(
                    response.map(|inner| ObservedBody::new(inner, sent, call))
                ))
            }
            Err(e) => {
                call.code = Some(Code::Unavailable);
                Poll::Ready(Err(e))
            }
        }
    }
}
