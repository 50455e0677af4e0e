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
//! With TLS, each connection's task does the handshake first
//! ([`crate::tls::accept`]) and every call on the connection carries the
//! client certificate's [`PeerIdentity`]; a plaintext client is answered
//! `UNAVAILABLE` saying the port needs TLS.
//!
//! When `stop` fires the listener closes and every connection gets GOAWAY;
//! the caller bounds how long their calls may then take.

use std::{convert::Infallible, sync::Arc, time::Duration};

use http::{Request, Response};
use hyper::{body::Incoming, server::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::{either::Either, sync::CancellationToken};
use tonic::{Status, body::Body, transport::server::TcpConnectInfo};
use tower::{Service, ServiceExt as _};

use super::keepalive::Policed;
use crate::{
    config::LimitArgs,
    tls::{
        Tls,
        accept::{Handshake, PLAINTEXT_REFUSED},
    },
};

/// What a stream may buffer for a client that does not read: enough for
/// a full batch of a streamed search, small enough that many such streams
/// stay far inside a pod's memory.
const MAX_SEND_BUF: usize = 64 * 1024;

/// Serves `service` on every connection `listener` accepts until `stop`,
/// over TLS when `tls` is given.
pub(super) async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: LimitArgs,
    tls: Option<Tls>,
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
    let (min_ping_interval, max_age, age_grace) = (
        limits.min_ping_interval,
        limits.max_connection_age,
        limits.max_connection_age_grace,
    );
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
        let builder = builder.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let (io, identity) = match tls {
                None => (Either::Left(tcp), None),
                Some(tls) => match crate::tls::accept::handshake(&tls, tcp, peer).await {
                    Handshake::Done(stream, identity) => (Either::Right(*stream), Some(identity)),
                    Handshake::Plaintext(tcp) => return refuse_plaintext(&builder, tcp).await,
                    Handshake::Refused => return,
                },
            };
            let calls = hyper::service::service_fn(move |request: Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(info.clone());
                if let Some(identity) = &identity {
                    request.extensions_mut().insert(identity.clone());
                }
                call(service.clone(), request)
            });
            let connection =
                builder.serve_connection(TokioIo::new(Policed::new(io, min_ping_interval)), calls);
            let age = max_age.mul_f64(0.9 + 0.2 * fastrand::f64());
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = stop.cancelled() => {}
                () = tokio::time::sleep(age) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(age_grace, connection.as_mut()).await;
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

/// How long a plaintext client on a TLS port is answered before the
/// connection is closed.
const PLAINTEXT_ANSWER_TIME: Duration = Duration::from_secs(5);

/// Answers every call of a plaintext client on a TLS port `UNAVAILABLE`,
/// saying why, for a few seconds.
async fn refuse_plaintext(builder: &http2::Builder<TokioExecutor>, tcp: tokio::net::TcpStream) {
    let refuse = hyper::service::service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Status::unavailable(PLAINTEXT_REFUSED).into_http::<Body>())
    });
    let connection = builder.serve_connection(TokioIo::new(tcp), refuse);
    let _ = tokio::time::timeout(PLAINTEXT_ANSWER_TIME, connection).await;
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
