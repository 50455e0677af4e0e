//! The HTTP listeners (a service's web pages, `/metrics`): axum routers on
//! hyper, HTTP/1.1 and HTTP/2, every connection bounded.
//!
//! - At most `max_connections` connections at once; the next one is closed
//!   as soon as it is accepted (a pod keeps serving the ones it has).
//! - A client must send a request's headers within [`HEADER_READ_TIMEOUT`]
//!   (slow-header attacks hold nothing for long).
//! - When `stop` fires the listener closes and every connection is asked to
//!   finish; the caller bounds how long that may take, and dropping the
//!   future cuts what is left.

use std::{sync::Arc, time::Duration};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// How long a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` (with the client's address as
/// `ConnectInfo<SocketAddr>`) until `stop`, then lets requests in flight
/// finish.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    max_connections: usize,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(listener, router, max_connections, HEADER_READ_TIMEOUT, stop).await
}

async fn serve_with(
    listener: TcpListener,
    router: axum::Router,
    max_connections: usize,
    header_read_timeout: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(100);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let Some((tcp, peer)) = super::next_connection(&listener, &stop).await else {
            break;
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max_connections, "connection refused: at the limit");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let requests = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let builder = builder.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(tcp), requests);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const HEADERS_WITHIN: Duration = Duration::from_millis(300);

    async fn server(max_connections: usize) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        tokio::spawn(serve_with(
            listener,
            router,
            max_connections,
            HEADERS_WITHIN,
            stop.clone(),
        ));
        (addr, stop)
    }

    async fn get(addr: SocketAddr) -> std::io::Result<String> {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        tcp.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_closed() {
        let (addr, _stop) = server(10).await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(HEADERS_WITHIN * 10, slow.read(&mut buf))
            .await
            .expect("closed soon after the timeout");
        // Closed, with or without a 408 first.
        let n = read.unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_the_rest_are_served() {
        let (addr, _stop) = server(2).await;
        let held: Vec<_> =
            futures::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(addr)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        // The kernel queues connections in order: the server took the two
        // held ones first, and closes the third at once.
        assert_eq!(get(addr).await.unwrap_or_default(), "");
        drop(held);
        // Their slots come back once the server sees them close.
        let served = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(text) = get(addr).await
                    && text.starts_with("HTTP/1.1 200")
                {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("served once the others left");
        assert!(served.ends_with("127.0.0.1"), "{served}");
    }
}
