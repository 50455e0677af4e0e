//! Configuration of `storefront`: its own flags, each with an environment
//! variable fallback, after the ones every service has
//! ([`shop_runtime::config::Config`]); `storefront serve --help` prints this
//! documentation.

use std::{path::PathBuf, time::Duration};

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

    /// Take the client address for login rate limits from the last
    /// X-Forwarded-For entry (set it only behind a proxy that writes it,
    /// such as an Ingress controller).
    #[arg(long, env = "TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,

    /// How long a browser session lasts without being used.
    #[arg(long, env = "SESSION_TTL", default_value = "24h", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// Email of the first admin account, created at start if missing
    /// (with --admin-password-file).
    #[arg(long, env = "ADMIN_EMAIL", requires = "admin_password_file")]
    pub admin_email: Option<String>,

    /// File holding the first admin's password (a mounted Secret). There is
    /// no default password anywhere.
    #[arg(long, env = "ADMIN_PASSWORD_FILE", requires = "admin_email")]
    pub admin_password_file: Option<PathBuf>,
}

/// The service's flags and the shared ones have distinct names (clap checks).
#[cfg(test)]
#[test]
fn flags_are_distinct() {
    shop_runtime::service::command::<crate::Storefront>().debug_assert();
}
