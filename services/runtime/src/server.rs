//! Every gRPC server of the shop starts and stops the same way.
//!
//! [`serve`] takes an already-bound listener (tests bind `127.0.0.1:0`), the
//! service's own routes, its [`HealthRegistry`] and a shutdown future
//! (production passes [`shutdown_signal`], tests a oneshot). It adds:
//!
//! - `grpc.health.v1.Health` (no token needed: probes must work);
//! - server reflection in both `grpc.reflection.v1` and `v1alpha` (grpcurl
//!   1.8.6 and older only speak v1alpha), describing the contract, the health
//!   service, reflection itself and `google.rpc` error details;
//! - the [`RpcLayer`](crate::telemetry::rpc::RpcLayer) that logs every call.
//!
//! Shutdown, in order: every service goes NOT_SERVING and health watchers are
//! told; after `drain_delay` the listener closes and HTTP/2 GOAWAY tells
//! clients to go elsewhere; calls in flight get up to `shutdown_grace` to
//! finish; whatever is still running then is cut.

use std::{future::Future, time::Duration};

use tokio::net::TcpListener;
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};

use crate::{config::ServerArgs, health::HealthRegistry, telemetry::rpc::RpcLayer};

/// How a server drains when told to stop.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownOptions {
    /// Time between going NOT_SERVING and closing the listener.
    pub drain_delay: Duration,
    /// Time calls in flight get to finish once the listener is closed.
    pub grace: Duration,
}

impl From<&ServerArgs> for ShutdownOptions {
    fn from(args: &ServerArgs) -> Self {
        Self {
            drain_delay: args.drain_delay,
            grace: args.shutdown_grace,
        }
    }
}

/// Health, reflection (v1 and v1alpha) and the service's own routes together.
/// `descriptor_sets` are the encoded `FileDescriptorSet`s of the service's
/// contract (for the shop: `shop_proto::FILE_DESCRIPTOR_SET`).
pub fn with_plumbing(
    routes: Routes,
    health: &HealthRegistry,
    descriptor_sets: &[&'static [u8]],
) -> Result<Routes, tonic_reflection::server::Error> {
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
        for set in descriptor_sets {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        builder
    };
    Ok(routes
        .add_service(health.service())
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?))
}

/// Serves `routes` on `listener` until `shutdown` completes, then drains as
/// the module documentation describes. Returns when the server has stopped.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    health: HealthRegistry,
    options: ShutdownOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .layer(RpcLayer)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    tracing::info!(%addr, "gRPC server listening");

    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            // The server stopped on its own: that is an error worth reporting.
            health.shutdown();
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("gRPC server stopped unexpectedly")),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(e.into()),
            };
        }
    }

    tracing::info!("shutting down: NOT_SERVING");
    health.shutdown();
    if !options.drain_delay.is_zero() {
        tokio::time::sleep(options.drain_delay).await;
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(options.grace, &mut server).await {
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
