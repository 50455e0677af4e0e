//! The server side of a handshake, done in each connection's own task (a
//! slow client holds up nobody else) and bounded in time.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::{PeerIdentity, Tls};

/// How long a client has from connecting to finishing its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client that spoke plaintext HTTP/2 to a TLS port is told (as
/// `UNAVAILABLE`, on every call it makes before the connection closes).
pub const PLAINTEXT_REFUSED: &str = "this port requires TLS, and the client spoke plaintext: \
     connect with TLS and the shop's CA (grpcurl: -cacert ca.pem -cert client.pem -key \
     client-key.pem instead of -plaintext)";

/// How a connection's handshake ended.
pub enum Handshake {
    /// A TLS connection, and who the client certificate says the client is.
    Done(Box<TlsStream<TcpStream>>, PeerIdentity),
    /// The client began with the HTTP/2 preface, in plaintext: answer its
    /// calls with [`PLAINTEXT_REFUSED`] so it learns why.
    Plaintext(TcpStream),
    /// Refused or abandoned (already logged).
    Refused,
}

/// The TLS record type of a handshake message: every ClientHello starts so.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Completes the server side of the handshake with the client at `peer`.
pub async fn handshake(tls: &Tls, tcp: TcpStream, peer: SocketAddr) -> Handshake {
    let Some(config) = tls.server_config() else {
        tracing::error!(%peer, "TLS listener without a certificate: refusing the connection");
        return Handshake::Refused;
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1..)) => {}
        Ok(_) => return Handshake::Refused,
        Err(_) => {
            tracing::warn!(%peer, reason = "the client sent nothing", "TLS handshake refused");
            return Handshake::Refused;
        }
    }
    if first[0] != HANDSHAKE_RECORD {
        if first[0] == b'P' {
            tracing::warn!(%peer, reason = "the client spoke plaintext HTTP/2 to a TLS port", "TLS handshake refused");
            return Handshake::Plaintext(tcp);
        }
        tracing::warn!(%peer, reason = "the client did not start a TLS handshake", "TLS handshake refused");
        return Handshake::Refused;
    }
    let accepting = TlsAcceptor::from(config).accept(tcp);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
        Ok(Ok(stream)) => {
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(PeerIdentity::of)
                .unwrap_or_default();
            Handshake::Done(Box::new(stream), identity)
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, reason = %reason(&e), "TLS handshake refused");
            Handshake::Refused
        }
        Err(_) => {
            tracing::warn!(%peer, reason = "the handshake did not finish in time", "TLS handshake refused");
            Handshake::Refused
        }
    }
}

/// rustls' own words for what went wrong, with a hint where one helps.
fn reason(e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return e.to_string();
    };
    match tls {
        Error::NoCertificatesPresented => {
            "the client presented no certificate (this port requires one signed by the shop's CA)"
                .into()
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the client's certificate is not signed by the shop's CA".into()
        }
        other => other.to_string(),
    }
}
