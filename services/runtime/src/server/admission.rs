//! Load shedding and the request message limit, for every gRPC server.
//!
//! - **Admission.** At most `--max-in-flight` calls are served at once;
//!   the next one is answered at once with `RESOURCE_EXHAUSTED` and a
//!   `grpc-retry-pushback-ms` hint that grows with the overload
//!   ([`crate::pushback`]), before any token check or
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

use crate::{metrics::Metrics, pushback::Pushback, telemetry::Frames};

/// Admits calls up to a limit and bounds request messages.
#[derive(Clone)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
    open: Arc<Semaphore>,
    max_message: u32,
    shed: metrics::Counter,
    pushback: Arc<Pushback>,
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
            pushback: Arc::default(),
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
            pushback: self.pushback.clone(),
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
    pushback: Arc<Pushback>,
}

/// How long a refusal waits for the rest of its request (see
/// [`Admitted`]'s `poll`).
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

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
                (Ok(open), Ok(slot)) => {
                    self.pushback.served();
                    (Some(slot), Some(open))
                }
                _ => {
                    self.shed.increment(1);
                    let busy = crate::pushback::refuse(
                        "the server is busy; try again shortly",
                        self.pushback.refused(),
                    );
                    return Admitted::Refused {
                        response: Some(busy.into_http()),
                        body: Some(request.into_body()),
                        read: 0,
                        limit: self.max_message as usize + 5,
                        wait: None,
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
            // The request's body, read to its end before the answer goes
            // out (see `Admitted::poll`).
            body: Option<Body>,
            read: usize,
            limit: usize,
            wait: Option<Pin<Box<tokio::time::Sleep>>>,
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
            AdmittedProj::Refused {
                response,
                body,
                read,
                limit,
                wait,
            } => {
                // Answering before the client has sent all of its request
                // makes h2 reset the stream; the request's last frames then
                // arrive on a stream h2 may have forgotten (it remembers 50
                // for a second), and each counts against the connection's
                // MAX_LOCAL_ERROR_RESET_STREAMS: a refusal storm closed busy
                // clients' connections. So the refusal waits for the end of
                // the request (a unary call's is there already), as long as
                // it is at most one message and comes within DRAIN_WAIT.
                if let Some(b) = body.as_mut() {
                    loop {
                        match http_body::Body::poll_frame(Pin::new(&mut *b), cx) {
                            Poll::Ready(Some(Ok(frame))) => {
                                *read += frame.data_ref().map_or(0, bytes::Buf::remaining);
                                if *read > *limit {
                                    break;
                                }
                            }
                            Poll::Ready(_) => break,
                            Poll::Pending => {
                                let wait = wait.get_or_insert_with(|| {
                                    Box::pin(tokio::time::sleep(DRAIN_WAIT))
                                });
                                if wait.as_mut().poll(cx).is_pending() {
                                    return Poll::Pending;
                                }
                                break;
                            }
                        }
                    }
                    *body = None;
                }
                match response.take() {
                    Some(response) => Poll::Ready(Ok(response)),
                    None => unreachable!("Admitted polled after completion"),
                }
            }
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
