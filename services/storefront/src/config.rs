//! Configuration of `storefront`: its own flags, each with an environment
//! variable fallback, after the ones every service has
//! ([`shop_runtime::config::Config`]); `storefront serve --help` prints this
//! documentation.

use std::{net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

use shop_runtime::{
    balance::Target,
    config::{UpstreamArgs, WebArgs, parse_duration},
};

/// `storefront serve` and `storefront check-config` take this.
pub type Config = shop_runtime::config::Config<Args>;

/// The storefront's own flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub web: WebArgs,

    /// Where productinfo runs: dns:///host:port (a headless Service),
    /// host:port[,host:port...], or file:///path.
    #[arg(long, env = "PRODUCTINFO_TARGET")]
    pub productinfo_target: Target,

    /// Where the order service runs, in the same forms.
    #[arg(long, env = "ORDER_TARGET")]
    pub order_target: Target,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// Mark cookies Secure (sent over HTTPS only): set it whenever the shop
    /// is served over TLS, for example behind an Ingress with TLS.
    #[arg(long, env = "COOKIE_SECURE")]
    pub cookie_secure: bool,

    /// Address ranges of the proxies in front of the web shop (an Ingress
    /// controller's pods), comma-separated CIDRs such as 10.0.0.0/8. From a
    /// peer in them, the client address for rate limits is the nearest
    /// X-Forwarded-For entry outside them; from anyone else the header is
    /// ignored. Empty: the peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: Cidrs,

    /// How long a browser session lasts without being used.
    #[arg(long, env = "SESSION_TTL", default_value = "24h", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// The longest a browser session lasts however much it is used: then
    /// the person logs in again.
    #[arg(long, env = "SESSION_MAX_LIFETIME", default_value = "168h", value_parser = parse_duration)]
    pub session_max_lifetime: Duration,

    /// Password hashes computed at once (each holds 19 MiB while in use). 0:
    /// one per core, at most two.
    #[arg(long, env = "HASH_CONCURRENCY", default_value_t = 0)]
    pub hash_concurrency: usize,

    /// How long a login or registration waits for a hashing slot before it
    /// is refused (HTTP 503, RESOURCE_EXHAUSTED).
    #[arg(long, env = "HASH_WAIT", default_value = "1s", value_parser = parse_duration)]
    pub hash_wait: Duration,

    /// Failed logins one client may make for one email in 15 minutes; then
    /// that client is refused for that email until the window passes.
    #[arg(long, env = "LOGIN_FAILURES_PER_EMAIL", default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..))]
    pub login_failures_per_email: i64,

    /// Failed logins one client may make in 15 minutes, whatever the email.
    #[arg(long, env = "LOGIN_FAILURES_PER_CLIENT", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..))]
    pub login_failures_per_client: i64,

    /// Accounts one client may register in 15 minutes.
    #[arg(long, env = "REGISTRATIONS_PER_CLIENT", default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..))]
    pub registrations_per_client: i64,

    /// Email of the first admin account, created at start if missing
    /// (with --admin-password-file).
    #[arg(long, env = "ADMIN_EMAIL", requires = "admin_password_file")]
    pub admin_email: Option<String>,

    /// File holding the first admin's password (a mounted Secret). There is
    /// no default password anywhere.
    #[arg(long, env = "ADMIN_PASSWORD_FILE", requires = "admin_email")]
    pub admin_password_file: Option<PathBuf>,
}

/// An address range such as 10.0.0.0/8 or fd00::/8 (a bare address is
/// one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let keep = |bits: u32, value: u128| {
            if self.prefix == 0 {
                0
            } else {
                value >> (bits - u32::from(self.prefix))
            }
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                keep(32, u32::from(n).into()) == keep(32, u32::from(*a).into())
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => keep(128, u128::from(n)) == keep(128, u128::from(*a)),
            (IpAddr::V4(_), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| self.contains(&IpAddr::V4(a))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address range such as 10.0.0.0/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?
        };
        Ok(Cidr { network, prefix })
    }
}

/// A comma-separated list of address ranges; empty is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cidrs(pub Vec<Cidr>);

impl FromStr for Cidrs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Cidrs)
    }
}

#[cfg(test)]
#[test]
fn ranges_contain_their_addresses_only() {
    assert_eq!("".parse::<Cidrs>(), Ok(Cidrs(Vec::new())));
    assert_eq!(
        "10.0.0.0/8, 192.168.0.0/16"
            .parse::<Cidrs>()
            .map(|c| c.0.len()),
        Ok(2)
    );
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let r: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(r.contains(&ip("10.200.3.4")));
    assert!(!r.contains(&ip("11.0.0.1")));
    assert!(r.contains(&ip("::ffff:10.1.1.1")));
    let host: Cidr = "192.0.2.7".parse().unwrap();
    assert!(host.contains(&ip("192.0.2.7")) && !host.contains(&ip("192.0.2.8")));
    let v6: Cidr = "fd00::/8".parse().unwrap();
    assert!(v6.contains(&ip("fd12::1")) && !v6.contains(&ip("fe80::1")));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(&ip("8.8.8.8")));
    for bad in ["10.0.0.0/33", "ten/8", "", "10.0.0.0/x"] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
}

/// The service's flags and the shared ones have distinct names (clap checks).
#[cfg(test)]
#[test]
fn flags_are_distinct() {
    shop_runtime::service::command::<crate::Storefront>().debug_assert();
}
