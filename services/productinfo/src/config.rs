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
}

/// The service's flags and the shared ones have distinct names (clap checks).
#[cfg(test)]
#[test]
fn flags_are_distinct() {
    shop_runtime::service::command::<crate::ProductInfo>().debug_assert();
}
