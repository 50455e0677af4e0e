//! Configuration of `storefront`: flags, each with an environment variable
//! fallback; `storefront serve --help` prints this documentation.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use shop_runtime::{
    balance::Target,
    config::{AuthArgs, DbArgs, LogArgs, ServerArgs, parse_duration},
};

/// The shop's web shop and storefront API, with accounts, sessions and carts
/// in its own PostgreSQL database.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "storefront", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve the web shop (HTTP) and ecommerce.Storefront (gRPC) until SIGTERM/SIGINT.
    Serve(Box<Config>),
    /// Apply the database migrations and exit (run by a Kubernetes Job
    /// before each install or upgrade).
    Migrate {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Check the serving configuration (flags, environment, key and password
    /// files, database URL, upstream targets) and exit 0 if it is usable;
    /// nothing is contacted.
    CheckConfig(Box<Config>),
}

/// Everything the server needs.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Address the web shop (HTTP) listens on.
    #[arg(long, env = "HTTP_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// Apply database migrations at start-up (handy locally; in Kubernetes a
    /// Job runs `storefront migrate` instead).
    #[arg(long, env = "MIGRATE_ON_START")]
    pub migrate: bool,

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

    /// Also write the HTTP address to this file once listening.
    #[arg(long, env = "HTTP_ADDR_FILE")]
    pub http_addr_file: Option<PathBuf>,
}

/// How the storefront reaches the catalog and the order service, and as whom.
#[derive(clap::Args, Debug, Clone)]
pub struct UpstreamArgs {
    /// Where productinfo runs: dns:///host:port (a headless Service),
    /// host:port[,host:port...], or file:///path.
    #[arg(long, env = "PRODUCTINFO_TARGET")]
    pub productinfo_target: Target,

    /// Where the order service runs, in the same forms.
    #[arg(long, env = "ORDER_TARGET")]
    pub order_target: Target,

    /// The storefront's Ed25519 private key (PEM): it signs the tokens of
    /// people who log in and the storefront's own service token.
    #[arg(long, env = "SIGNING_KEY_FILE")]
    pub signing_key_file: PathBuf,

    /// The issuer name on tokens this storefront signs.
    #[arg(long, env = "TOKEN_ISSUER", default_value = "storefront")]
    pub token_issuer: String,

    /// Deadline of each call to productinfo and order.
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// How often upstream addresses are resolved again.
    #[arg(long, env = "RESOLVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub resolve_interval: Duration,
}
