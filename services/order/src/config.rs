//! Configuration of `order`: its own flags, each with an environment
//! variable fallback, after the ones every service has
//! ([`shop_runtime::config::Config`]); `order serve --help` prints this
//! documentation.

use std::time::Duration;

use shop_runtime::{
    balance::Target,
    config::{UpstreamArgs, parse_duration},
};

/// `order serve` and `order check-config` take this.
pub type Config = shop_runtime::config::Config<Args>;

/// The order service's own flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Where productinfo runs: dns:///host:port (a Kubernetes headless
    /// Service: every pod address), host:port[,host:port...], or
    /// file:///path listing addresses.
    #[arg(long, env = "PRODUCTINFO_TARGET")]
    pub productinfo_target: Target,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

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

    /// watchOrder streams one caller (token subject) may have open at once.
    #[arg(long, env = "WATCH_MAX_PER_CALLER", default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub watch_max_per_caller: usize,

    /// watchOrder streams this server keeps open at once (each costs some
    /// tens of KiB: the default stays well inside a 128 MiB pod).
    #[arg(long, env = "WATCH_MAX_TOTAL", default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub watch_max_total: usize,

    /// A watchOrder stream ends after this long; clients watch again.
    #[arg(long, env = "WATCH_MAX_LIFETIME", default_value = "30m", value_parser = parse_duration)]
    pub watch_max_lifetime: Duration,
}

/// The service's flags and the shared ones have distinct names (clap checks).
#[cfg(test)]
#[test]
fn flags_are_distinct() {
    shop_runtime::service::command::<crate::OrderManagement>().debug_assert();
}
