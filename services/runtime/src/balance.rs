//! Client-side round-robin: every call to a peer service goes to the next
//! ready address of that service, in strict rotation, with no proxy or mesh.
//!
//! Why not tonic's `Channel::balance_list`: it is power-of-two-choices
//! (random under equal load), keeps routing to addresses whose connect
//! fails, and hangs forever when there are none.
//!
//! The parts are grpc-go's, each in its own file:
//! - **Resolver** ([`Target`], `target.rs`): the addresses of a DNS name
//!   (a Kubernetes headless Service answers with one per ready pod), a
//!   static list, or a file. Resolved at start, every `refresh`, and again
//!   (at most once per `min_refresh`) when a connection fails. A failed
//!   resolution keeps the last good set; an empty one empties it.
//! - **Endpoints** (`endpoint.rs`): one tonic `Channel`, so one HTTP/2
//!   connection, per address, and a task that follows the address's
//!   `grpc.health.v1.Health/Watch` on that same connection: SERVING puts it
//!   in the rotation, anything else (NOT_SERVING, a broken stream, a refused
//!   connection) takes it out until it says SERVING again.
//! - **Owner** (`owner.rs`): one task owns the endpoint set. Resolutions,
//!   health reports and failed calls arrive as events; after each change it
//!   publishes a new picker. Nothing else mutates anything, so there is no
//!   lock to reason about. A removed address leaves the rotation at once;
//!   its connection closes when the calls still using it have finished.
//! - **Picker** (`picker.rs`): an immutable snapshot of the ready endpoints
//!   and one atomic counter: strict round-robin across all callers,
//!   starting at a random place.
//! - **Failing fast.** With no ready address a call fails `UNAVAILABLE` at
//!   once, unless the first resolution has not landed or an address is still
//!   connecting; then it waits for a new picker, at most `wait_for_ready`
//!   and never past the call's deadline.
//! - **Retrying only what is safe** (`replay.rs`): if a call fails before
//!   the connection took any of its body (the address was dead), it goes to
//!   the next address. Anything else is returned as it is.

mod endpoint;
mod owner;
mod picker;
mod replay;
mod target;

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
    time::Instant,
};
use tonic::{Status, body::Body};
use tower::ServiceExt as _;

pub use endpoint::EndpointState;
pub use target::Target;

use picker::{Picker, Readiness};
use replay::Replay;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Tuning of a [`Balanced`] channel.
#[derive(Debug, Clone)]
pub struct BalanceConfig {
    /// A short name for logs and errors, for example "productinfo".
    pub name: String,
    /// The service whose health decides readiness, for example
    /// "ecommerce.ProductInfo" ("" for the whole server).
    pub health_service: String,
    /// How often the target is resolved again.
    pub refresh: Duration,
    /// Least time between two resolutions triggered by failures.
    pub min_refresh: Duration,
    /// How long connecting to one address may take.
    pub connect_timeout: Duration,
    /// How long a call may wait for a first address to become ready.
    pub wait_for_ready: Duration,
    /// TLS for every connection (`None`: plaintext).
    pub tls: Option<crate::tls::connect::Connector>,
}

impl BalanceConfig {
    /// Defaults for calling `name`, ready when `health_service` is SERVING.
    pub fn new(name: &str, health_service: &str) -> Self {
        Self {
            name: name.to_owned(),
            health_service: health_service.to_owned(),
            refresh: Duration::from_secs(30),
            min_refresh: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            wait_for_ready: Duration::from_secs(3),
            tls: None,
        }
    }
}

/// What a [`Balanced`] channel knows about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStats {
    pub addr: SocketAddr,
    pub state: EndpointState,
    /// Calls handed to this address so far.
    pub picks: u64,
}

/// What reaches the owner.
#[derive(Debug)]
enum Event {
    /// The resolver's answer.
    Resolved(std::io::Result<Vec<SocketAddr>>),
    /// An endpoint's health task heard this.
    Health(u64, EndpointState),
    /// A call found this endpoint unreachable.
    CallFailed(u64),
    /// Something suggests the addresses changed: resolve again soon.
    ResolveNow,
    /// Tests: take this address's state as given and stop watching it.
    #[cfg(test)]
    Pretend(SocketAddr, EndpointState),
}

/// A task aborted when this is dropped.
#[derive(Debug)]
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A channel that spreads calls over every ready address of a target in
/// strict rotation. Clone it freely: clones share connections and rotation.
/// Use it wherever a tonic `Channel` goes: `ProductInfoClient::new(balanced)`.
#[derive(Clone)]
pub struct Balanced {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    wait_for_ready: Duration,
    picker: watch::Receiver<Arc<Picker>>,
    events: mpsc::UnboundedSender<Event>,
    _owner: Task,
}

impl fmt::Debug for Balanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balanced")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Balanced {
    /// Starts resolving and watching `target` in the background. Must be
    /// called inside a tokio runtime; the background work stops when the
    /// last clone is dropped.
    pub fn new(target: Target, config: BalanceConfig) -> Self {
        let (events, inbox) = mpsc::unbounded_channel();
        let (picker, picked) = watch::channel(Arc::new(Picker::new(Vec::new(), false)));
        let resolve_now = Arc::new(Notify::new());
        let resolver = Task(tokio::spawn(owner::resolve(
            target,
            config.clone(),
            events.clone(),
            resolve_now.clone(),
        )));
        let owner = owner::Owner {
            config: config.clone(),
            events: events.clone(),
            endpoints: HashMap::new(),
            resolved: false,
            next_id: 0,
            picker,
            resolve_now,
            _resolver: resolver,
        };
        Balanced {
            shared: Arc::new(Shared {
                name: config.name,
                wait_for_ready: config.wait_for_ready,
                picker: picked,
                events,
                _owner: Task(tokio::spawn(owner.run(inbox))),
            }),
        }
    }

    /// Every known address with its state and how many calls it got.
    pub fn stats(&self) -> Vec<EndpointStats> {
        stats(&self.shared.picker.borrow())
    }

    /// Waits until the endpoints satisfy `condition` (tests and start-up
    /// checks), at most `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&[EndpointStats]) -> bool,
    ) -> bool {
        let mut picker = self.shared.picker.clone();
        tokio::time::timeout(timeout, picker.wait_for(|p| condition(&stats(p))))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether some address is ready to take calls right now.
    pub fn has_ready(&self) -> bool {
        self.shared.picker.borrow().has_ready()
    }

    /// Asks for a resolution now (rate-limited).
    pub fn refresh(&self) {
        let _ = self.shared.events.send(Event::ResolveNow);
    }

    /// Tests: makes the owner take `addr`'s state as `state` and stop
    /// watching its health (an address that looks ready but is dead, as
    /// for a moment after a crash).
    #[cfg(test)]
    fn pretend(&self, addr: SocketAddr, state: EndpointState) {
        let _ = self.shared.events.send(Event::Pretend(addr, state));
    }
}

fn stats(picker: &Picker) -> Vec<EndpointStats> {
    picker
        .all
        .iter()
        .map(|(e, state)| EndpointStats {
            addr: e.addr,
            state: *state,
            picks: e.picks(),
        })
        .collect()
}

impl tower::Service<http::Request<Body>> for Balanced {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is decided per call, by picking an address.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(call(shared, request))
    }
}

/// How long a call that found an address unreachable waits for the owner to
/// take it out of the rotation.
const OUT_OF_ROTATION: Duration = Duration::from_millis(50);

async fn call(
    shared: Arc<Shared>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, BoxError> {
    let deadline = crate::deadline::grpc_timeout(request.headers()).map(|t| Instant::now() + t);
    let (parts, body) = request.into_parts();
    let body = Replay::new(body);
    let mut extensions = Some(parts.extensions);
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut pickers = shared.picker.clone();
    let mut picker = pickers.borrow_and_update().clone();
    if picker.readiness == Readiness::Connecting {
        // Starting up: wait (at most wait_for_ready, never past the
        // deadline) for a picker that can place the call.
        let mut wait_until = Instant::now() + shared.wait_for_ready;
        if let Some(d) = deadline {
            wait_until = wait_until.min(d);
        }
        let settled = pickers.wait_for(|p| p.readiness != Readiness::Connecting);
        if let Ok(Ok(settled)) = tokio::time::timeout_at(wait_until, settled).await {
            picker = settled.clone();
        }
    }
    loop {
        let Some(endpoint) = picker.pick(&tried) else {
            // Nothing of the call was sent anywhere (an address that took
            // any of it would have ended the loop).
            // Why the others are out, where known: a refused certificate,
            // say, is then in the caller's error, not only in a log.
            let why = picker
                .all
                .iter()
                .find_map(|(e, _)| e.last_error().map(|why| format!("; {}: {why}", e.addr)))
                .unwrap_or_default();
            return Err(Box::new(crate::upstream::not_sent(Status::unavailable(
                format!(
                    "no ready {} address ({} known{}){why}",
                    shared.name,
                    picker.all.len(),
                    if tried.is_empty() {
                        String::new()
                    } else {
                        format!(", {} unreachable", tried.len())
                    }
                ),
            ))));
        };
        let mut attempt = http::Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .version(parts.version)
            .body(body.handle())
            .map_err(|e| Box::new(e) as BoxError)?;
        *attempt.headers_mut() = parts.headers.clone();
        if let Some(ext) = extensions.take() {
            *attempt.extensions_mut() = ext;
        }
        match endpoint.channel.clone().oneshot(attempt).await {
            Ok(response) => return Ok(crate::upstream::strip_not_sent(response)),
            Err(e) if !body.taken() => {
                // The connection took none of the request: the address is
                // dead. Out of the rotation, and the next one gets the call.
                tracing::debug!(upstream = %shared.name, addr = %endpoint.addr, error = %e, "unreachable; trying the next address");
                let _ = shared.events.send(Event::CallFailed(endpoint.id));
                tried.push(endpoint.addr);
                // Out of the rotation before this call goes on, so the calls
                // after it do not pick the dead address too (the owner takes
                // microseconds; the wait is bounded in case it is gone).
                let gone = pickers.wait_for(|p| !p.offers(endpoint.id));
                if let Ok(Ok(current)) = tokio::time::timeout(OUT_OF_ROTATION, gone).await {
                    picker = current.clone();
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests;
