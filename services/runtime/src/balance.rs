//! Client-side round-robin: every call to a peer service goes to the next
//! ready address of that service, in strict rotation, with no proxy or mesh.
//!
//! Why not tonic's `Channel::balance_list`: it is power-of-two-choices
//! (random under equal load), keeps routing to addresses whose connect
//! fails, and hangs forever when there are none.
//!
//! How [`Balanced`] works:
//! - **Resolution.** The [`Target`] names a DNS name (a Kubernetes headless
//!   Service answers with one address per ready pod), a static list, or a
//!   file listing addresses. It is resolved at start, every `refresh`, and
//!   again (at most once per `min_refresh`) when a connection fails. A failed
//!   resolution keeps the last good set; an empty one empties it.
//! - **Connections.** One tonic `Channel`, so one HTTP/2 connection, per
//!   address. A removed address is dropped from the rotation at once; its
//!   connection closes when the calls still using it have finished (they
//!   hold a clone of its channel).
//! - **Health.** Each address is watched with `grpc.health.v1.Health/Watch`
//!   on that same connection: SERVING puts it in the rotation, anything
//!   else (NOT_SERVING, a broken stream, a refused connection) takes it out
//!   until it says SERVING again.
//! - **Picking.** One atomic counter over the ready addresses (sorted, so
//!   the rotation is stable): strict round-robin across all callers.
//! - **Failing fast.** With no ready address the call fails `UNAVAILABLE` at
//!   once, unless some address is still connecting for the first time; then
//!   it waits for one, at most `wait_for_ready` and never past the call's
//!   deadline.
//! - **Retrying only what is safe.** The request body is handed to the
//!   connection lazily: if a call fails before the connection took any of it
//!   (the address was dead), the call goes to the next address. Anything
//!   else is returned as it is; nothing is retried blindly.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    str::FromStr,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http_body::Frame;
use tokio::{sync::Notify, task::JoinHandle, time::Instant};
use tonic::{Status, body::Body, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tower::ServiceExt as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a service's addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `dns:///host:port`: every address the name resolves to.
    Dns { host: String, port: u16 },
    /// `host:port,host:port` (or `static:///...`): a fixed list, names resolved.
    Static(Vec<String>),
    /// `file:///path`: `host:port` entries (one per line or comma-separated),
    /// read again at every resolution.
    File(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("dns:///").or_else(|| s.strip_prefix("dns:")) {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: expected dns:///host:port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{s:?}: invalid port {port:?}"))?;
            if host.is_empty() {
                return Err(format!("{s:?}: empty host"));
            }
            return Ok(Target::Dns {
                host: host.trim_start_matches('/').to_owned(),
                port,
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Target::File(PathBuf::from(path)));
        }
        let list = s.strip_prefix("static:///").unwrap_or(s);
        let entries: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        if entries.iter().any(|e| e.rsplit_once(':').is_none()) {
            return Err(format!(
                "{s:?}: expected dns:///host:port, file:///path or host:port[,host:port...]"
            ));
        }
        Ok(Target::Static(entries))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dns { host, port } => write!(f, "dns:///{host}:{port}"),
            Target::Static(list) => write!(f, "{}", list.join(",")),
            Target::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

impl Target {
    /// The addresses the target names right now, sorted and without duplicates.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let entries = match self {
            Target::Dns { host, port } => vec![format!("{host}:{port}")],
            Target::Static(list) => list.clone(),
            Target::File(path) => tokio::fs::read_to_string(path)
                .await?
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let mut addrs = Vec::new();
        for entry in entries {
            addrs.extend(tokio::net::lookup_host(entry.as_str()).await?);
        }
        addrs.sort();
        addrs.dedup();
        Ok(addrs)
    }
}

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
        }
    }
}

const CONNECTING: u8 = 0;
const READY: u8 = 1;
const NOT_READY: u8 = 2;

/// What a [`Balanced`] channel knows about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStats {
    pub addr: SocketAddr,
    /// "connecting", "ready" or "not_ready".
    pub state: &'static str,
    /// Calls handed to this address so far.
    pub picks: u64,
}

struct Endpoint {
    addr: SocketAddr,
    channel: Channel,
    state: AtomicU8,
    picks: AtomicU64,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(w) = self
            .watcher
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            w.abort();
        }
    }
}

struct Shared {
    target: Target,
    config: BalanceConfig,
    endpoints: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    /// Ready endpoints sorted by address: what calls rotate over.
    ready: RwLock<Arc<[Arc<Endpoint>]>>,
    next: AtomicUsize,
    /// The first resolution has finished (until then a call waits for it).
    resolved: AtomicBool,
    /// Bumped whenever the ready set may have changed.
    changed: tokio::sync::watch::Sender<u64>,
    resolve_now: Arc<Notify>,
    resolver: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(r) = self
            .resolver
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            r.abort();
        }
    }
}

/// A channel that spreads calls over every ready address of a target in
/// strict rotation. Clone it freely: clones share connections and rotation.
/// Use it wherever a tonic `Channel` goes: `ProductInfoClient::new(balanced)`.
#[derive(Clone)]
pub struct Balanced {
    shared: Arc<Shared>,
}

impl fmt::Debug for Balanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balanced")
            .field("target", &self.shared.target.to_string())
            .finish_non_exhaustive()
    }
}

impl Balanced {
    /// Starts resolving and watching `target` in the background. Must be
    /// called inside a tokio runtime; the background work stops when the
    /// last clone is dropped.
    pub fn new(target: Target, config: BalanceConfig) -> Self {
        let shared = Arc::new(Shared {
            target,
            config,
            endpoints: Mutex::new(HashMap::new()),
            ready: RwLock::new(Arc::from(Vec::new())),
            next: AtomicUsize::new(0),
            resolved: AtomicBool::new(false),
            changed: tokio::sync::watch::channel(0).0,
            resolve_now: Arc::new(Notify::new()),
            resolver: Mutex::new(None),
        });
        let task = tokio::spawn(resolve_loop(
            Arc::downgrade(&shared),
            shared.resolve_now.clone(),
        ));
        *shared.resolver.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Balanced { shared }
    }

    /// Every known address with its state and how many calls it got.
    pub fn stats(&self) -> Vec<EndpointStats> {
        let endpoints = self
            .shared
            .endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut stats: Vec<EndpointStats> = endpoints
            .values()
            .map(|e| EndpointStats {
                addr: e.addr,
                state: match e.state.load(Ordering::Relaxed) {
                    READY => "ready",
                    NOT_READY => "not_ready",
                    _ => "connecting",
                },
                picks: e.picks.load(Ordering::Relaxed),
            })
            .collect();
        stats.sort_by_key(|s| s.addr);
        stats
    }

    /// Waits until the ready set satisfies `condition` (tests and start-up
    /// checks), at most `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&[EndpointStats]) -> bool,
    ) -> bool {
        let mut changed = self.shared.changed.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if condition(&self.stats()) {
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Whether some address is ready to take calls right now.
    pub fn has_ready(&self) -> bool {
        !self
            .shared
            .ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Asks for a resolution now (rate-limited).
    pub fn refresh(&self) {
        self.shared.resolve_now.notify_one();
    }
}

impl Shared {
    fn rebuild_ready(&self) {
        let endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let mut ready: Vec<Arc<Endpoint>> = endpoints
            .values()
            .filter(|e| e.state.load(Ordering::Relaxed) == READY)
            .cloned()
            .collect();
        drop(endpoints);
        ready.sort_by_key(|e| e.addr);
        *self.ready.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(ready);
        self.changed.send_modify(|v| *v += 1);
    }

    fn set_state(&self, endpoint: &Endpoint, state: u8) {
        if endpoint.state.swap(state, Ordering::Relaxed) != state {
            tracing::info!(
                upstream = %self.config.name,
                addr = %endpoint.addr,
                state = match state { READY => "ready", NOT_READY => "not ready", _ => "connecting" },
                "upstream endpoint changed"
            );
            self.rebuild_ready();
        }
    }

    fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Endpoint>> {
        let ready = self.ready.read().unwrap_or_else(|p| p.into_inner()).clone();
        let endpoint = if tried.is_empty() {
            if ready.is_empty() {
                return None;
            }
            ready[self.next.fetch_add(1, Ordering::Relaxed) % ready.len()].clone()
        } else {
            let left: Vec<&Arc<Endpoint>> =
                ready.iter().filter(|e| !tried.contains(&e.addr)).collect();
            if left.is_empty() {
                return None;
            }
            left[self.next.fetch_add(1, Ordering::Relaxed) % left.len()].clone()
        };
        endpoint.picks.fetch_add(1, Ordering::Relaxed);
        Some(endpoint)
    }

    /// Adds new addresses, drops vanished ones.
    fn apply(self: &Arc<Self>, addrs: &[SocketAddr]) {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let before = endpoints.len();
        endpoints.retain(|addr, _| addrs.contains(addr));
        let removed = before - endpoints.len();
        let mut added = 0;
        for addr in addrs {
            if endpoints.contains_key(addr) {
                continue;
            }
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{addr}")).map(|e| {
                    e.connect_timeout(self.config.connect_timeout)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30))
                        .keep_alive_timeout(Duration::from_secs(10))
                        .connect_lazy()
                });
            let Ok(channel) = channel else { continue };
            let endpoint = Arc::new(Endpoint {
                addr: *addr,
                channel: channel.clone(),
                state: AtomicU8::new(CONNECTING),
                picks: AtomicU64::new(0),
                watcher: Mutex::new(None),
            });
            let watcher = tokio::spawn(watch_health(
                Arc::downgrade(self),
                Arc::downgrade(&endpoint),
                channel,
                self.config.health_service.clone(),
            ));
            *endpoint.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
            endpoints.insert(*addr, endpoint);
            added += 1;
        }
        drop(endpoints);
        if added + removed > 0 {
            tracing::info!(
                upstream = %self.config.name,
                target = %self.target,
                added,
                removed,
                total = addrs.len(),
                "upstream addresses resolved"
            );
            self.rebuild_ready();
        }
    }
}

async fn resolve_loop(shared: Weak<Shared>, resolve_now: Arc<Notify>) {
    let mut last = Instant::now();
    loop {
        let (target, refresh, min_refresh, name) = match shared.upgrade() {
            Some(s) => (
                s.target.clone(),
                s.config.refresh,
                s.config.min_refresh,
                s.config.name.clone(),
            ),
            None => return,
        };
        match target.resolve().await {
            Ok(addrs) => match shared.upgrade() {
                Some(s) => s.apply(&addrs),
                None => return,
            },
            Err(e) => {
                tracing::warn!(upstream = %name, %target, error = %e, "resolution failed; keeping the last addresses");
            }
        }
        if let Some(s) = shared.upgrade()
            && !s.resolved.swap(true, Ordering::Release)
        {
            // Wake calls that were waiting for the first addresses.
            s.changed.send_modify(|v| *v += 1);
        }
        last = last.max(Instant::now());
        tokio::select! {
            () = tokio::time::sleep(refresh) => {}
            () = resolve_now.notified() => {
                tokio::time::sleep_until(last + min_refresh).await;
            }
        }
        last = Instant::now();
    }
}

async fn watch_health(
    shared: Weak<Shared>,
    endpoint: Weak<Endpoint>,
    channel: Channel,
    service: String,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(50);
    const MAX_BACKOFF: Duration = Duration::from_secs(2);
    let mut backoff = MIN_BACKOFF;
    let mut client = HealthClient::new(channel);
    loop {
        let update = |state: u8| -> bool {
            match (shared.upgrade(), endpoint.upgrade()) {
                (Some(s), Some(e)) => {
                    s.set_state(&e, state);
                    true
                }
                _ => false,
            }
        };
        match client
            .watch(HealthCheckRequest {
                service: service.clone(),
            })
            .await
        {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Ok(Some(message)) = stream.message().await {
                    let state = if message.status == ServingStatus::Serving as i32 {
                        backoff = MIN_BACKOFF;
                        READY
                    } else {
                        NOT_READY
                    };
                    if !update(state) {
                        return;
                    }
                }
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                // No health service: the best we can know is that it answers.
                if !update(READY) {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(_) => {}
        }
        // The watch ended or failed: out of rotation until it says SERVING.
        if !update(NOT_READY) {
            return;
        }
        if let Some(s) = shared.upgrade() {
            s.resolve_now.notify_one();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
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

async fn call(
    shared: Arc<Shared>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, BoxError> {
    let deadline = crate::deadline::grpc_timeout(request.headers()).map(|t| Instant::now() + t);
    let (parts, body) = request.into_parts();
    let body = Replay::new(body);
    let mut extensions = Some(parts.extensions);
    let mut tried: Vec<SocketAddr> = Vec::new();
    loop {
        let Some(endpoint) = shared.pick(&tried) else {
            if tried.is_empty() && shared.pick_would_succeed().is_some() {
                // Starting up, or an address became ready since the pick:
                // wait (at most wait_for_ready) for one in the rotation.
                let mut wait_until = Instant::now() + shared.config.wait_for_ready;
                if let Some(d) = deadline {
                    wait_until = wait_until.min(d);
                }
                let mut changed = shared.changed.subscribe();
                let ready = tokio::time::timeout_at(wait_until, async {
                    while shared.pick_would_succeed() == Some(false) {
                        if changed.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
                if ready.is_ok() && shared.pick_would_succeed() == Some(true) {
                    continue;
                }
            }
            return Err(Box::new(Status::unavailable(format!(
                "no ready {} address ({} known{})",
                shared.config.name,
                shared
                    .endpoints
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len(),
                if tried.is_empty() {
                    String::new()
                } else {
                    format!(", {} unreachable", tried.len())
                }
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
            Ok(response) => return Ok(response),
            Err(e) if !body.taken() => {
                // The connection took none of the request: the address is
                // dead. Take it out of rotation and try the next one.
                tracing::debug!(upstream = %shared.config.name, addr = %endpoint.addr, error = %e, "unreachable; trying the next address");
                shared.set_state(&endpoint, NOT_READY);
                shared.resolve_now.notify_one();
                tried.push(endpoint.addr);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Shared {
    /// `Some(true)` when a pick would succeed, `Some(false)` when not yet but
    /// an address is still connecting, `None` when nothing can become ready soon.
    /// Whether a pick would succeed now (`Some(true)`), may once an address
    /// finishes connecting or the first resolution lands (`Some(false)`),
    /// or cannot (`None`). Judged in one pass over the addresses' states
    /// (not the rotation list, which is rebuilt just after a state changes).
    fn pick_would_succeed(&self) -> Option<bool> {
        // Resolution first: once it reads true, its addresses are in place.
        let resolved = self.resolved.load(Ordering::Acquire);
        if !self
            .ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return Some(true);
        }
        let endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let hopeful = endpoints.values().any(|e| {
            // READY here but not yet in the rotation: about to be.
            matches!(e.state.load(Ordering::Relaxed), CONNECTING | READY)
        });
        (hopeful || !resolved).then_some(false)
    }
}

/// A request body that stays with the caller until the connection first
/// asks for it, so a request the connection never started can be sent again.
struct Replay {
    slot: Arc<Mutex<Option<Body>>>,
}

impl Replay {
    fn new(body: Body) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Some(body))),
        }
    }

    /// A body for one attempt: empty until polled, then the original.
    fn handle(&self) -> Body {
        Body::new(ReplayHandle {
            slot: self.slot.clone(),
            body: None,
        })
    }

    /// Whether some attempt took the original body.
    fn taken(&self) -> bool {
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

#[cfg(test)]
mod tests;
