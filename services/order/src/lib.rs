//! The order service of the shop: `ecommerce.OrderManagement` on its own
//! PostgreSQL database, calling the catalog (productinfo) through the shop's
//! one upstream client with its own service token.
//!
//! It starts, serves and stops through the shop's one skeleton
//! ([`shop_runtime::service`]); what is its own is [`OrderManagement`]: its
//! flags, its routes and two background tasks (the LISTEN connection behind
//! `watchOrder`, and the sweep that gives reservations back). Tests call
//! `OrderManagement::run` with listeners on port 0 and a oneshot as the
//! shutdown signal.

mod catalog;
pub mod config;
mod db;
mod error;
mod grpc;
mod order;
mod place;
mod release;
mod ship;
mod streams;
mod watch;

use std::time::Duration;

use shop_proto::ecommerce::order_management_server::{OrderManagementServer, SERVICE_NAME};
use shop_runtime::{
    balance::Target,
    service::{Context, Endpoints, Service},
    upstream::Caller,
};
use sqlx::migrate::Migrator;
use tonic::{
    codec::CompressionEncoding, service::Routes, service::interceptor::InterceptedService,
};

pub use config::{Args, Config};

/// The statements of order searches (for `EXPLAIN` in tests and the
/// benchmark's scale runs).
pub mod search_sql {
    pub use crate::db::{
        BY_IDS_NEWEST_SQL as BY_IDS_NEWEST, MATCHING_IDS_SQL as MATCHING_IDS,
        WALK_NEWEST_SQL as WALK_NEWEST, WALK_OLDEST_SQL as WALK_OLDEST,
    };
}

/// The order service, its configuration checked.
#[derive(Debug)]
pub struct OrderManagement {
    productinfo: Target,
    caller: Caller,
    shipment_batch_size: usize,
    release_interval: Duration,
    abandoned_after: Duration,
    watch_limits: watch::WatchLimits,
    watch_lifetime: Duration,
}

impl Service for OrderManagement {
    const NAME: &'static str = "order";
    const ABOUT: &'static str =
        "The shop's order service: ecommerce.OrderManagement on its own PostgreSQL database.";
    const GRPC_SERVICE: &'static str = SERVICE_NAME;
    const DESCRIPTOR_SETS: &'static [&'static [u8]] = &[shop_proto::reflection::ORDER_MANAGEMENT];
    const MIGRATOR: &'static Migrator = &sqlx::migrate!();
    type Args = Args;

    fn prepare(args: Args) -> anyhow::Result<Self> {
        Ok(Self {
            caller: Caller::prepare(&args.upstream, Self::NAME)?,
            productinfo: args.productinfo_target,
            shipment_batch_size: args.shipment_batch_size as usize,
            release_interval: args.release_interval,
            abandoned_after: args.abandoned_after,
            watch_limits: watch::WatchLimits {
                per_caller: args.watch_max_per_caller,
                total: args.watch_max_total,
            },
            watch_lifetime: args.watch_max_lifetime,
        })
    }

    async fn start(self, ctx: &mut Context) -> anyhow::Result<Endpoints> {
        let caller = self.caller.with_tls(ctx.tls.clone());
        let catalog = catalog::Catalog::new(&caller, self.productinfo, &ctx.metrics);
        let watchers = watch::Watchers::new(ctx.db.clone(), self.watch_limits, &ctx.metrics);
        ctx.spawn(
            "order change listener",
            watchers.clone().listen(ctx.db_options.clone()),
        );
        ctx.spawn(
            "reservation release sweep",
            release::sweep(
                ctx.db.clone(),
                catalog.clone(),
                self.release_interval,
                self.abandoned_after,
            ),
        );
        let service = OrderManagementServer::new(grpc::OrderManagementService::new(
            ctx.db.clone(),
            ctx.bulk_streams.clone(),
            catalog,
            watchers,
            self.watch_lifetime,
            ctx.stopping.clone(),
            self.shipment_batch_size,
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
