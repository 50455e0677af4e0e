//! Certificates for the shop without openssl: a CA and one certificate per
//! service (or person), as `shopctl up` makes them in `.local/tls` and as
//! a cluster without cert-manager needs them in its Secrets.
//!
//! ```text
//! shopctl certs --dir certs --namespace shop productinfo order storefront
//! kubectl -n shop create secret generic shop-productinfo-tls \
//!   --from-file=tls.crt=certs/productinfo.pem --from-file=tls.key=certs/productinfo-key.pem \
//!   --from-file=ca.crt=certs/ca.pem
//! ```

use std::path::{Path, PathBuf};

use shop_runtime::tls::{
    ClientAuth, Tls, TlsFiles,
    issue::{Leaf, LocalCa, TRUST_DOMAIN},
};

/// Issue certificates.
#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// Folder for the files: the CA (`ca.pem`, `ca-key.pem`, made there on
    /// first use and reused after) and `NAME.pem` + `NAME-key.pem` each.
    #[arg(long, default_value = ".local/tls")]
    pub dir: PathBuf,

    /// Kubernetes namespace in the certificates' SPIFFE ids and DNS names.
    #[arg(long, default_value = "default")]
    pub namespace: String,

    /// SPIFFE trust domain of the identities.
    #[arg(long, default_value = TRUST_DOMAIN)]
    pub trust_domain: String,

    /// More DNS names every certificate is valid for (the chart's Service
    /// names, say: shop-productinfo).
    #[arg(long, value_delimiter = ',')]
    pub dns: Vec<String>,

    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// Who the certificates are for: the services' names (productinfo,
    /// order, storefront), or any name for a person's or tool's client
    /// certificate.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `shopctl certs`.
pub fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    let ca = LocalCa::in_dir(&args.dir)?;
    for name in &args.names {
        let mut leaf = Leaf::new(name);
        leaf.namespace = args.namespace.clone();
        leaf.trust_domain = args.trust_domain.clone();
        leaf.dns = args.dns.clone();
        leaf.not_after = leaf.not_before + chrono::Duration::days(i64::from(args.days));
        let (cert, key) = ca.issue_into(&args.dir, &leaf)?;
        println!(
            "{}: {} and {} ({})",
            name,
            cert.display(),
            key.display(),
            leaf.spiffe_id()
        );
    }
    println!("CA: {}", args.dir.join("ca.pem").display());
    Ok(())
}

/// A CA in `dir` and a certificate from it for each of `names` (what
/// `shopctl up` and `shopctl bench` run the shop with).
pub fn local(dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    let ca = LocalCa::in_dir(dir)?;
    for name in names {
        ca.issue_into(dir, &Leaf::new(name))?;
    }
    Ok(())
}

/// The files of `name`'s certificate in `dir`, as `local` writes them.
pub fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        identity: Some((
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        )),
        ca: dir.join("ca.pem"),
    }
}

/// A client presenting `name`'s certificate from `dir`.
pub fn client(dir: &Path, name: &str) -> anyhow::Result<Tls> {
    Ok(Tls::load(files(dir, name), ClientAuth::Require)?)
}

/// The environment that runs a service with `name`'s certificate from
/// `dir`, requiring client certificates unless `optional_clients`.
pub fn service_env(dir: &Path, name: &str, optional_clients: bool) -> Vec<(&'static str, String)> {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    vec![
        ("TLS_CERT_FILE", cert.display().to_string()),
        ("TLS_KEY_FILE", key.display().to_string()),
        ("TLS_CA_FILE", dir.join("ca.pem").display().to_string()),
        (
            "TLS_CLIENT_AUTH",
            if optional_clients {
                "optional"
            } else {
                "require"
            }
            .to_owned(),
        ),
    ]
}
