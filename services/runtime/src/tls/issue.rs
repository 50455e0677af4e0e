//! Issuing certificates without openssl: a local CA and one certificate
//! per service, for `shopctl up`, `shopctl certs` and tests (feature
//! `issue`; services never issue). In Kubernetes, cert-manager or the
//! operator issues them instead (see the chart's `tls` values).
//!
//! Each certificate serves both ways (server and client auth), names its
//! service as `spiffe://<trust domain>/ns/<namespace>/sa/<service>`, and is
//! valid for the service's bare name (what callers check), its Kubernetes
//! Service names, `localhost` and the loopback addresses.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use chrono::{DateTime, Datelike as _, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The default SPIFFE trust domain of the shop's identities.
pub const TRUST_DOMAIN: &str = "shop";

/// A CA that issues the shop's certificates.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

/// What one certificate is for.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The service (or person) it names: common name, `<name>` DNS name
    /// and the `/sa/<name>` of its SPIFFE id.
    pub name: String,
    /// The Kubernetes namespace in its SPIFFE id.
    pub namespace: String,
    /// The trust domain of its SPIFFE id.
    pub trust_domain: String,
    /// More DNS names it is valid for.
    pub dns: Vec<String>,
    /// Valid from (a day earlier, against clock skew) …
    pub not_before: DateTime<Utc>,
    /// … until.
    pub not_after: DateTime<Utc>,
}

impl Leaf {
    /// A certificate for `name` in the default namespace, valid for a year.
    pub fn new(name: &str) -> Self {
        let now = Utc::now();
        Self {
            name: name.to_owned(),
            namespace: "default".into(),
            trust_domain: TRUST_DOMAIN.into(),
            dns: Vec::new(),
            not_before: now,
            not_after: now + Duration::days(365),
        }
    }

    /// The SPIFFE id it carries.
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.name
        )
    }

    fn params(&self) -> anyhow::Result<CertificateParams> {
        let ns = &self.namespace;
        let name = &self.name;
        let mut dns = vec![
            name.clone(),
            format!("{name}.{ns}"),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.cluster.local"),
            "localhost".into(),
        ];
        dns.extend(self.dns.iter().cloned());
        dns.dedup();
        let mut params = CertificateParams::new(dns)?;
        params.subject_alt_names.extend([
            SanType::URI(self.spiffe_id().try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(
            &mut params,
            self.not_before - Duration::days(1),
            self.not_after,
        );
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// Sets `params` valid from the day of `from` to the day of `to` (UTC).
fn validity(params: &mut CertificateParams, from: DateTime<Utc>, to: DateTime<Utc>) {
    let day = |t: DateTime<Utc>| rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
    params.not_before = day(from);
    params.not_after = day(to);
}

/// The CA's certificate fields: the same every time, so a CA key read back
/// from disk signs certificates that chain to the certificate made with it.
fn ca_params(name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "grpc-shop");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = Utc::now();
    validity(
        &mut params,
        now - Duration::days(1),
        now + Duration::days(3650),
    );
    Ok(params)
}

impl LocalCa {
    /// A new CA named `name` (ECDSA P-256, ten years).
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let params = ca_params(name)?;
        let cert_pem = params.self_signed(&key)?.pem();
        let key_pem = key.serialize_pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// The CA in `dir` (`ca.pem`, `ca-key.pem`), made there first if
    /// missing.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
        if cert.exists() && key.exists() {
            let cert_pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("cannot read {}", cert.display()))?;
            let key_pem = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            let params = ca_params(&common_name(&cert_pem).with_context(|| {
                format!("{} is not a CA certificate made here", cert.display())
            })?)?;
            let key = KeyPair::from_pem(&key_pem)
                .with_context(|| format!("{} is not a usable key", key.display()))?;
            return Ok(Self {
                issuer: Issuer::new(params, key),
                cert_pem,
                key_pem,
            });
        }
        // A name of its own, so two shops' CAs are told apart by name.
        let mut id = [0u8; 4];
        getrandom::fill(&mut id)?;
        let name = format!("grpc-shop local CA {:08x}", u32::from_be_bytes(id));
        let ca = Self::new(&name)?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write(&cert, &ca.cert_pem, false)?;
        write(&key, &ca.key_pem, true)?;
        Ok(ca)
    }

    /// The CA certificate, PEM (what peers trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A certificate for `leaf`, with a fresh key.
    pub fn issue(&self, leaf: &Leaf) -> anyhow::Result<Issued> {
        let key = KeyPair::generate()?;
        let cert = leaf.params()?.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues `leaf` into `dir` as `<name>.pem` and `<name>-key.pem`;
    /// returns their paths.
    pub fn issue_into(&self, dir: &Path, leaf: &Leaf) -> anyhow::Result<(PathBuf, PathBuf)> {
        let issued = self.issue(leaf)?;
        let cert = dir.join(format!("{}.pem", leaf.name));
        let key = dir.join(format!("{}-key.pem", leaf.name));
        write(&key, &issued.key_pem, true)?;
        write(&cert, &issued.cert_pem, false)?;
        Ok((cert, key))
    }
}

/// The common name of the certificate in `pem`.
fn common_name(pem: &str) -> anyhow::Result<String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    use x509_parser::prelude::FromDer as _;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .context("no common name")?;
    Ok(name.to_owned())
}

/// Writes `text` to `path` through a temporary file and a rename (a
/// reader never sees half a file); keys readable by the owner only.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
