//! TLS for the gRPC port and for calls to other services: mutual TLS
//! between the shop's services, TLS for every outside client, rustls only.
//!
//! One [`Tls`] per process, prepared from [`TlsArgs`]: the service's own
//! certificate chain and key (presented as a server and, to other services,
//! as a client) and the CA bundle that peers' certificates must chain to.
//!
//! - **Serving** ([`accept`]): the gRPC listener does the handshake on each
//!   connection (with a deadline), requires a client certificate signed by
//!   the CA or, with `--tls-client-auth optional`, lets a client come
//!   without one. The client's identity ([`PeerIdentity`], from the
//!   certificate's `spiffe://.../sa/<service>` SAN) goes with every call
//!   on the connection, and [`auth`](crate::auth) honours a service's token
//!   only over that service's own certificate: token and transport agree.
//! - **Calling** ([`connect`]): the upstream client's connector presents the
//!   service's certificate and checks the other side's against the CA and
//!   the called service's name.
//! - **Rotation**: [`Tls::watch`] reads the files again every
//!   `--tls-reload-interval` and, when they changed and make a usable set,
//!   new handshakes use them; connections already made keep theirs (calls
//!   in flight finish). A half-written or mismatched set is logged and the
//!   current one kept. cert-manager and Kubernetes Secret volumes replace
//!   the files in place, so nothing restarts.
//! - **Errors a person can act on**: a plaintext client on a TLS port is
//!   answered `UNAVAILABLE` naming the cause; every refused handshake is
//!   logged with the peer's address and rustls' reason; a client that
//!   cannot complete a handshake says which address, which name and why.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use sha2::{Digest as _, Sha256};

pub mod accept;
pub mod connect;
mod identity;
#[cfg(any(feature = "issue", test))]
pub mod issue;

pub use identity::PeerIdentity;

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// Every client presents a certificate signed by the CA.
    Require,
    /// A client may come without a certificate (outside clients of the
    /// storefront); one that presents a certificate must be valid.
    Optional,
}

/// The files a TLS set-up is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain presented (leaf first) and its private key;
    /// a client-only set-up (a tool calling the storefront) may have none.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The CA bundle peers' certificates must chain to.
    pub ca: PathBuf,
}

/// Why a set of TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("the certificate and key cannot be used together")]
    Config(#[from] rustls::Error),
    #[error("the CA bundle cannot verify peers: {0}")]
    Verifier(String),
}

/// What one reading of the files gave: ready-made configurations for both
/// directions, and what the leaf certificate says.
struct Material {
    server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
    digest: [u8; 32],
    leaf: Option<identity::Leaf>,
}

/// A process's TLS: its certificate, key and CA, as last read. Clones share
/// the current set; [`watch`](Self::watch) keeps it current.
#[derive(Clone)]
pub struct Tls {
    files: Arc<TlsFiles>,
    client_auth: ClientAuth,
    current: Arc<RwLock<Arc<Material>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// gRPC runs on HTTP/2 only, and grpc-go clients insist on ALPN saying so.
const ALPN_H2: &[u8] = b"h2";

impl Tls {
    /// Reads `files` and builds both configurations; an unreadable,
    /// mismatched or expired set is an error naming the file and why.
    pub fn load(files: TlsFiles, client_auth: ClientAuth) -> Result<Self, TlsError> {
        let material = read_unexpired(&files, client_auth)?;
        Ok(Self::with(files, client_auth, material))
    }

    fn with(files: TlsFiles, client_auth: ClientAuth, material: Material) -> Self {
        Self {
            files: Arc::new(files),
            client_auth,
            current: Arc::new(RwLock::new(Arc::new(material))),
        }
    }

    fn material(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configuration the next server handshake uses (`None` for a
    /// client-only set-up).
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.material().server.clone()
    }

    /// The configuration the next client handshake uses.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.material().client.clone()
    }

    /// The identity the current certificate gives this process, if any.
    pub fn identity(&self) -> Option<String> {
        self.material()
            .leaf
            .as_ref()
            .and_then(|l| l.identity.service.as_deref().map(str::to_owned))
    }

    /// When the current certificate expires (seconds since the epoch).
    pub fn not_after(&self) -> Option<i64> {
        self.material().leaf.as_ref().map(|l| l.not_after)
    }

    /// Reads the files again; a changed, usable set replaces the current
    /// one. `Ok(true)` when it did, `Ok(false)` when nothing changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let digest = digest(&self.files)?;
        if digest == self.material().digest {
            return Ok(false);
        }
        let material = read_unexpired(&self.files, self.client_auth)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(material);
        Ok(true)
    }

    /// Checks the files every `interval` for ever, taking in each changed,
    /// usable set; an unusable one is logged once and the current set kept
    /// (a Secret being updated may be seen half-written).
    pub async fn watch(self, interval: Duration) {
        let interval = interval.max(Duration::from_secs(1));
        let mut last_error: Option<String> = None;
        loop {
            tokio::time::sleep(interval).await;
            match self.reload() {
                Ok(false) => last_error = None,
                Ok(true) => {
                    last_error = None;
                    tracing::info!(
                        identity = self.identity().as_deref().unwrap_or("-"),
                        not_after = self.not_after().unwrap_or_default(),
                        "TLS certificate reloaded; new connections use it"
                    );
                }
                Err(e) => {
                    let message = e.to_string();
                    if last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(error = %message, "TLS files changed but cannot be used; keeping the current certificate");
                        last_error = Some(message);
                    }
                }
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn paths(files: &TlsFiles) -> impl Iterator<Item = &Path> {
    files
        .identity
        .iter()
        .flat_map(|(cert, key)| [cert.as_path(), key.as_path()])
        .chain(std::iter::once(files.ca.as_path()))
}

fn digest(files: &TlsFiles) -> Result<[u8; 32], TlsError> {
    let mut hash = Sha256::new();
    for path in paths(files) {
        let bytes = read_file(path)?;
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(&bytes);
    }
    Ok(hash.finalize().into())
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Bad {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no certificate (BEGIN CERTIFICATE)"));
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(files: &TlsFiles, client_auth: ClientAuth) -> Result<Material, TlsError> {
    let digest = digest(files)?;
    let provider = provider();
    let ca_pem = read_file(&files.ca)?;
    let mut roots = RootCertStore::empty();
    for cert in certificates(&files.ca, &ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| bad(&files.ca, format!("not a usable CA certificate: {e}")))?;
    }
    let roots = Arc::new(roots);

    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone());
    let (mut client, server, leaf) = match &files.identity {
        None => (client.with_no_client_auth(), None, None),
        Some((cert_path, key_path)) => {
            let chain = certificates(cert_path, &read_file(cert_path)?)?;
            let key = PrivateKeyDer::from_pem_slice(&read_file(key_path)?)
                .map_err(|e| bad(key_path, format!("not a PEM private key: {e}")))?;
            let leaf = identity::Leaf::parse(&chain[0]).map_err(|e| bad(cert_path, e))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let verifier = match client_auth {
                ClientAuth::Require => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            }
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
            let mut server = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key.clone_key())?;
            server.alpn_protocols = vec![ALPN_H2.to_vec()];
            let client = client.with_client_auth_cert(chain, key)?;
            (client, Some(Arc::new(server)), Some(leaf))
        }
    };
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Material {
        server,
        client: Arc::new(client),
        digest,
        leaf,
    })
}

/// [`read`], refusing a certificate that has expired: a service must not
/// start, or switch, to one nobody will accept.
fn read_unexpired(files: &TlsFiles, client_auth: ClientAuth) -> Result<Material, TlsError> {
    let material = read(files, client_auth)?;
    if let (Some(leaf), Some((cert, _))) = (&material.leaf, &files.identity)
        && leaf.not_after < unix_now()
    {
        return Err(bad(
            cert,
            format!("the certificate expired at {}", leaf.expiry()),
        ));
    }
    Ok(material)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;
