//! `grpc.health.v1.Health`, Check and Watch, as `grpc_health_probe`, Kubernetes
//! and the shop's own balancer expect it.
//!
//! Why not `tonic_health::server`: its Watch answers an unknown service with
//! `NOT_FOUND` (the protocol says: stream `SERVICE_UNKNOWN` and keep watching)
//! and its streams never end, so a server shutting down gracefully waits for
//! every watcher until the grace period runs out. Here, [`HealthRegistry::shutdown`]
//! sends `NOT_SERVING` to every watcher and then ends their streams, so
//! clients learn at once and connections drain fast.
//!
//! The service named `""` stands for the whole server. A service's status is
//! whatever its owner last [`set`](HealthRegistry::set), usually from a
//! background check of its dependencies (see [`crate::pg::health_check`]).

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, RwLock},
};

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_server::{Health, HealthServer},
};

pub use tonic_health::pb::health_check_response::ServingStatus as Serving;

/// Watchers of services nobody registered are kept in the map so they learn
/// when the service appears; this bounds how many such names a client can make
/// the server remember.
const MAX_UNREGISTERED: usize = 64;
const MAX_SERVICE_NAME: usize = 256;

/// The health service name that only says "this process is alive".
pub const LIVENESS: &str = "liveness";

/// The health of every service on one server, shared by the gRPC service and
/// whoever decides the statuses.
#[derive(Clone, Debug)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    statuses: RwLock<HashMap<String, watch::Sender<ServingStatus>>>,
    shutting_down: watch::Sender<bool>,
    /// A fault flag holds the server NOT_SERVING ([`HealthRegistry::hold_not_serving`]).
    held: std::sync::atomic::AtomicBool,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthRegistry {
    /// A registry where only the whole server (`""`) is known, `NOT_SERVING`
    /// until someone says otherwise.
    pub fn new() -> Self {
        let registry = Self {
            inner: Arc::new(Inner {
                statuses: RwLock::new(HashMap::new()),
                shutting_down: watch::channel(false).0,
                held: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        registry.set("", ServingStatus::NotServing);
        registry.set(LIVENESS, ServingStatus::Serving);
        registry
    }

    /// Sets `service`'s status, registering it if new, and tells its watchers
    /// when it changed. Ignored once shutdown has begun: a server going away
    /// never becomes SERVING again.
    pub fn set(&self, service: &str, status: ServingStatus) {
        let held = self.inner.held.load(std::sync::atomic::Ordering::Relaxed);
        if (*self.inner.shutting_down.borrow() || held) && status == ServingStatus::Serving {
            return;
        }
        let mut statuses = self
            .inner
            .statuses
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match statuses.get(service) {
            Some(tx) => {
                tx.send_if_modified(|s| std::mem::replace(s, status) != status);
            }
            None => {
                statuses.insert(service.to_owned(), watch::channel(status).0);
            }
        }
    }

    /// Sets the same status for every registered service, the server's
    /// included ([`LIVENESS`] excepted).
    pub fn set_all(&self, status: ServingStatus) {
        let names: Vec<String> = self
            .inner
            .statuses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(name, tx)| {
                name.as_str() != LIVENESS && *tx.borrow() != ServingStatus::ServiceUnknown
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            self.set(&name, status);
        }
    }

    /// The current status of `service`, `None` when it is not registered.
    pub fn get(&self, service: &str) -> Option<ServingStatus> {
        let statuses = self
            .inner
            .statuses
            .read()
            .unwrap_or_else(|p| p.into_inner());
        statuses
            .get(service)
            .map(|tx| *tx.borrow())
            .filter(|s| *s != ServingStatus::ServiceUnknown)
    }

    /// While `on`, every service reports `NOT_SERVING` ([`LIVENESS`]
    /// excepted) whatever its checks say: the `readiness` fault flag
    /// ([`crate::fault`]). Switched off, the next check sets the truth again.
    pub fn hold_not_serving(&self, on: bool) {
        self.inner
            .held
            .store(on, std::sync::atomic::Ordering::Relaxed);
        if on {
            self.set_all(ServingStatus::NotServing);
        }
    }

    /// Every service goes `NOT_SERVING` for good ([`LIVENESS`] stays SERVING
    /// while the process drains), watchers are told, then their streams end.
    pub fn shutdown(&self) {
        self.set_all(ServingStatus::NotServing);
        self.inner.shutting_down.send_replace(true);
    }

    /// The gRPC service to add to a server.
    pub fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService {
            registry: self.clone(),
        })
    }

    fn subscribe(&self, service: &str) -> Option<watch::Receiver<ServingStatus>> {
        if let Some(tx) = self
            .inner
            .statuses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
        {
            return Some(tx.subscribe());
        }
        let mut statuses = self
            .inner
            .statuses
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let unregistered = statuses
            .values()
            .filter(|tx| *tx.borrow() == ServingStatus::ServiceUnknown)
            .count();
        if service.len() > MAX_SERVICE_NAME || unregistered >= MAX_UNREGISTERED {
            return None;
        }
        Some(
            statuses
                .entry(service.to_owned())
                .or_insert_with(|| watch::channel(ServingStatus::ServiceUnknown).0)
                .subscribe(),
        )
    }
}

/// Waits until `service` at `channel` reports SERVING, following its Watch
/// stream (no polling) and reconnecting while the server is not up yet.
/// Gives up after `timeout`.
pub async fn wait_until_serving(
    channel: tonic::transport::Channel,
    service: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    use tonic_health::pb::health_client::HealthClient;
    let mut last_error = String::from("no answer");
    let wait = async {
        let mut client = HealthClient::new(channel);
        loop {
            match client
                .watch(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
            {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Ok(Some(update)) = stream.message().await {
                        if update.status == ServingStatus::Serving as i32 {
                            return;
                        }
                        last_error = format!(
                            "reports {}",
                            ServingStatus::try_from(update.status)
                                .map(|s| s.as_str_name())
                                .unwrap_or("an unknown status")
                        );
                    }
                }
                Err(e) => last_error = e.message().to_owned(),
            }
            // Not listening yet, or the watch ended: try again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(()) => Ok(()),
        Err(_) => Err(format!(
            "{service:?} was not SERVING within {timeout:?} ({last_error})"
        )),
    }
}

/// The `grpc.health.v1.Health` implementation over a [`HealthRegistry`].
#[derive(Debug, Clone)]
pub struct HealthService {
    registry: HealthRegistry,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        match self.registry.get(service) {
            Some(status) => Ok(Response::new(response(status))),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let Some(status_rx) = self.registry.subscribe(&service) else {
            // Too many unknown names: say so once, like a service that never appears.
            let once = futures::stream::once(async { Ok(response(ServingStatus::ServiceUnknown)) })
                .chain(futures::stream::pending());
            return Ok(Response::new(Box::pin(once)));
        };
        let shutdown_rx = self.registry.inner.shutting_down.subscribe();
        Ok(Response::new(Box::pin(watch_stream(
            status_rx,
            shutdown_rx,
        ))))
    }
}

/// Sends the current status, then every change, until shutdown: then the
/// last status (NOT_SERVING) is sent if it was not yet, and the stream ends.
fn watch_stream(
    status_rx: watch::Receiver<ServingStatus>,
    shutdown_rx: watch::Receiver<bool>,
) -> impl Stream<Item = Result<HealthCheckResponse, Status>> + Send {
    struct State {
        status_rx: watch::Receiver<ServingStatus>,
        shutdown_rx: watch::Receiver<bool>,
        last_sent: Option<ServingStatus>,
        done: bool,
    }
    let state = State {
        status_rx,
        shutdown_rx,
        last_sent: None,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let current = *st.status_rx.borrow_and_update();
            if *st.shutdown_rx.borrow_and_update() {
                st.done = true;
                if st.last_sent == Some(current) {
                    return None;
                }
                return Some((Ok(response(current)), st));
            }
            if st.last_sent != Some(current) {
                st.last_sent = Some(current);
                return Some((Ok(response(current)), st));
            }
            tokio::select! {
                changed = st.status_rx.changed() => if changed.is_err() { return None },
                changed = st.shutdown_rx.changed() => if changed.is_err() { return None },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next_status(stream: &mut WatchStream) -> Option<ServingStatus> {
        let item = stream.next().await?;
        Some(ServingStatus::try_from(item.expect("watch item").status).expect("known status"))
    }

    fn watch(registry: &HealthRegistry, service: &str) -> WatchStream {
        let svc = HealthService {
            registry: registry.clone(),
        };
        futures::executor::block_on(svc.watch(Request::new(HealthCheckRequest {
            service: service.into(),
        })))
        .expect("watch")
        .into_inner()
    }

    #[tokio::test]
    async fn check_reports_registered_statuses_and_not_found_otherwise() {
        let registry = HealthRegistry::new();
        registry.set("ecommerce.ProductInfo", ServingStatus::Serving);
        let health = HealthService {
            registry: registry.clone(),
        };
        let ok = health
            .check(Request::new(HealthCheckRequest {
                service: "ecommerce.ProductInfo".into(),
            }))
            .await
            .expect("check");
        assert_eq!(ok.get_ref().status, ServingStatus::Serving as i32);

        let missing = health
            .check(Request::new(HealthCheckRequest {
                service: "nope".into(),
            }))
            .await
            .expect_err("unknown service");
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn watch_sends_changes_then_not_serving_and_ends_at_shutdown() {
        let registry = HealthRegistry::new();
        registry.set("svc", ServingStatus::Serving);
        let mut stream = watch(&registry, "svc");
        assert_eq!(next_status(&mut stream).await, Some(ServingStatus::Serving));

        registry.set("svc", ServingStatus::NotServing);
        assert_eq!(
            next_status(&mut stream).await,
            Some(ServingStatus::NotServing)
        );
        registry.set("svc", ServingStatus::Serving);
        assert_eq!(next_status(&mut stream).await, Some(ServingStatus::Serving));

        registry.shutdown();
        assert_eq!(
            next_status(&mut stream).await,
            Some(ServingStatus::NotServing)
        );
        assert_eq!(next_status(&mut stream).await, None, "stream ends");

        registry.set("svc", ServingStatus::Serving);
        assert_eq!(
            registry.get("svc"),
            Some(ServingStatus::NotServing),
            "no way back after shutdown"
        );
        assert_eq!(
            registry.get(LIVENESS),
            Some(ServingStatus::Serving),
            "alive while draining"
        );
    }

    #[tokio::test]
    async fn watching_an_unknown_service_reports_it_when_it_appears() {
        let registry = HealthRegistry::new();
        let mut stream = watch(&registry, "later");
        assert_eq!(
            next_status(&mut stream).await,
            Some(ServingStatus::ServiceUnknown)
        );
        assert_eq!(registry.get("later"), None, "still unknown to Check");

        registry.set("later", ServingStatus::Serving);
        assert_eq!(next_status(&mut stream).await, Some(ServingStatus::Serving));
    }
}
