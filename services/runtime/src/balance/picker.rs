//! What calls pick from (grpc-go's picker): an immutable snapshot of the
//! ready endpoints, rebuilt by the owner whenever the ready set changes and
//! published on a `watch` channel. Picking is one atomic increment over the
//! snapshot: strict rotation across every caller. Each snapshot starts the
//! rotation at a random place, so clients that start together do not all
//! send their first call to the same (lowest) address.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::endpoint::{Endpoint, EndpointState};

/// Whether a call can be placed now, soon, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Readiness {
    /// Some endpoint is ready.
    Ready,
    /// None is ready yet, but the first resolution has not landed or some
    /// endpoint is still connecting: worth waiting a little.
    Connecting,
    /// Nothing can become ready soon: fail at once.
    Unavailable,
}

/// One snapshot of the endpoints.
#[derive(Debug)]
pub(super) struct Picker {
    /// Every known endpoint with its state, sorted by address (for stats).
    pub(super) all: Vec<(Arc<Endpoint>, EndpointState)>,
    /// The ready ones, sorted by address: the rotation.
    ready: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
    pub(super) readiness: Readiness,
}

impl Picker {
    /// A snapshot of `all`; `resolved` says whether the first resolution
    /// has landed.
    pub(super) fn new(mut all: Vec<(Arc<Endpoint>, EndpointState)>, resolved: bool) -> Picker {
        all.sort_by_key(|(e, _)| e.addr);
        let ready: Vec<Arc<Endpoint>> = all
            .iter()
            .filter(|(_, state)| *state == EndpointState::Ready)
            .map(|(e, _)| e.clone())
            .collect();
        let connecting = all
            .iter()
            .any(|(_, state)| *state == EndpointState::Connecting);
        let readiness = if !ready.is_empty() {
            Readiness::Ready
        } else if connecting || !resolved {
            Readiness::Connecting
        } else {
            Readiness::Unavailable
        };
        Picker {
            next: AtomicUsize::new(fastrand::usize(..ready.len().max(1))),
            all,
            ready,
            readiness,
        }
    }

    /// The next ready endpoint in the rotation, skipping those already
    /// `tried` by this call; `None` when none is left.
    pub(super) fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Endpoint>> {
        let endpoint = if tried.is_empty() {
            if self.ready.is_empty() {
                return None;
            }
            &self.ready[self.next.fetch_add(1, Ordering::Relaxed) % self.ready.len()]
        } else {
            let left: Vec<&Arc<Endpoint>> = self
                .ready
                .iter()
                .filter(|e| !tried.contains(&e.addr))
                .collect();
            if left.is_empty() {
                return None;
            }
            left[self.next.fetch_add(1, Ordering::Relaxed) % left.len()]
        };
        endpoint.picked();
        Some(endpoint.clone())
    }

    /// Whether the endpoint `id` is in the rotation.
    pub(super) fn offers(&self, id: u64) -> bool {
        self.ready.iter().any(|e| e.id == id)
    }

    /// Whether some endpoint is ready.
    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }
}
