//! Every listener of a service is served and drained here: gRPC (the one
//! place gRPC is served: `server/connections.rs`, with the limits of
//! `server/admission.rs` and `server/keepalive.rs`), the web shop where
//! there is one and `/metrics` (through [`serve_http`], the one place an
//! HTTP listener is served).
//!
//! The gRPC server gets, besides the service's own routes:
//!
//! - `grpc.health.v1.Health` (no token needed: probes must work);
//! - server reflection in both `grpc.reflection.v1` and `v1alpha` (grpcurl
//!   1.8.6 and older only speak v1alpha), describing the contract, the health
//!   service, reflection itself and `google.rpc` error details;
//! - the [`RpcLayer`](crate::telemetry::rpc::RpcLayer) that traces, counts
//!   and logs every call.
//!
//! Shutdown, in order, for gRPC and HTTP alike: every service goes
//! NOT_SERVING and health watchers are told; for `drain_delay` every
//! listener keeps serving (Kubernetes takes the pod out of its endpoints and
//! Ingresses meanwhile); then the listeners close (HTTP/2 GOAWAY tells gRPC
//! clients to go elsewhere) and long-lived streams are told to end; calls in
//! flight get up to `shutdown_grace` to finish; whatever is still running
//! then is cut. `/metrics` answers until the very end.

use std::{future::Future, path::PathBuf, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

mod admission;
mod connections;
mod keepalive;
mod web;

/// The next connection on `listener`, or `None` once `stop` is cancelled.
/// A failed accept (out of file descriptors, say) is logged and retried
/// after a short pause, never in a spin.
async fn next_connection(
    listener: &TcpListener,
    stop: &CancellationToken,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

pub use admission::AdmissionLayer;
pub use keepalive::Policed;

use crate::{
    config::{LimitArgs, ServerArgs},
    health::HealthRegistry,
    metrics::Metrics,
    service::{Endpoints, Listeners},
    telemetry::{Methods, rpc::RpcLayer},
};

/// How a server drains, what it lets clients do, and where it says it
/// listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time between going NOT_SERVING and closing the listeners.
    pub drain_delay: Duration,
    /// Time calls in flight get to finish once the listeners are closed.
    pub grace: Duration,
    /// A file to write the bound addresses to once listening.
    pub addr_file: Option<PathBuf>,
    /// Limits on clients and calls (`max_in_flight` 0: no admission limit).
    pub limits: LimitArgs,
    /// Connections the web listener takes at once.
    pub web_max_connections: usize,
    /// TLS of the gRPC listener (`None`: plaintext).
    pub tls: Option<crate::tls::Tls>,
    /// Fault flags in force (`None`: no fault file, no fault layer).
    pub faults: Option<crate::fault::Switchboard>,
}

/// Connections the web listener takes at once unless HTTP_MAX_CONNECTIONS
/// says otherwise: each costs some tens of KB, and a pod keeps serving
/// those it has.
pub const DEFAULT_WEB_MAX_CONNECTIONS: usize = 1024;

/// Connections the `/metrics` listener takes at once (scrapers and probes).
const METRICS_MAX_CONNECTIONS: usize = 64;

impl ServeOptions {
    /// The options `server` and `limits` say.
    pub fn new(server: &ServerArgs, limits: LimitArgs) -> Self {
        Self {
            drain_delay: server.drain_delay,
            grace: server.shutdown_grace,
            addr_file: server.addr_file.clone(),
            limits,
            web_max_connections: DEFAULT_WEB_MAX_CONNECTIONS,
            tls: None,
            faults: None,
        }
    }
}

/// One service's server: its health, its metrics, and the contract it
/// serves (for reflection and for telling streaming methods apart).
#[derive(Debug, Clone)]
pub struct Server {
    /// What `grpc.health.v1.Health` reports.
    pub health: HealthRegistry,
    /// Where every layer and collector of this server records.
    pub metrics: Metrics,
    methods: Methods,
    descriptor_sets: Vec<&'static [u8]>,
}

type Served = JoinHandle<anyhow::Result<()>>;

impl Server {
    /// A server for `service` (its metrics say so) serving the contracts in
    /// the encoded `descriptor_sets`.
    pub fn new(service: &str, descriptor_sets: &[&'static [u8]]) -> Self {
        Self {
            health: HealthRegistry::new(),
            metrics: Metrics::new(service),
            methods: Methods::from_descriptor_sets(descriptor_sets),
            descriptor_sets: descriptor_sets.to_vec(),
        }
    }

    /// Health, reflection (v1 and v1alpha) and the service's own routes together.
    fn routes(&self, routes: Routes) -> Result<Routes, tonic_reflection::server::Error> {
        let reflection = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
            for set in &self.descriptor_sets {
                builder = builder.register_encoded_file_descriptor_set(set);
            }
            builder
        };
        Ok(routes
            .add_service(self.health.service())
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?))
    }

    /// Serves `endpoints` on `listeners` until `shutdown` completes, then
    /// drains as the module documentation describes; `stopping` is cancelled
    /// when the listeners close. Returns when every listener has stopped.
    pub async fn serve(
        self,
        listeners: Listeners,
        endpoints: Endpoints,
        options: ServeOptions,
        shutdown: impl Future<Output = ()> + Send,
        stopping: CancellationToken,
    ) -> anyhow::Result<()> {
        let addrs = listeners.addrs()?;
        match (&listeners.web, &endpoints.web) {
            (Some(_), None) => {
                anyhow::bail!("a web listener was given to a service without web pages")
            }
            (None, Some(_)) => {
                anyhow::bail!("the service serves web pages but has no web listener")
            }
            _ => {}
        }
        let metrics_stop = CancellationToken::new();
        let metrics = listeners.metrics.map(|listener| {
            tokio::spawn(serve_http(
                listener,
                crate::metrics::router(self.metrics.clone()),
                METRICS_MAX_CONNECTIONS,
                metrics_stop.clone(),
            ))
        });
        let routes = self.routes(endpoints.grpc)?.prepare();
        let limits = options.limits.clone();
        let max_in_flight = match limits.max_in_flight {
            0 => tokio::sync::Semaphore::MAX_PERMITS,
            n => n as usize,
        };
        let grpc_service = tower::ServiceBuilder::new()
            // Refusing must cost next to nothing: before any span or log.
            .layer(AdmissionLayer::new(
                max_in_flight,
                limits.max_open_calls as usize,
                limits.max_message_size,
                &self.metrics,
            ))
            .layer(RpcLayer::new(self.metrics.clone(), self.methods.clone()))
            // Inside the RpcLayer: a faulted call is traced, counted and
            // logged like any other.
            .option_layer(
                options
                    .faults
                    .clone()
                    .map(|board| crate::fault::FaultLayer::new(board, &self.metrics)),
            )
            .service(routes);
        let grpc: Served = tokio::spawn(connections::serve(
            listeners.grpc,
            grpc_service,
            limits.clone(),
            options.tls.clone(),
            stopping.clone(),
        ));
        // Probes that cannot speak TLS get health, and nothing else, in
        // plaintext.
        let health: Option<Served> = listeners.health.map(|listener| {
            let routes = Routes::new(self.health.service()).prepare();
            tokio::spawn(connections::serve(
                listener,
                tower::ServiceBuilder::new()
                    .layer(AdmissionLayer::new(
                        64,
                        64,
                        limits.max_message_size,
                        &self.metrics,
                    ))
                    .service(routes),
                limits,
                None,
                stopping.clone(),
            ))
        });
        let web: Option<Served> = listeners.web.zip(endpoints.web).map(|(listener, router)| {
            tokio::spawn(serve_http(
                listener,
                router,
                options.web_max_connections,
                stopping.clone(),
            ))
        });
        if let Some(path) = &options.addr_file {
            std::fs::write(path, addrs.to_file_text())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        tracing::info!(grpc = %addrs.grpc, tls = options.tls.is_some(), web = ?addrs.web, metrics = ?addrs.metrics, health = ?addrs.health, "listening");

        let mut servers: Vec<Served> = std::iter::once(grpc).chain(web).chain(health).collect();
        let result = tokio::select! {
            () = shutdown => drain(&self.health, &options, &stopping, &mut servers).await,
            (stopped, _, _) = futures::future::select_all(servers.iter_mut()) => {
                // A listener stopped on its own: that is an error worth reporting.
                self.health.shutdown();
                stopping.cancel();
                for server in &servers {
                    server.abort();
                }
                match stopped {
                    Ok(Ok(())) => Err(anyhow::anyhow!("a listener stopped unexpectedly")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.into()),
                }
            }
        };
        metrics_stop.cancel();
        if let Some(task) = metrics {
            let _ = task.await;
        }
        result
    }
}

async fn drain(
    health: &HealthRegistry,
    options: &ServeOptions,
    stopping: &CancellationToken,
    servers: &mut [Served],
) -> anyhow::Result<()> {
    tracing::info!(
        drain_delay_ms = options.drain_delay.as_millis() as u64,
        "shutting down: NOT_SERVING"
    );
    health.shutdown();
    tokio::time::sleep(options.drain_delay).await;
    tracing::info!("drain delay over: listeners closed");
    stopping.cancel();
    let all = futures::future::join_all(servers.iter_mut());
    match tokio::time::timeout(options.grace, all).await {
        Ok(results) => {
            for result in results {
                result??;
            }
            tracing::info!("every call finished");
        }
        Err(_) => {
            for server in servers.iter() {
                server.abort();
            }
            tracing::warn!(
                grace_ms = options.grace.as_millis() as u64,
                "shutdown grace expired; calls still running were cut"
            );
        }
    }
    Ok(())
}

/// Serves `router` over HTTP on `listener` (with the client's address
/// available as `ConnectInfo<SocketAddr>`) until `stop` is cancelled, then
/// lets requests in flight finish; at most `max_connections` connections
/// at once, and headers must arrive within ten seconds ([`web::serve`]).
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    max_connections: usize,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    web::serve(listener, router, max_connections, stop).await
}

/// Completes on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
