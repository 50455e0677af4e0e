//! A real gRPC server of the runtime over TLS, called by real clients with
//! certificates from a local CA: who gets in, what they are told, and
//! certificates rotated under running calls.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Code, service::Routes, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{
    ClientAuth, Tls, TlsFiles,
    issue::{Leaf, LocalCa},
};
use crate::{
    config::LimitArgs,
    server::{ServeOptions, Server},
    service::{Endpoints, Listeners},
};

/// A CA in a temporary directory, issuing into it.
struct Pki {
    dir: tempfile::TempDir,
    ca: LocalCa,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::in_dir(dir.path()).unwrap();
        Pki { dir, ca }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Files of a certificate for `leaf`, trusting this CA.
    fn files(&self, leaf: &Leaf) -> TlsFiles {
        TlsFiles {
            identity: Some(self.ca.issue_into(self.dir.path(), leaf).unwrap()),
            ca: self.ca_file(),
        }
    }

    fn tls(&self, name: &str) -> Tls {
        Tls::load(self.files(&Leaf::new(name)), ClientAuth::Require).unwrap()
    }
}

/// A server of health (and reflection) on 127.0.0.1, over `tls`; also a
/// plaintext health-only listener. Stops when the token is dropped.
struct Running {
    addr: SocketAddr,
    health_addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(tls: Tls) -> Running {
    let server = Server::new("test", &[]);
    server.health.set("", ServingStatus::Serving);
    let listeners = Listeners {
        grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        web: None,
        metrics: None,
        health: Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
    };
    let addrs = listeners.addrs().unwrap();
    let options = ServeOptions {
        drain_delay: Duration::ZERO,
        grace: Duration::from_secs(1),
        addr_file: None,
        limits: LimitArgs::default(),
        web_max_connections: 16,
        tls: Some(tls),
        faults: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(
        listeners,
        Endpoints::grpc(Routes::default()),
        options,
        async move {
            let _ = stopped.await;
        },
        CancellationToken::new(),
    ));
    Running {
        addr: addrs.grpc,
        health_addr: addrs.health.unwrap(),
        _stop: stop,
    }
}

fn channel(addr: SocketAddr, tls: Option<&Tls>) -> Channel {
    super::connect::channel(
        &addr.to_string(),
        tls.map(|t| (t, "test")),
        Duration::from_secs(5),
    )
    .unwrap()
}

/// One health check over `channel`: the status, or the error's code and
/// its whole text (message and causes).
async fn check(channel: Channel) -> Result<i32, (Code, String)> {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|r| r.into_inner().status)
        .map_err(|status| {
            let mut text = status.message().to_owned();
            let mut source = std::error::Error::source(&status);
            while let Some(e) = source {
                text.push_str(": ");
                text.push_str(&e.to_string());
                source = e.source();
            }
            (status.code(), text)
        })
}

#[tokio::test]
async fn a_client_with_a_certificate_from_the_shops_ca_is_served() {
    let pki = Pki::new();
    let server = serve(pki.tls("test")).await;
    let client = pki.tls("order");

    assert_eq!(
        check(channel(server.addr, Some(&client))).await,
        Ok(ServingStatus::Serving as i32)
    );
    assert_eq!(client.identity().as_deref(), Some("order"));

    // The CA read back from its directory issues certificates that chain
    // to it.
    let again = LocalCa::in_dir(pki.dir.path()).unwrap();
    let issued = again.issue(&Leaf::new("storefront")).unwrap();
    let dir = pki.dir.path();
    std::fs::write(dir.join("again.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.join("again-key.pem"), &issued.key_pem).unwrap();
    let reissued = Tls::load(
        TlsFiles {
            identity: Some((dir.join("again.pem"), dir.join("again-key.pem"))),
            ca: pki.ca_file(),
        },
        ClientAuth::Require,
    )
    .unwrap();
    assert_eq!(
        check(channel(server.addr, Some(&reissued))).await,
        Ok(ServingStatus::Serving as i32)
    );
}

#[tokio::test]
async fn clients_without_the_right_certificate_are_refused() {
    let pki = Pki::new();
    let server = serve(pki.tls("test")).await;

    // No certificate at all.
    let anonymous = Tls::load(
        TlsFiles {
            identity: None,
            ca: pki.ca_file(),
        },
        ClientAuth::Require,
    )
    .unwrap();
    let (code, text) = check(channel(server.addr, Some(&anonymous)))
        .await
        .unwrap_err();
    assert_eq!(code, Code::Unavailable, "{text}");
    assert!(text.contains("CertificateRequired"), "{text}");

    // A certificate from another CA (the client trusts the server's CA).
    let other = Pki::new();
    let foreign = Tls::load(
        TlsFiles {
            identity: other.files(&Leaf::new("order")).identity,
            ca: pki.ca_file(),
        },
        ClientAuth::Require,
    )
    .unwrap();
    let (code, text) = check(channel(server.addr, Some(&foreign)))
        .await
        .unwrap_err();
    assert_eq!(code, Code::Unavailable, "{text}");
    assert!(text.contains("UnknownCA"), "{text}");

    // An expired certificate from the right CA (read without the start-up
    // check, which refuses to present one).
    let mut leaf = Leaf::new("order");
    leaf.not_before = Utc::now() - chrono::Duration::days(30);
    leaf.not_after = Utc::now() - chrono::Duration::days(2);
    let files = pki.files(&leaf);
    assert!(
        Tls::load(files.clone(), ClientAuth::Require)
            .unwrap_err()
            .to_string()
            .contains("expired"),
        "a service does not start with an expired certificate"
    );
    let expired = Tls::with(
        files.clone(),
        ClientAuth::Require,
        super::read(&files, ClientAuth::Require).unwrap(),
    );
    let (code, text) = check(channel(server.addr, Some(&expired)))
        .await
        .unwrap_err();
    assert_eq!(code, Code::Unavailable, "{text}");
    assert!(text.contains("CertificateExpired"), "{text}");
}

#[tokio::test]
async fn a_plaintext_client_on_the_tls_port_is_told_to_use_tls() {
    let pki = Pki::new();
    let server = serve(pki.tls("test")).await;

    let (code, text) = check(channel(server.addr, None)).await.unwrap_err();

    assert_eq!(code, Code::Unavailable);
    assert!(text.contains("this port requires TLS"), "{text}");
}

#[tokio::test]
async fn a_server_with_a_certificate_for_another_name_is_refused_by_its_clients() {
    let pki = Pki::new();
    let server = serve(pki.tls("impostor")).await;

    let (code, text) = check(channel(server.addr, Some(&pki.tls("order"))))
        .await
        .unwrap_err();

    assert_eq!(code, Code::Unavailable);
    assert!(text.contains("as \"test\" failed"), "{text}");
    assert!(text.contains("not valid for name"), "{text}");
}

#[tokio::test]
async fn the_plaintext_health_port_serves_health_and_nothing_else() {
    let pki = Pki::new();
    let server = serve(pki.tls("test")).await;
    let plain = channel(server.health_addr, None);

    assert_eq!(
        check(plain.clone()).await,
        Ok(ServingStatus::Serving as i32)
    );
    let mut grpc = tonic::client::Grpc::new(plain);
    grpc.ready().await.unwrap();
    let reflection = grpc
        .unary::<_, HealthCheckRequest, _>(
            tonic::Request::new(HealthCheckRequest::default()),
            http::uri::PathAndQuery::from_static(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            ),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(reflection.unwrap_err().code(), Code::Unimplemented);
}

/// Puts `issued` in place of `files`' certificate and key the way a
/// Secret volume update looks to a reader: each file swapped whole.
fn rotate(issued: &super::issue::Issued, files: &TlsFiles) {
    let (cert, key) = files.identity.clone().unwrap();
    for (text, to) in [(&issued.key_pem, key), (&issued.cert_pem, cert)] {
        let tmp = to.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, to).unwrap();
    }
}

/// The DER of the certificate `addr` presents to a fresh connection.
async fn presented(addr: SocketAddr, client: &Tls) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(client.client_config())
        .connect("test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn first_cert(path: &Path) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_is_used_for_new_connections_while_calls_keep_flowing() {
    let pki = Pki::new();
    let serving_files = pki.files(&Leaf::new("test"));
    let tls = Tls::load(serving_files.clone(), ClientAuth::Require).unwrap();
    let server = serve(tls.clone()).await;
    let client = pki.tls("order");
    let before = presented(server.addr, &client).await;

    // Calls keep going over one connection the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let caller = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let channel = channel(server.addr, Some(&client));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match check(channel.clone()).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    // A half-made update (a key that is not PEM) is refused; the server
    // keeps its certificate.
    let (_, key) = serving_files.identity.clone().unwrap();
    std::fs::write(&key, "not a key").unwrap();
    assert!(tls.reload().is_err());
    assert_eq!(presented(server.addr, &client).await, before);

    // The whole new pair lands: the next handshake uses it.
    let renewed = pki.ca.issue(&Leaf::new("test")).unwrap();
    rotate(&renewed, &serving_files);
    let new_cert = first_cert(&serving_files.identity.clone().unwrap().0);
    let calls_before = ok.load(Ordering::Relaxed);
    assert!(tls.reload().unwrap(), "the files changed");
    assert!(!tls.reload().unwrap(), "and were taken in once");
    assert_eq!(presented(server.addr, &client).await, new_cert);
    assert_ne!(new_cert, before);

    // Calls on the connection made before the rotation went on.
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while ok.load(Ordering::Relaxed) < calls_before + 20 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    caller.await.unwrap();
    assert!(waited.is_ok(), "calls stopped after the rotation");
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    // And a client on a new connection is served with the new certificate.
    assert_eq!(
        check(channel(server.addr, Some(&client))).await,
        Ok(ServingStatus::Serving as i32)
    );
}
