//! Configuration of `productinfo`: its own flags, each with an environment
//! variable fallback, after the ones every service has
//! ([`shop_runtime::config::Config`]); `productinfo serve --help` prints
//! this documentation.

/// `productinfo serve` and `productinfo check-config` take this.
pub type Config = shop_runtime::config::Config<Args>;

/// The catalog's own flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
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

    /// PostgreSQL URL of a read-only replica of the catalog's database (for
    /// example CloudNativePG's `<cluster>-ro` Service), with the same role
    /// and password (file) as --database-url. getProduct, getProducts,
    /// listProducts and searchProducts read there while it is within
    /// --database-read-max-lag of the primary, and on the primary otherwise
    /// (or when it is down); writes and reservations always go to the
    /// primary. Empty: every read on the primary.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,

    /// How far behind the primary the read replica may be and still serve
    /// reads.
    #[arg(long, env = "DATABASE_READ_MAX_LAG", default_value = "2s", value_parser = shop_runtime::config::parse_duration)]
    pub database_read_max_lag: std::time::Duration,
}

/// The service's flags and the shared ones have distinct names (clap checks).
#[cfg(test)]
#[test]
fn flags_are_distinct() {
    shop_runtime::service::command::<crate::ProductInfo>().debug_assert();
}
