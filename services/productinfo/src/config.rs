//! Configuration of `productinfo`: flags, each with an environment variable
//! fallback; `productinfo --help` prints this documentation.

use shop_runtime::config::{AuthArgs, DbArgs, LogArgs, ServerArgs};

/// The shop's catalog service: ecommerce.ProductInfo on its own PostgreSQL database.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "productinfo", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve ecommerce.ProductInfo, health and reflection until SIGTERM/SIGINT.
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
    /// database URL) and exit 0 if it is usable; nothing is contacted.
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

    /// Apply database migrations at start-up (handy locally; in Kubernetes a
    /// Job runs `productinfo migrate` instead).
    #[arg(long, env = "MIGRATE_ON_START")]
    pub migrate: bool,

    /// Currency of prices sent by legacy clients that only fill the float
    /// `price` field.
    #[arg(long, env = "DEFAULT_CURRENCY", default_value = "USD")]
    pub default_currency: String,

    /// Issuers whose service tokens may reserve and release stock
    /// (comma-separated).
    #[arg(
        long,
        env = "RESERVE_CALLERS",
        default_value = "order",
        value_delimiter = ','
    )]
    pub reserve_callers: Vec<String>,
}
