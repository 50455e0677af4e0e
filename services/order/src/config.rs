//! Configuration of `order`: flags, each with an environment variable
//! fallback; `order serve --help` prints this documentation.

use std::{path::PathBuf, time::Duration};

use shop_runtime::{
    balance::Target,
    config::{AuthArgs, DbArgs, LogArgs, ServerArgs, parse_duration},
};

/// The shop's order service: ecommerce.OrderManagement on its own PostgreSQL database.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "order", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve ecommerce.OrderManagement, health and reflection until SIGTERM/SIGINT.
    Serve(Box<Config>),
    /// Apply the database migrations and exit (run by a Kubernetes Job
    /// before each install or upgrade).
    Migrate {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Check the serving configuration (flags, environment, key files,
    /// database URL, upstream target) and exit 0 if it is usable; nothing is
    /// contacted.
    CheckConfig(Box<Config>),
}

/// Everything the server needs.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// Apply database migrations at start-up (handy locally; in Kubernetes a
    /// Job runs `order migrate` instead).
    #[arg(long, env = "MIGRATE_ON_START")]
    pub migrate: bool,

    /// Orders per CombinedShipment: processOrders sends a shipment as soon
    /// as one destination has this many orders.
    #[arg(long, env = "SHIPMENT_BATCH_SIZE", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub shipment_batch_size: u32,

    /// How often reservations that must be given back (cancelled orders,
    /// failed or abandoned placements) are released again.
    #[arg(long, env = "RELEASE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub release_interval: Duration,

    /// An addOrder still reserving after this long is considered abandoned
    /// and its reservation is released.
    #[arg(long, env = "ABANDONED_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub abandoned_after: Duration,
}

/// How the service reaches the catalog, and as whom.
#[derive(clap::Args, Debug, Clone)]
pub struct UpstreamArgs {
    /// Where productinfo runs: dns:///host:port (a Kubernetes headless
    /// Service: every pod address), host:port[,host:port...], or
    /// file:///path listing addresses.
    #[arg(long, env = "PRODUCTINFO_TARGET")]
    pub productinfo_target: Target,

    /// This service's Ed25519 private key (PEM), to sign its own service
    /// tokens.
    #[arg(long, env = "SIGNING_KEY_FILE")]
    pub signing_key_file: PathBuf,

    /// The issuer name on this service's tokens, as productinfo's
    /// --trusted-issuers knows it.
    #[arg(long, env = "TOKEN_ISSUER", default_value = "order")]
    pub token_issuer: String,

    /// Deadline of each call to productinfo (shorter if the incoming call's
    /// own deadline comes sooner).
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// How often productinfo's addresses are resolved again.
    #[arg(long, env = "RESOLVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub resolve_interval: Duration,
}
