//! Identity on every business call: JSON Web Tokens signed with EdDSA (Ed25519).
//!
//! - The storefront signs tokens for its users (`customer`, `admin`); every
//!   service that calls another signs its own service tokens (`service`) with
//!   its own key, so no secret is shared between services.
//! - Each server verifies tokens with the public keys of the issuers it
//!   trusts ([`TrustedIssuers`]), checks expiry and that its own name is in the
//!   audience, and may restrict which roles an issuer can grant, so a
//!   compromised order service cannot mint admin tokens.
//! - [`AuthInterceptor`] does this for every call of the service it wraps and
//!   hands a [`Principal`] to handlers through the request extensions.
//!   Health and reflection are not wrapped, so probes and `grpcurl list` need
//!   no token.
//! - Over TLS, a service's token counts only on a connection whose client
//!   certificate names that service ([`crate::tls::PeerIdentity`]): token
//!   and transport must agree, so a stolen service token is no use from
//!   anywhere else.
//! - A verified token is remembered until it expires, so a client that sends
//!   the same token on every call pays for one signature check, not one per call.
//!
//! Errors: no or bad token → `UNAUTHENTICATED`; a valid token whose role may
//! not call the method → `PERMISSION_DENIED` ([`Principal::require`]).

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::tls::PeerIdentity;
use ed25519_dalek::{
    SigningKey,
    pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, errors::InvalidMetadataValue},
};

/// Leeway for clock differences between machines when checking `exp`.
const LEEWAY_SECS: u64 = 30;
/// How many verified tokens a server remembers.
const CACHE_CAPACITY: usize = 4096;

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A shopper: their own cart and orders, and catalog reads.
    Customer,
    /// A shop operator: catalog changes, stock, all orders, shipments.
    Admin,
    /// Another service of the shop, calling on its own behalf.
    Service,
}

impl Role {
    /// The name used in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Role::Customer),
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            other => Err(format!(
                "unknown role {other:?} (expected customer, admin or service)"
            )),
        }
    }
}

/// Who is calling, as proven by their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `sub` claim: a user id for people, the service name for services.
    pub subject: String,
    /// The `role` claim.
    pub role: Role,
    /// The `iss` claim: which trusted key signed the token.
    pub issuer: String,
}

impl Principal {
    /// The caller of a request that went through [`AuthInterceptor`].
    pub fn of<T>(request: &Request<T>) -> Result<Arc<Principal>, Status> {
        request
            .extensions()
            .get::<Arc<Principal>>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))
    }

    /// `PERMISSION_DENIED` unless the caller has one of `allowed` roles.
    pub fn require(&self, allowed: &[Role]) -> Result<(), Status> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            Err(Status::permission_denied(format!(
                "role {} may not call this method (needs {})",
                self.role,
                names.join(" or ")
            )))
        }
    }

    /// `PERMISSION_DENIED` unless the caller is the `service` of one of `issuers`.
    pub fn require_service(&self, issuers: &[String]) -> Result<(), Status> {
        if self.role == Role::Service && issuers.contains(&self.issuer) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "only the service token of {} may call this method",
                issuers.join(" or ")
            )))
        }
    }
}

/// The claims of a shop token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the name of the key that signed the token.
    pub iss: String,
    /// Subject: user id or service name.
    pub sub: String,
    /// Role granted.
    pub role: Role,
    /// Services that may accept this token.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Seconds since the Unix epoch, as in `exp` and `iat`.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a token was refused. Every variant becomes `UNAUTHENTICATED`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token issuer {0:?} is not trusted")]
    UnknownIssuer(String),
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not meant for this service")]
    WrongAudience,
    #[error("issuer {issuer:?} may not grant role {role}")]
    RoleNotAllowed { issuer: String, role: Role },
    #[error("token lives longer than the {max_secs} s this service accepts")]
    TooLong { max_secs: u64 },
    #[error("token is issued in the future")]
    IssuedInFuture,
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        Status::unauthenticated(e.to_string())
    }
}

/// Problems with key files and issuer lists, at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an Ed25519 key in PEM form: {source}")]
    Parse {
        path: PathBuf,
        source: jsonwebtoken::errors::Error,
    },
    #[error("bad trusted issuer entry {entry:?}: {reason}")]
    Spec { entry: String, reason: String },
    #[error("cannot sign token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// Signs tokens as one issuer, with its Ed25519 private key.
#[derive(Clone)]
pub struct Signer {
    issuer: String,
    key: EncodingKey,
    /// SHA-256 of the private key: the root of [`Signer::derive_key`].
    secret: [u8; 32],
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(issuer: impl Into<String>, pem: &[u8]) -> Result<Self, KeyError> {
        Self::parse(issuer.into(), pem, PathBuf::from("<memory>"))
    }

    /// A signer from a PEM private key file.
    pub fn from_file(issuer: impl Into<String>, path: &Path) -> Result<Self, KeyError> {
        let pem = read_key(path)?;
        Self::parse(issuer.into(), &pem, path.to_owned())
    }

    fn parse(issuer: String, pem: &[u8], path: PathBuf) -> Result<Self, KeyError> {
        use sha2::Digest as _;
        let key =
            EncodingKey::from_ed_pem(pem).map_err(|source| KeyError::Parse { path, source })?;
        Ok(Self {
            issuer,
            key,
            secret: sha2::Sha256::digest(pem).into(),
        })
    }

    /// A 32-byte key for `purpose` (say, "csrf"), derived from the private
    /// key: every replica holding the key derives the same one, and knowing
    /// it tells nothing of the private key or of other purposes' keys.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.secret);
        h.update([0]);
        h.update(purpose.as_bytes());
        h.finalize().into()
    }

    /// The issuer name written into `iss` and the `kid` header.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A token for `subject` with `role`, accepted by the `audience` services
    /// for `ttl`.
    pub fn sign(
        &self,
        subject: &str,
        role: Role,
        audience: &[&str],
        ttl: Duration,
    ) -> Result<String, KeyError> {
        let now = now_secs();
        self.sign_claims(&Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            role,
            aud: audience.iter().map(|a| (*a).to_owned()).collect(),
            exp: now + ttl.as_secs().max(1),
            iat: now,
        })
    }

    /// A token carrying exactly `claims` (tests use it for expired or odd
    /// tokens); the `kid` header is this signer's issuer.
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.issuer.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(KeyError::Sign)
    }
}

fn read_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// One issuer whose tokens a server accepts.
pub struct TrustedIssuer {
    name: String,
    /// Roles this issuer may grant; `None` means any.
    roles: Option<Vec<Role>>,
    key: DecodingKey,
}

impl fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl TrustedIssuer {
    /// An issuer from its public key in PEM form: `-----BEGIN PUBLIC KEY-----`
    /// (SPKI) or an X.509 certificate `-----BEGIN CERTIFICATE-----` for the
    /// key (what Helm's `genSelfSignedCertWithKey` makes).
    pub fn from_pem(
        name: impl Into<String>,
        roles: Option<Vec<Role>>,
        pem: &[u8],
    ) -> Result<Self, KeyError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|source| KeyError::Parse {
            path: PathBuf::from("<memory>"),
            source,
        })?;
        Ok(Self {
            name: name.into(),
            roles,
            key,
        })
    }
}

/// The issuers a server trusts, parsed from a list such as
/// `storefront=/keys/storefront.pub,order:service=/keys/order.pub`.
///
/// Each entry is `NAME[:ROLE+ROLE...]=PUBLIC_KEY_FILE`. Without roles, the
/// issuer may grant any role; with roles, only those. The file holds a PEM
/// public key or an X.509 certificate of the key.
#[derive(Debug, Default)]
pub struct TrustedIssuers(Vec<TrustedIssuer>);

impl TrustedIssuers {
    /// Parses the list and reads every key file.
    pub fn load(spec: &str) -> Result<Self, KeyError> {
        let mut issuers = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |reason: &str| KeyError::Spec {
                entry: entry.to_owned(),
                reason: reason.to_owned(),
            };
            let (head, path) = entry
                .split_once('=')
                .ok_or_else(|| bad("expected NAME[:ROLE+ROLE]=PUBLIC_KEY_FILE"))?;
            let (name, roles) = match head.split_once(':') {
                Some((name, roles)) => {
                    let roles = roles
                        .split('+')
                        .map(|r| r.parse::<Role>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| bad(&e))?;
                    (name, Some(roles))
                }
                None => (head, None),
            };
            if name.is_empty() {
                return Err(bad("issuer name is empty"));
            }
            let path = Path::new(path);
            let pem = read_key(path)?;
            let key = DecodingKey::from_ed_pem(&pem).map_err(|source| KeyError::Parse {
                path: path.to_owned(),
                source,
            })?;
            issuers.push(TrustedIssuer {
                name: name.to_owned(),
                roles,
                key,
            });
        }
        Ok(Self(issuers))
    }

    /// Adds one issuer.
    pub fn push(&mut self, issuer: TrustedIssuer) {
        self.0.push(issuer);
    }

    /// Whether no issuer is trusted (then every business call is refused).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Trusted {
    roles: Option<Vec<Role>>,
    key: DecodingKey,
    validation: Validation,
}

struct Cached {
    principal: Arc<Principal>,
    exp: u64,
}

/// Checks tokens for one service (the audience) against its trusted issuers.
pub struct Verifier {
    issuers: HashMap<String, Trusted>,
    /// The longest lifetime (`exp - iat`) accepted.
    max_lifetime: u64,
    cache: Mutex<HashMap<Box<str>, Cached>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier accepting tokens whose audience includes `audience` and
    /// that live at most `max_lifetime` from when they were issued (a key
    /// that leaks cannot mint tokens for years).
    pub fn new(audience: &str, issuers: TrustedIssuers, max_lifetime: Duration) -> Self {
        let issuers = issuers
            .0
            .into_iter()
            .map(|i| {
                let mut validation = Validation::new(Algorithm::EdDSA);
                validation.set_audience(&[audience]);
                validation.set_issuer(&[&i.name]);
                validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
                validation.leeway = LEEWAY_SECS;
                (
                    i.name,
                    Trusted {
                        roles: i.roles,
                        key: i.key,
                        validation,
                    },
                )
            })
            .collect();
        Self {
            issuers,
            max_lifetime: max_lifetime.as_secs(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller a token proves, or why it proves nothing.
    pub fn verify(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let now = now_secs();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.get(token) {
                if hit.exp + LEEWAY_SECS > now {
                    return Ok(hit.principal.clone());
                }
                cache.remove(token);
                return Err(AuthError::Expired);
            }
        }

        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Malformed("algorithm must be EdDSA".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no key id (kid) in header".into()))?;
        let trusted = self
            .issuers
            .get(&kid)
            .ok_or_else(|| AuthError::UnknownIssuer(kid.clone()))?;
        let claims = jsonwebtoken::decode::<Claims>(token, &trusted.key, &trusted.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::UnknownIssuer(kid.clone()),
                _ => AuthError::Malformed(e.to_string()),
            })?
            .claims;
        if claims.iat > now + LEEWAY_SECS {
            return Err(AuthError::IssuedInFuture);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime + LEEWAY_SECS {
            return Err(AuthError::TooLong {
                max_secs: self.max_lifetime,
            });
        }
        if let Some(roles) = &trusted.roles
            && !roles.contains(&claims.role)
        {
            return Err(AuthError::RoleNotAllowed {
                issuer: kid,
                role: claims.role,
            });
        }
        let principal = Arc::new(Principal {
            subject: claims.sub,
            role: claims.role,
            issuer: claims.iss,
        });

        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, c| c.exp + LEEWAY_SECS > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            token.into(),
            Cached {
                principal: principal.clone(),
                exp: claims.exp,
            },
        );
        Ok(principal)
    }
}

/// Verifies the bearer token of every call to the service it wraps and puts
/// the caller's [`Principal`] into the request extensions.
#[derive(Clone, Debug)]
pub struct AuthInterceptor {
    verifier: Arc<Verifier>,
    allow_anonymous: bool,
}

impl AuthInterceptor {
    /// Every call needs a valid token. Shares `verifier` (and its cache)
    /// across clones.
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self {
            verifier,
            allow_anonymous: false,
        }
    }

    /// For services with public methods (log in, register): a call without
    /// a token passes with no [`Principal`] (so [`Principal::of`] refuses it
    /// in every method that needs one); a bad token is still refused.
    pub fn allowing_anonymous(verifier: Arc<Verifier>) -> Self {
        Self {
            verifier,
            allow_anonymous: true,
        }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let token = match bearer_token(request.metadata()) {
            Ok(token) => token,
            Err(AuthError::Missing) if self.allow_anonymous => return Ok(request),
            Err(e) => return Err(e.into()),
        };
        let principal = self.verifier.verify(token)?;
        if let Some(peer) = request.extensions().get::<PeerIdentity>() {
            transport_agrees(&principal, peer)?;
        }
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// Over TLS, a service's token is honoured only on a connection whose
/// client certificate is that service's: a stolen token is no use from
/// another pod. (People's tokens travel through the storefront, so any
/// certificate may carry them.)
fn transport_agrees(principal: &Principal, peer: &PeerIdentity) -> Result<(), Status> {
    if principal.role != Role::Service || peer.service.as_deref() == Some(&*principal.issuer) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "the service token of {:?} is honoured only over a connection with {:?}'s client \
         certificate, and this connection's is {}",
        principal.issuer,
        principal.issuer,
        peer.describe()
    )))
}

/// The token in `authorization: Bearer <token>`.
pub fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Result<&str, AuthError> {
    let value = metadata.get("authorization").ok_or(AuthError::Missing)?;
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization header is not text".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AuthError::Malformed("expected \"Bearer <token>\"".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed("expected \"Bearer <token>\"".into()));
    }
    Ok(token.trim())
}

/// A service's own token for calling other services, minted with its key
/// and reused until half its lifetime has passed.
pub struct ServiceToken {
    signer: Signer,
    audience: Vec<String>,
    ttl: Duration,
    current: RwLock<Option<(AsciiMetadataValue, Instant)>>,
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceToken")
            .field("issuer", &self.signer.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ServiceToken {
    /// Tokens with subject and issuer `signer.issuer()`, role `service`.
    pub fn new(signer: Signer, audience: Vec<String>, ttl: Duration) -> Self {
        Self {
            signer,
            audience,
            ttl,
            current: RwLock::new(None),
        }
    }

    /// The `authorization` metadata value to send: `Bearer <token>`.
    pub fn authorization(&self) -> Result<AsciiMetadataValue, Status> {
        if let Some((value, refresh_at)) = &*self.current.read().unwrap_or_else(|p| p.into_inner())
            && Instant::now() < *refresh_at
        {
            return Ok(value.clone());
        }
        let audience: Vec<&str> = self.audience.iter().map(String::as_str).collect();
        let token = self
            .signer
            .sign(self.signer.issuer(), Role::Service, &audience, self.ttl)
            .map_err(|e| crate::error::internal(&e))?;
        let value: AsciiMetadataValue = format!("Bearer {token}")
            .parse()
            .map_err(|e| crate::error::internal(&e))?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some((value.clone(), Instant::now() + self.ttl / 2));
        Ok(value)
    }
}

/// A client interceptor sending one fixed `authorization` value on every
/// call, for tools and tests. (Services call each other through
/// [`Upstream`](crate::upstream::Upstream), which picks the token per call.)
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself.
        f.debug_tuple("Bearer")
            .field(&self.0.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Bearer {
    /// Sends `authorization: Bearer <token>`.
    pub fn new(token: &str) -> Result<Self, InvalidMetadataValue> {
        Self::raw(&format!("Bearer {token}"))
    }

    /// Sends this exact `authorization` value.
    pub fn raw(value: &str) -> Result<Self, InvalidMetadataValue> {
        Ok(Bearer(Some(value.parse()?)))
    }

    /// Sends no token at all.
    pub fn none() -> Self {
        Bearer(None)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A fresh Ed25519 key pair as PEM: (PKCS#8 private key, SPKI public key).
pub fn generate_keypair() -> Result<(String, String), std::io::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(std::io::Error::other)?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(std::io::Error::other)?;
    Ok((private.to_string(), public))
}

/// Writes a fresh key pair as `DIR/NAME.key` (mode 0600) and `DIR/NAME.pub`,
/// unless the private key already exists. Returns both paths.
pub fn ensure_keypair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), std::io::Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    std::fs::create_dir_all(dir)?;
    let private_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    if private_path.exists() && public_path.exists() {
        return Ok((private_path, public_path));
    }
    let (private, public) = generate_keypair()?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&private_path)?
        .write_all(private.as_bytes())?;
    std::fs::write(&public_path, public)?;
    Ok((private_path, public_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(name: &str, roles: Option<Vec<Role>>) -> (Signer, TrustedIssuer) {
        let (private, public) = generate_keypair().unwrap();
        (
            Signer::from_pem(name, private.as_bytes()).unwrap(),
            TrustedIssuer::from_pem(name, roles, public.as_bytes()).unwrap(),
        )
    }

    fn verifier(audience: &str, trusted: Vec<TrustedIssuer>) -> Verifier {
        let mut issuers = TrustedIssuers::default();
        for t in trusted {
            issuers.push(t);
        }
        Verifier::new(audience, issuers, 12 * HOUR)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn over_tls_a_service_token_counts_only_with_its_services_certificate() {
        use tonic::service::Interceptor as _;
        let (order, trusted_order) = issuer("order", Some(vec![Role::Service]));
        let (storefront, trusted_storefront) = issuer("storefront", None);
        let auth = AuthInterceptor::new(Arc::new(verifier(
            "productinfo",
            vec![trusted_order, trusted_storefront],
        )));
        let service_token = order
            .sign("order", Role::Service, &["productinfo"], HOUR)
            .unwrap();
        let person_token = storefront
            .sign("alice", Role::Customer, &["productinfo"], HOUR)
            .unwrap();
        let call = |token: &str, peer: Option<&str>| {
            let mut request = Request::new(());
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            if let Some(peer) = peer {
                request.extensions_mut().insert(PeerIdentity {
                    service: (!peer.is_empty()).then(|| Arc::from(peer)),
                    spiffe_id: None,
                });
            }
            auth.clone().call(request).map(|_| ()).map_err(|s| s.code())
        };

        assert_eq!(call(&service_token, Some("order")), Ok(()));
        assert_eq!(
            call(&service_token, Some("storefront")),
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            call(&service_token, Some("")),
            Err(tonic::Code::PermissionDenied),
            "TLS without a client certificate"
        );
        assert_eq!(call(&service_token, None), Ok(()), "plaintext");
        assert_eq!(call(&person_token, Some("storefront")), Ok(()));
        assert_eq!(call(&person_token, Some("")), Ok(()));
    }

    #[test]
    fn a_signed_token_proves_subject_role_and_issuer() {
        let (signer, trusted) = issuer("storefront", None);
        let v = verifier("productinfo", vec![trusted]);
        let token = signer
            .sign("alice", Role::Admin, &["productinfo", "order"], HOUR)
            .unwrap();

        let p = v.verify(&token).unwrap();

        assert_eq!(
            *p,
            Principal {
                subject: "alice".into(),
                role: Role::Admin,
                issuer: "storefront".into()
            }
        );
        assert_eq!(v.verify(&token).unwrap(), p, "second check hits the cache");
    }

    #[test]
    fn tokens_that_live_too_long_or_come_from_the_future_are_refused() {
        let (signer, trusted) = issuer("storefront", None);
        let v = verifier("productinfo", vec![trusted]);
        let month = signer
            .sign("mallory", Role::Admin, &["productinfo"], 30 * 24 * HOUR)
            .unwrap();
        assert_eq!(
            v.verify(&month),
            Err(AuthError::TooLong {
                max_secs: 12 * 3600
            })
        );
        let twelve_hours = signer
            .sign("alice", Role::Customer, &["productinfo"], 12 * HOUR)
            .unwrap();
        assert!(v.verify(&twelve_hours).is_ok());

        let now = now_secs();
        let future = signer
            .sign_claims(&Claims {
                iss: "storefront".into(),
                sub: "mallory".into(),
                role: Role::Admin,
                aud: vec!["productinfo".into()],
                iat: now + 3600,
                exp: now + 2 * 3600,
            })
            .unwrap();
        assert_eq!(v.verify(&future), Err(AuthError::IssuedInFuture));
    }

    #[test]
    fn tokens_for_another_audience_are_refused() {
        let (signer, trusted) = issuer("storefront", None);
        let v = verifier("productinfo", vec![trusted]);
        let token = signer
            .sign("alice", Role::Customer, &["order"], HOUR)
            .unwrap();
        assert_eq!(v.verify(&token), Err(AuthError::WrongAudience));
    }

    #[test]
    fn tokens_signed_by_an_untrusted_key_are_refused() {
        let (_, trusted) = issuer("storefront", None);
        let (impostor, _) = issuer("storefront", None);
        let (stranger, _) = issuer("stranger", None);
        let v = verifier("productinfo", vec![trusted]);

        let forged = impostor
            .sign("mallory", Role::Admin, &["productinfo"], HOUR)
            .unwrap();
        assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
        let unknown = stranger
            .sign("mallory", Role::Admin, &["productinfo"], HOUR)
            .unwrap();
        assert_eq!(
            v.verify(&unknown),
            Err(AuthError::UnknownIssuer("stranger".into()))
        );
    }

    #[test]
    fn an_issuer_limited_to_service_cannot_grant_admin() {
        let (order, trusted) = issuer("order", Some(vec![Role::Service]));
        let v = verifier("productinfo", vec![trusted]);
        let admin = order
            .sign("order", Role::Admin, &["productinfo"], HOUR)
            .unwrap();
        assert!(matches!(
            v.verify(&admin),
            Err(AuthError::RoleNotAllowed { .. })
        ));
        let service = order
            .sign("order", Role::Service, &["productinfo"], HOUR)
            .unwrap();
        assert_eq!(v.verify(&service).unwrap().role, Role::Service);
    }

    /// An Ed25519 key and a self-signed X.509 certificate for it, as a Helm
    /// chart makes them (`genPrivateKey "ed25519"`, `genSelfSignedCertWithKey`);
    /// made here with `openssl genpkey -algorithm ed25519` and `openssl req -x509`.
    const FIXTURE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hm9uyEtju75cgMfqH3gG/fa5E9lRgVay0pFc+Wt5p\n-----END PRIVATE KEY-----\n";
    const FIXTURE_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBSDCB+6ADAgECAhQoTpgemLsRICU4LRKypL4CmvrRxTAFBgMrZXAwGjEYMBYG\nA1UEAwwPc2hvcC1zdG9yZWZyb250MB4XDTI2MTEyMzEzNDE1N1oXDTM2MTEyMDEz\nNDE1N1owGjEYMBYGA1UEAwwPc2hvcC1zdG9yZWZyb250MCowBQYDK2VwAyEAVnge\nfw8Vji3ch0HrD/w+IdtQWS3orGt2cXhQAywdU2GjUzBRMB0GA1UdDgQWBBSZ3f+Y\n4lyUawS/g8sTJ1a34YRZ6jAfBgNVHSMEGDAWgBSZ3f+Y4lyUawS/g8sTJ1a34YRZ\n6jAPBgNVHRMBAf8EBTADAQH/MAUGAytlcANBAE/wMOVNxMUDbekXOmQbbWS7bW2b\nvU/dIMfZCFROfwxMDD/L6GZAHnJYoqyTpKo2JerLOl1uKJvEA5TopZc6bQc=\n-----END CERTIFICATE-----\n";

    #[test]
    fn an_x509_certificate_is_a_trusted_public_key() {
        let signer = Signer::from_pem("storefront", FIXTURE_KEY.as_bytes()).unwrap();
        let trusted = TrustedIssuer::from_pem("storefront", None, FIXTURE_CERT.as_bytes()).unwrap();
        let v = verifier("order", vec![trusted]);
        let token = signer
            .sign("alice", Role::Customer, &["order"], HOUR)
            .unwrap();
        assert_eq!(v.verify(&token).unwrap().subject, "alice");

        let (other, _) = generate_keypair().unwrap();
        let forged = Signer::from_pem("storefront", other.as_bytes())
            .unwrap()
            .sign("alice", Role::Admin, &["order"], HOUR)
            .unwrap();
        assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed() {
        let (_, trusted) = issuer("storefront", None);
        let v = verifier("productinfo", vec![trusted]);
        assert!(matches!(
            v.verify("not-a-jwt"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn trusted_issuer_lists_parse_names_roles_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let (_, storefront_pub) = ensure_keypair(dir.path(), "storefront").unwrap();
        let (_, order_pub) = ensure_keypair(dir.path(), "order").unwrap();
        let spec = format!(
            "storefront={}, order:service={}",
            storefront_pub.display(),
            order_pub.display()
        );

        let issuers = TrustedIssuers::load(&spec).unwrap();

        assert_eq!(issuers.0.len(), 2);
        assert_eq!(issuers.0[0].roles, None);
        assert_eq!(issuers.0[1].roles, Some(vec![Role::Service]));
        assert!(matches!(
            TrustedIssuers::load("order:wizard=/x"),
            Err(KeyError::Spec { .. })
        ));
        assert!(matches!(
            TrustedIssuers::load("order=/does/not/exist"),
            Err(KeyError::Read { .. })
        ));
    }

    #[test]
    fn bearer_tokens_need_the_bearer_scheme() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(bearer_token(&md), Err(AuthError::Missing));
        md.insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(bearer_token(&md), Err(AuthError::Malformed(_))));
        md.insert("authorization", "bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer_token(&md), Ok("abc.def.ghi"));
    }

    #[test]
    fn principals_check_roles() {
        let p = Principal {
            subject: "bob".into(),
            role: Role::Customer,
            issuer: "storefront".into(),
        };
        assert!(p.require(&[Role::Customer, Role::Admin]).is_ok());
        let denied = p.require(&[Role::Admin]).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            p.require_service(&["order".into()]).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}
