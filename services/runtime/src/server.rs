//! Every gRPC server of the shop starts and stops the same way.
//!
//! [`Server::serve`] takes an already-bound listener (tests bind
//! `127.0.0.1:0`), the service's own routes and a shutdown future
//! (production passes [`shutdown_signal`], tests a oneshot). With
//! [`Server::routes`] it adds:
//!
//! - `grpc.health.v1.Health` (no token needed: probes must work);
//! - server reflection in both `grpc.reflection.v1` and `v1alpha` (grpcurl
//!   1.8.6 and older only speak v1alpha), describing the contract, the health
//!   service, reflection itself and `google.rpc` error details;
//! - the [`RpcLayer`](crate::telemetry::rpc::RpcLayer) that traces, counts
//!   and logs every call, and `/metrics` on its own port.
//!
//! Shutdown, in order: every service goes NOT_SERVING and health watchers are
//! told; after `drain_delay` the listener closes and HTTP/2 GOAWAY tells
//! clients to go elsewhere; calls in flight get up to `shutdown_grace` to
//! finish; whatever is still running then is cut.

use std::{future::Future, net::SocketAddr, path::PathBuf, time::Duration};

use tokio::net::TcpListener;
use tonic::{
    service::Routes,
    transport::{Server as TonicServer, server::TcpIncoming},
};

use crate::{
    config::ServerArgs,
    health::HealthRegistry,
    metrics::Metrics,
    telemetry::{Methods, rpc::RpcLayer},
};

/// How a server runs and drains.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time between going NOT_SERVING and closing the listener.
    pub drain_delay: Duration,
    /// Time calls in flight get to finish once the listener is closed.
    pub grace: Duration,
    /// Where `/metrics` is served; `None` for nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// A file to write the server's address to once it listens.
    pub addr_file: Option<PathBuf>,
}

impl From<&ServerArgs> for ServeOptions {
    fn from(args: &ServerArgs) -> Self {
        Self {
            drain_delay: args.drain_delay,
            grace: args.shutdown_grace,
            metrics_addr: args.metrics_addr.0,
            addr_file: args.addr_file.clone(),
        }
    }
}

/// One gRPC server of the shop: its health, its metrics, and the contract
/// it serves (for reflection and for telling streaming methods apart).
#[derive(Debug, Clone)]
pub struct Server {
    /// What `grpc.health.v1.Health` reports.
    pub health: HealthRegistry,
    /// Where every layer and collector of this server records.
    pub metrics: Metrics,
    methods: Methods,
    descriptor_sets: Vec<&'static [u8]>,
}

impl Server {
    /// A server for `service` (its metrics say so) serving the contracts in
    /// the encoded `descriptor_sets` (for the shop:
    /// `shop_proto::FILE_DESCRIPTOR_SET`).
    pub fn new(service: &str, descriptor_sets: &[&'static [u8]]) -> Self {
        Self {
            health: HealthRegistry::new(),
            metrics: Metrics::new(service),
            methods: Methods::from_descriptor_sets(descriptor_sets),
            descriptor_sets: descriptor_sets.to_vec(),
        }
    }

    /// The methods of the contracts served, by path.
    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// Health, reflection (v1 and v1alpha) and the service's own routes together.
    pub fn routes(&self, routes: Routes) -> Result<Routes, tonic_reflection::server::Error> {
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

    /// Serves `routes` on `listener` (and `/metrics` on its own port) until
    /// `shutdown` completes, then drains as the module documentation
    /// describes. Returns when the server has stopped.
    pub async fn serve(
        self,
        listener: TcpListener,
        routes: Routes,
        options: ServeOptions,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        let (metrics_stop, metrics_task) = match options.metrics_addr {
            Some(metrics_addr) => {
                let metrics_listener = TcpListener::bind(metrics_addr).await.map_err(|e| {
                    anyhow::anyhow!("cannot listen on {metrics_addr} for metrics: {e}")
                })?;
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(crate::metrics::serve(
                    metrics_listener,
                    self.metrics.clone(),
                    async {
                        let _ = rx.await;
                    },
                ));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let health = self.health.clone();
        let mut server = tokio::spawn(
            TonicServer::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .layer(RpcLayer::new(self.metrics.clone(), self.methods.clone()))
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                }),
        );
        if let Some(path) = &options.addr_file {
            std::fs::write(path, addr.to_string())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        tracing::info!(%addr, "gRPC server listening");

        let result = tokio::select! {
            () = shutdown => drain(&health, options, stop_tx, &mut server).await,
            result = &mut server => {
                // The server stopped on its own: that is an error worth reporting.
                health.shutdown();
                match result {
                    Ok(Ok(())) => Err(anyhow::anyhow!("gRPC server stopped unexpectedly")),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(e.into()),
                }
            }
        };
        if let Some(tx) = metrics_stop {
            let _ = tx.send(());
        }
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        result
    }
}

type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

async fn drain(
    health: &HealthRegistry,
    options: ServeOptions,
    stop: tokio::sync::oneshot::Sender<()>,
    server: &mut ServerTask,
) -> anyhow::Result<()> {
    tracing::info!("shutting down: NOT_SERVING");
    health.shutdown();
    if !options.drain_delay.is_zero() {
        tokio::time::sleep(options.drain_delay).await;
    }
    let _ = stop.send(());
    match tokio::time::timeout(options.grace, &mut *server).await {
        Ok(result) => {
            result??;
            tracing::info!("gRPC server stopped; every call finished");
        }
        Err(_) => {
            server.abort();
            tracing::warn!(
                grace_ms = options.grace.as_millis() as u64,
                "shutdown grace expired; calls still running were cut"
            );
        }
    }
    Ok(())
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
