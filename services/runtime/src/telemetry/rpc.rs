//! A tower layer on the gRPC server that observes every call: one log line
//! when the call ends, with method, gRPC status code, duration and peer.
//!
//! A layer rather than an interceptor because it must see the end of the
//! call: the status of a unary call arrives in the trailers, and a streaming
//! call lasts until its response body ends or the client goes away. The
//! response body is wrapped so the line is written exactly once, when the
//! trailers pass by, or when the body is dropped early (client cancelled).
//! Payloads and metadata (tokens!) are never looked at.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tonic::{Code, transport::server::TcpConnectInfo};
use tower::{Layer, Service};

/// Observes every call of the server it wraps.
#[derive(Clone, Debug, Default)]
pub struct RpcLayer;

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner }
    }
}

/// The service made by [`RpcLayer`].
#[derive(Clone, Debug)]
pub struct RpcService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = Call::start(&request);
        let span = tracing::info_span!("rpc", rpc.method = %call.method);
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture {
            inner,
            call: Some(call),
            span,
        }
    }
}

pin_project! {
    /// Response future of [`RpcService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
        span: tracing::Span,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<ObservedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx))
        };
        let mut call = this.call.take();
        match result {
            Ok(response) => {
                if let (Some(call), Some(code)) = (call.as_mut(), grpc_status(response.headers())) {
                    // Trailers-only response: the status came with the headers.
                    call.code = Some(code);
                }
                Poll::Ready(Ok(response.map(|inner| ObservedBody { inner, call })))
            }
            Err(e) => {
                if let Some(call) = call.as_mut() {
                    call.code = Some(Code::Unavailable);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project! {
    /// A response body that reports its call when the trailers pass or when
    /// it is dropped.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
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
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One call in flight. Dropping it writes its log line; a call that never
/// learned its status was cut short (client cancelled or connection lost).
#[derive(Debug)]
pub struct Call {
    method: String,
    peer: Option<SocketAddr>,
    start: Instant,
    code: Option<Code>,
}

impl Call {
    fn start<B>(request: &http::Request<B>) -> Self {
        Self {
            method: request.uri().path().to_owned(),
            peer: request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(|info| info.remote_addr()),
            start: Instant::now(),
            code: None,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        let duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
        let method = self.method.as_str();
        let grpc_code = code_name(code);
        let plumbing =
            method.starts_with("/grpc.health.") || method.starts_with("/grpc.reflection.");
        if is_server_fault(code) {
            tracing::warn!(
                grpc.method = method,
                grpc.code = grpc_code,
                duration_ms,
                peer,
                "rpc"
            );
        } else if plumbing {
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

/// Codes that point at the server rather than the caller.
fn is_server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented
    )
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
