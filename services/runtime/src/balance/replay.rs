//! Sending a request again when the first address never took it: the body
//! stays with the caller until a connection first asks for it, so a call
//! that failed before that (the address was dead) can go to the next one.
//! Anything a connection started to send is never sent twice.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use http_body::Frame;
use tonic::{Status, body::Body};

/// A request body that stays with the caller until the connection first
/// asks for it, so a request the connection never started can be sent again.
pub(super) struct Replay {
    slot: Arc<Mutex<Option<Body>>>,
}

impl Replay {
    pub(super) fn new(body: Body) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Some(body))),
        }
    }

    /// A body for one attempt: empty until polled, then the original.
    pub(super) fn handle(&self) -> Body {
        Body::new(ReplayHandle {
            slot: self.slot.clone(),
            body: None,
        })
    }

    /// Whether some attempt took the original body.
    pub(super) fn taken(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

struct ReplayHandle {
    slot: Arc<Mutex<Option<Body>>>,
    body: Option<Body>,
}

impl http_body::Body for ReplayHandle {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.body.is_none() {
            let taken = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            match taken {
                Some(body) => self.body = Some(body),
                None => {
                    return Poll::Ready(Some(Err(Status::internal(
                        "request body already sent on another attempt",
                    ))));
                }
            }
        }
        match self.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.body {
            Some(b) => b.size_hint(),
            None => self
                .slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|b| b.size_hint())
                .unwrap_or_default(),
        }
    }
}
