//! Load shedding and the request message limit, for every gRPC server.
//!
//! - **Admission.** At most `--max-in-flight` calls are served at once;
//!   the next one is answered at once with `RESOURCE_EXHAUSTED` and a
//!   `grpc-retry-pushback-ms` hint (gRFC A6), before any token check or
//!   database work, instead of waiting in a queue until its deadline. A
//!   call holds its slot until its handler has answered (a server stream's
//!   own caps govern the stream after that). Health and reflection are
//!   never refused: a shedding server is busy, not sick, and stays SERVING.
//! - **Open calls.** At most `--max-open-calls` calls are open at once,
//!   streams until their last message: a client that opens streams and
//!   never reads them holds a bounded number of them.
//! - **Message size.** A request message longer than `--max-message-size`
//!   fails its call with `RESOURCE_EXHAUSTED` as soon as its 5-byte header
//!   is read, before any of it is buffered.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::Frame;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

use crate::{metrics::Metrics, telemetry::Frames};

/// How long a refused client is asked to wait before trying again.
const PUSHBACK_MS: &str = "100";

/// Admits calls up to a limit and bounds request messages.
#[derive(Clone)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
    open: Arc<Semaphore>,
    max_message: u32,
    shed: metrics::Counter,
}

impl AdmissionLayer {
    /// `max_in_flight` calls served at once, `max_open` calls (streams
    /// included) open, request messages up to `max_message` bytes; refused
    /// calls counted in `shop_grpc_server_shed_total`.
    pub fn new(max_in_flight: usize, max_open: usize, max_message: u32, metrics: &Metrics) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
            open: Arc::new(Semaphore::new(max_open.max(1))),
            max_message,
            shed: metrics.counter("shop_grpc_server_shed_total", &[]),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            slots: self.slots.clone(),
            open: self.open.clone(),
            max_message: self.max_message,
            shed: self.shed.clone(),
        }
    }
}

/// The service made by [`AdmissionLayer`].
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    slots: Arc<Semaphore>,
    open: Arc<Semaphore>,
    max_message: u32,
    shed: metrics::Counter,
}

/// Calls that are never refused: probes and tools must always get through.
fn always_admitted(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

impl<S, ResBody> Service<http::Request<Body>> for Admission<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (slot, open) = if always_admitted(request.uri().path()) {
            (None, None)
        } else {
            let slots = (
                self.open.clone().try_acquire_owned(),
                self.slots.clone().try_acquire_owned(),
            );
            match slots {
                (Ok(open), Ok(slot)) => (Some(slot), Some(open)),
                _ => {
                    self.shed.increment(1);
                    return Admitted::Refused {
                        response: Some(busy()),
                    };
                }
            }
        };
        let max = self.max_message;
        let request = request.map(|body| Body::new(Bounded::new(body, max)));
        Admitted::Serving {
            inner: self.inner.call(request),
            _slot: slot,
            open,
        }
    }
}

/// `RESOURCE_EXHAUSTED`, try again in [`PUSHBACK_MS`].
fn busy() -> http::Response<Body> {
    let mut response =
        Status::resource_exhausted("the server is busy; try again shortly").into_http::<Body>();
    response.headers_mut().insert(
        "grpc-retry-pushback-ms",
        http::HeaderValue::from_static(PUSHBACK_MS),
    );
    response
}

pin_project! {
    /// The response future of [`Admission`].
    #[project = AdmittedProj]
    pub enum Admitted<F> {
        Serving {
            #[pin]
            inner: F,
            _slot: Option<OwnedSemaphorePermit>,
            open: Option<OwnedSemaphorePermit>,
        },
        Refused {
            response: Option<http::Response<Body>>,
        },
    }
}

impl<F, E, ResBody> Future for Admitted<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedProj::Serving { inner, open, .. } => {
                let result = std::task::ready!(inner.poll(cx));
                let open = open.take();
                Poll::Ready(
                    result.map(|response| response.map(|body| Body::new(Held::new(body, open)))),
                )
            }
            AdmittedProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => unreachable!("Admitted polled after completion"),
            },
        }
    }
}

pin_project! {
    /// A response body holding its call's open-call permit until it ends.
    struct Held<B> {
        #[pin]
        inner: B,
        open: Option<OwnedSemaphorePermit>,
    }
}

impl<B> Held<B> {
    fn new(inner: B, open: Option<OwnedSemaphorePermit>) -> Self {
        Self { inner, open }
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for Held<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.open.take();
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

/// A request body whose messages may not be longer than `max`.
struct Bounded {
    inner: Body,
    frames: Frames,
    max: u32,
}

impl Bounded {
    fn new(inner: Body, max: u32) -> Self {
        Self {
            inner,
            frames: Frames::default(),
            max,
        }
    }
}

impl http_body::Body for Bounded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
            && let Some(data) = data
        {
            this.frames.feed(data);
            if this.frames.longest() > this.max {
                return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                    "a request message of {} bytes is over this server's limit of {} bytes",
                    this.frames.longest(),
                    this.max
                )))));
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
