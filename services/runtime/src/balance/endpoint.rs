//! One address of a peer (grpc-go's subchannel): a lazy tonic `Channel`, so
//! one HTTP/2 connection, and a task that follows the address's health over
//! that same connection and reports every change to the balancer's owner.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc::UnboundedSender;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{BalanceConfig, Event};

/// Where one address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Known, its health not heard yet.
    Connecting,
    /// Its health says SERVING: in the rotation.
    Ready,
    /// NOT_SERVING, unreachable, or its health stream broke: out of the
    /// rotation until it says SERVING again.
    NotReady,
}

impl EndpointState {
    /// Every state, for metrics.
    pub const ALL: [EndpointState; 3] = [
        EndpointState::Connecting,
        EndpointState::Ready,
        EndpointState::NotReady,
    ];

    /// The state's name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Connecting => "connecting",
            EndpointState::Ready => "ready",
            EndpointState::NotReady => "not_ready",
        }
    }
}

/// One address and its connection. The owner decides its state; calls only
/// read the connection and count their picks.
#[derive(Debug)]
pub(super) struct Endpoint {
    /// Unique per endpoint ever made, so a late report from the health task
    /// of a removed endpoint cannot touch a new one at the same address.
    pub(super) id: u64,
    pub(super) addr: SocketAddr,
    pub(super) channel: Channel,
    pub(super) picks: AtomicU64,
    /// Why its health could not be followed last time, until it answers.
    last_error: Mutex<Option<String>>,
}

impl Endpoint {
    pub(super) fn new(id: u64, addr: SocketAddr, config: &BalanceConfig) -> Option<Endpoint> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = match &config.tls {
            Some(connector) => connector.clone().channel(endpoint),
            None => endpoint.connect_lazy(),
        };
        Some(Endpoint {
            id,
            addr,
            channel,
            picks: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// Why the address is out of the rotation, if its health watch failed.
    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    pub(super) fn picked(&self) {
        self.picks.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn picks(&self) -> u64 {
        self.picks.load(Ordering::Relaxed)
    }
}

/// A status with the chain of errors under it (a connect error's cause,
/// such as a refused certificate, is only there).
fn describe(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = e.source();
    }
    text
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Follows `service`'s health at the endpoint `id` over `channel` with
/// `grpc.health.v1.Health/Watch`, sending every state to the owner, until
/// the owner drops it. A broken or refused watch is retried after a pause
/// that doubles up to 2 s, jittered (±20%) so that callers of a replica
/// that restarted do not all come back at the same instant. A server
/// without the health service counts as ready once it answers.
pub(super) async fn watch_health(
    endpoint: Arc<Endpoint>,
    service: String,
    events: UnboundedSender<Event>,
) {
    let id = endpoint.id;
    let report = |state| events.send(Event::Health(id, state)).is_ok();
    let mut backoff = MIN_BACKOFF;
    let mut client = HealthClient::new(endpoint.channel.clone());
    loop {
        match client
            .watch(HealthCheckRequest {
                service: service.clone(),
            })
            .await
        {
            Ok(stream) => {
                endpoint.set_last_error(None);
                let mut stream = stream.into_inner();
                while let Ok(Some(message)) = stream.message().await {
                    let state = if message.status == ServingStatus::Serving as i32 {
                        backoff = MIN_BACKOFF;
                        EndpointState::Ready
                    } else {
                        EndpointState::NotReady
                    };
                    if !report(state) {
                        return;
                    }
                }
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                endpoint.set_last_error(None);
                // No health service: the best we can know is that it answers.
                if !report(EndpointState::Ready) {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(status) => {
                let why = describe(&status);
                if endpoint.last_error().as_ref() != Some(&why) {
                    tracing::warn!(addr = %endpoint.addr, error = %why, "cannot follow an upstream address's health");
                }
                endpoint.set_last_error(Some(why));
            }
        }
        // The watch ended or failed: out of rotation until it says SERVING,
        // and the name is resolved again (the pod may be gone).
        if !report(EndpointState::NotReady) || events.send(Event::ResolveNow).is_err() {
            return;
        }
        tokio::time::sleep(backoff.mul_f64(0.8 + 0.4 * fastrand::f64())).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
