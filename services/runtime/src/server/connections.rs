//! The gRPC listener's accept loop and connections, on hyper's HTTP/2
//! server directly.
//!
//! Why not tonic's `Server::serve`: it does not let us bound how much a
//! connection buffers for a client that stops reading (hyper's
//! `max_send_buf_size`, 400 KiB per stream by default), and it has no
//! keepalive enforcement. Here, every connection:
//!
//! - is HTTP/2 only, with the stream, header, reset-flood and send-buffer
//!   limits of [`LimitArgs`];
//! - holds its client to gRPC's keepalive policy ([`Policed`]);
//! - is asked to go (GOAWAY) after `--max-connection-age` (±10%, so
//!   connections made together do not all leave together) and closed
//!   after the grace that follows;
//! - gives each call its deadline: a call past its `grpc-timeout` is
//!   dropped (cancelling its database statement) and answered
//!   `DEADLINE_EXCEEDED`.
//!
//! When `stop` fires the listener closes and every connection gets GOAWAY;
//! the caller bounds how long their calls may then take.

use std::{convert::Infallible, sync::Arc, time::Duration};

use http::{Request, Response};
use hyper::{body::Incoming, server::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::{Status, body::Body, transport::server::TcpConnectInfo};
use tower::{Service, ServiceExt as _};

use super::keepalive::Policed;
use crate::config::LimitArgs;

/// What a stream may buffer for a client that does not read: enough for
/// a full batch of a streamed search, small enough that many such streams
/// stay far inside a pod's memory.
const MAX_SEND_BUF: usize = 64 * 1024;

/// Serves `service` on every connection `listener` accepts until `stop`.
pub(super) async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: LimitArgs,
    stop: CancellationToken,
) -> anyhow::Result<()>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.max_local_error_reset_streams)
        .max_send_buf_size(MAX_SEND_BUF);
    let builder = Arc::new(builder);
    let local_addr = listener.local_addr().ok();
    let mut connections = JoinSet::new();
    loop {
        let Some((tcp, peer)) = super::next_connection(&listener, &stop).await else {
            break;
        };
        while connections.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        let info = TcpConnectInfo {
            local_addr,
            remote_addr: Some(peer),
        };
        let service = service.clone();
        let calls = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(info.clone());
            call(service.clone(), request)
        });
        let connection = builder.serve_connection(
            TokioIo::new(Policed::new(tcp, limits.min_ping_interval)),
            calls,
        );
        let age = limits
            .max_connection_age
            .mul_f64(0.9 + 0.2 * fastrand::f64());
        let grace = limits.max_connection_age_grace;
        let stop = stop.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = stop.cancelled() => {}
                () = tokio::time::sleep(age) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(grace, connection.as_mut()).await;
                    return;
                }
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One call, bounded by its `grpc-timeout`.
async fn call<S>(service: S, request: Request<Body>) -> Result<Response<Body>, Infallible>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    match crate::deadline::grpc_timeout(request.headers()) {
        Some(timeout) => match tokio::time::timeout(timeout, service.oneshot(request)).await {
            Ok(response) => response,
            Err(_) => Ok(Status::deadline_exceeded("the call's deadline passed").into_http()),
        },
        None => service.oneshot(request).await,
    }
}
