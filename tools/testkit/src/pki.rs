//! Certificates for tests: a CA of their own in a temporary directory,
//! and certificates from it for servers (as [`TlsArgs`]) and clients (as
//! [`Tls`]).

use std::path::PathBuf;

use shop_runtime::{
    config::TlsArgs,
    tls::{
        ClientAuth, Tls, TlsFiles,
        issue::{Leaf, LocalCa},
    },
};

/// A test CA and the files it issued.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: LocalCa,
}

impl Pki {
    /// A new CA in a new temporary directory.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca = LocalCa::in_dir(dir.path()).expect("a local CA");
        Pki { dir, ca }
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The files of a new certificate for `name` from this CA.
    pub fn files(&self, name: &str) -> TlsFiles {
        let identity = self
            .ca
            .issue_into(self.dir.path(), &Leaf::new(name))
            .expect("issue a certificate");
        TlsFiles {
            identity: Some(identity),
            ca: self.ca_file(),
        }
    }

    /// A service's TLS flags: a certificate for `name`, client
    /// certificates required.
    pub fn server_args(&self, name: &str) -> TlsArgs {
        let files = self.files(name);
        let (cert, key) = files.identity.expect("issued");
        TlsArgs {
            tls_cert_file: Some(cert),
            tls_key_file: Some(key),
            tls_ca_file: Some(files.ca),
            ..TlsArgs::default()
        }
    }

    /// The environment that runs service `name` with a new certificate
    /// from this CA (client certificates optional for the storefront,
    /// required by the others, as the chart runs them).
    pub fn service_env(&self, name: &str) -> Vec<(&'static str, String)> {
        let args = self.server_args(name);
        let path = |p: Option<PathBuf>| p.expect("issued").display().to_string();
        vec![
            ("TLS_CERT_FILE", path(args.tls_cert_file)),
            ("TLS_KEY_FILE", path(args.tls_key_file)),
            ("TLS_CA_FILE", path(args.tls_ca_file)),
            (
                "TLS_CLIENT_AUTH",
                if name == "storefront" {
                    "optional"
                } else {
                    "require"
                }
                .into(),
            ),
        ]
    }

    /// A client presenting a certificate for `name`.
    pub fn client(&self, name: &str) -> Tls {
        Tls::load(self.files(name), ClientAuth::Require).expect("client TLS")
    }

    /// A client that trusts the CA but presents no certificate.
    pub fn anonymous(&self) -> Tls {
        let files = TlsFiles {
            identity: None,
            ca: self.ca_file(),
        };
        Tls::load(files, ClientAuth::Require).expect("client TLS")
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
