//! The client side: a tonic connector that dials TCP, then does the TLS
//! handshake with the process's current certificate, checking the server's
//! against the CA and the called service's name (not the address dialled:
//! the balancer dials pod addresses, and a certificate names the service).
//!
//! In TLS 1.3 the server judges the client's certificate after the client
//! has finished its side of the handshake, so a refusal would first show as
//! a broken connection on the first call (tonic: `UNKNOWN`, "connection
//! error"). The connector therefore waits for the server's first bytes (an
//! HTTP/2 server speaks first: its SETTINGS) before handing the connection
//! over: a refused certificate fails the connect, `UNAVAILABLE`, with the
//! server's reason.

use std::{future::Future, pin::Pin, task::Poll, time::Duration};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tonic::transport::{Channel, Endpoint, Uri};

use super::Tls;

/// Dials with TLS as `tls` says, expecting the server to be `server_name`.
#[derive(Clone, Debug)]
pub struct Connector {
    tls: Tls,
    server_name: ServerName<'static>,
}

impl Connector {
    /// Expects servers to prove they are `server_name` (a DNS name or an
    /// IP address in their certificate).
    pub fn new(tls: Tls, server_name: &str) -> Result<Self, String> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("invalid TLS server name {server_name:?}: {e}"))?;
        Ok(Self { tls, server_name })
    }

    /// A lazily connecting channel to `endpoint` over this connector.
    pub fn channel(self, endpoint: Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(self)
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Primed<TlsStream<TcpStream>>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.tls.client_config();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host, port)).await?;
            let _ = tcp.set_nodelay(true);
            let name = server_name.to_str().into_owned();
            let handshake = async {
                let mut stream = TlsConnector::from(config).connect(server_name, tcp).await?;
                let mut first = vec![0; 1024];
                let n = stream.read(&mut first).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ));
                }
                first.truncate(n);
                Ok(Primed {
                    first,
                    at: 0,
                    io: stream,
                })
            };
            match tokio::time::timeout(super::accept::HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => Ok(TokioIo::new(stream)),
                Ok(Err(e)) => Err(std::io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {host}:{port} as {name:?} failed: {e}"),
                )),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("TLS handshake with {host}:{port} as {name:?} did not finish in time"),
                )),
            }
        })
    }
}

/// A connection whose first bytes were read ahead: they are read again
/// first.
#[derive(Debug)]
pub struct Primed<IO> {
    first: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Primed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.first.len() {
            let n = buf.remaining().min(self.first.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.first[at..at + n]);
            self.at += n;
            if self.at == self.first.len() {
                self.first = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Primed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A lazily connecting channel to `addr` (`host:port`): over TLS as `tls`
/// says (the server proving it is `server_name`), or plaintext without
/// `tls`. For tools and tests; services call through
/// [`Upstream`](crate::upstream::Upstream).
pub fn channel(
    addr: &str,
    tls: Option<(&Tls, &str)>,
    connect_timeout: Duration,
) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("invalid address {addr:?}: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    Ok(match tls {
        None => endpoint.connect_lazy(),
        Some((tls, server_name)) => Connector::new(tls.clone(), server_name)?.channel(endpoint),
    })
}
