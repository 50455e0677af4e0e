//! Who a certificate says its holder is.
//!
//! A service of the shop is named by a URI SAN in the SPIFFE form
//! `spiffe://<trust domain>/ns/<namespace>/sa/<service>`: the segment after
//! `/sa/` is the service (`order`), and it is what a service token's issuer
//! must match (see [`crate::auth`]). DNS names in a certificate say where
//! a server may be reached, not who a client is.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use x509_parser::{extensions::GeneralName, prelude::FromDer as _};

/// The verified client certificate of the connection a call came on,
/// in each call's extensions when the gRPC port speaks TLS. A TLS
/// connection without a client certificate (`--tls-client-auth optional`)
/// has `service: None`, as does a certificate without a shop identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The service the certificate names (`order`), if any.
    pub service: Option<Arc<str>>,
    /// The full SPIFFE id, for logs.
    pub spiffe_id: Option<Arc<str>>,
}

impl PeerIdentity {
    /// What `cert` (already verified by the handshake) names.
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        Leaf::parse(cert).map(|l| l.identity).unwrap_or_default()
    }

    /// A short description for logs and error messages.
    pub fn describe(&self) -> String {
        match (&self.spiffe_id, &self.service) {
            (Some(id), _) => id.to_string(),
            (None, _) => "a certificate without a spiffe:// identity".into(),
        }
    }
}

/// What the shop reads from a leaf certificate.
#[derive(Debug, Clone)]
pub(super) struct Leaf {
    pub(super) identity: PeerIdentity,
    /// Expiry, seconds since the epoch.
    pub(super) not_after: i64,
}

impl Leaf {
    pub(super) fn parse(cert: &CertificateDer<'_>) -> Result<Leaf, String> {
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let spiffe_id = parsed
            .subject_alternative_name()
            .map_err(|e| format!("bad subject alternative names: {e}"))?
            .into_iter()
            .flat_map(|san| san.value.general_names.iter())
            .find_map(|name| match name {
                GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
                _ => None,
            });
        Ok(Leaf {
            identity: PeerIdentity {
                service: spiffe_id.and_then(service_of).map(Arc::from),
                spiffe_id: spiffe_id.map(Arc::from),
            },
            not_after: parsed.validity().not_after.timestamp(),
        })
    }

    /// The expiry as RFC 3339, for messages.
    pub(super) fn expiry(&self) -> String {
        chrono::DateTime::from_timestamp(self.not_after, 0)
            .map_or_else(|| self.not_after.to_string(), |t| t.to_rfc3339())
    }
}

/// `order` from `spiffe://shop/ns/default/sa/order`.
fn service_of(spiffe_id: &str) -> Option<&str> {
    let (_, service) = spiffe_id.rsplit_once("/sa/")?;
    (!service.is_empty() && !service.contains('/')).then_some(service)
}

#[cfg(test)]
mod tests {
    use super::service_of;

    #[test]
    fn the_service_is_the_segment_after_sa() {
        assert_eq!(
            service_of("spiffe://shop/ns/default/sa/order"),
            Some("order")
        );
        assert_eq!(
            service_of("spiffe://shop/ns/sa/sa/productinfo"),
            Some("productinfo")
        );
        assert_eq!(service_of("spiffe://shop/ns/default/sa/"), None);
        assert_eq!(service_of("spiffe://shop/ns/default/sa/order/x"), None);
        assert_eq!(service_of("spiffe://shop/workload/order"), None);
    }
}
