//! The catalog service of the shop: `ecommerce.ProductInfo` on its own
//! PostgreSQL database.
//!
//! It starts, serves and stops through the shop's one skeleton
//! ([`shop_runtime::service`]); what is its own is [`ProductInfo`]: its
//! flags and the routes it serves. Tests call `ProductInfo::run` with
//! listeners on port 0 and a oneshot as the shutdown signal, so they
//! exercise exactly what production runs.

pub mod config;
mod db;
mod error;
mod grpc;
mod product;
mod reservation;

use shop_proto::ecommerce::product_info_server::{ProductInfoServer, SERVICE_NAME};
use shop_runtime::service::{Context, Endpoints, Service};
use sqlx::migrate::Migrator;
use tonic::{
    codec::CompressionEncoding, service::Routes, service::interceptor::InterceptedService,
};

pub use config::{Args, Config};
pub use db::GET_PRODUCT_SQL;

/// The statements of listings and searches (for `EXPLAIN` in tests and the
/// benchmark's scale runs).
pub mod search_sql {
    pub use crate::db::{ALL_SQL as ALL, CONTAINS_SQL as CONTAINS, NAME_STARTS_SQL as NAME_STARTS};
}

use crate::grpc::ProductInfoService;

/// The catalog service, its configuration checked.
#[derive(Debug)]
pub struct ProductInfo {
    default_currency: String,
    reserve_callers: Vec<String>,
    read_url: Option<String>,
    read_max_lag: std::time::Duration,
}

impl Service for ProductInfo {
    const NAME: &'static str = "productinfo";
    const ABOUT: &'static str =
        "The shop's catalog service: ecommerce.ProductInfo on its own PostgreSQL database.";
    const GRPC_SERVICE: &'static str = SERVICE_NAME;
    const DESCRIPTOR_SETS: &'static [&'static [u8]] = &[shop_proto::reflection::PRODUCT_INFO];
    const MIGRATOR: &'static Migrator = &sqlx::migrate!();
    type Args = Args;

    fn prepare(args: Args) -> anyhow::Result<Self> {
        if !product::is_known_currency(&args.default_currency) {
            anyhow::bail!(
                "--default-currency {:?} is not an ISO 4217 currency code",
                args.default_currency
            );
        }
        let read_url = args.database_read_url.filter(|url| !url.is_empty());
        if let Some(url) = &read_url {
            shop_runtime::pg::url::parse(url)
                .map_err(|e| anyhow::anyhow!("invalid --database-read-url: {e:#}"))?;
        }
        Ok(Self {
            default_currency: args.default_currency,
            reserve_callers: args.reserve_callers,
            read_url,
            read_max_lag: args.database_read_max_lag,
        })
    }

    async fn start(self, ctx: &mut Context) -> anyhow::Result<Endpoints> {
        let reads = ctx.reads(self.read_url.as_deref(), self.read_max_lag)?;
        let service = ProductInfoServer::new(ProductInfoService::new(
            reads,
            &self.default_currency,
            self.reserve_callers,
            ctx.bulk_streams.clone(),
        ))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(ctx.max_message_size);
        Ok(Endpoints::grpc(Routes::new(InterceptedService::new(
            service,
            ctx.auth(),
        ))))
    }
}
