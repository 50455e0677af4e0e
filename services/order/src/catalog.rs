//! The catalog (productinfo) as the order service calls it: a typed facade
//! over one [`Upstream`], which balances, authenticates (the order
//! service's own token), bounds every call by the caller's deadline and
//! sorts failures. All three calls are idempotent (reservations are keyed by
//! order id), so they are retried on `UNAVAILABLE`.

use std::collections::BTreeMap;

use shop_proto::ecommerce::{
    GetProductsRequest, GetProductsResponse, ReleaseStockRequest, Reservation, ReserveStockRequest,
    StockLine, product_info_client::ProductInfoClient, product_info_server::SERVICE_NAME,
};
use shop_runtime::{
    balance::{Balanced, Target},
    deadline::Deadline,
    metrics::Metrics,
    telemetry::client::Observed,
    upstream::{Call, Caller, Peer, Upstream, UpstreamError},
};
use uuid::Uuid;

const PEER: Peer = Peer {
    name: "productinfo",
    health_service: SERVICE_NAME,
    contract: &[shop_proto::reflection::PRODUCT_INFO],
};

type Client = ProductInfoClient<Observed<Balanced>>;

/// The catalog client, built once at start-up; clones share connections.
#[derive(Clone, Debug)]
pub struct Catalog(Upstream<Client>);

impl Catalog {
    /// The productinfo replicas at `target`, called as `caller`.
    pub fn new(caller: &Caller, target: Target, metrics: &Metrics) -> Self {
        Catalog(Upstream::new(
            caller,
            PEER,
            target,
            metrics,
            ProductInfoClient::new,
        ))
    }

    /// Products by id and by exact name.
    pub async fn products(
        &self,
        ids: Vec<String>,
        names: Vec<String>,
        deadline: Deadline,
    ) -> Result<GetProductsResponse, UpstreamError> {
        let request = GetProductsRequest { ids, names };
        let rpc = |mut c: Client, r| async move { c.get_products(r).await };
        self.0
            .call(Call::within(deadline).idempotent(), request, rpc)
            .await
    }

    /// Reserves `lines` (product → quantity) for `order_id`.
    pub async fn reserve(
        &self,
        order_id: Uuid,
        lines: &BTreeMap<Uuid, i64>,
        deadline: Deadline,
    ) -> Result<Reservation, UpstreamError> {
        let request = ReserveStockRequest {
            order_id: order_id.to_string(),
            lines: lines
                .iter()
                .map(|(id, quantity)| StockLine {
                    product_id: id.to_string(),
                    quantity: *quantity,
                })
                .collect(),
        };
        let rpc = |mut c: Client, r| async move { c.reserve_stock(r).await };
        self.0
            .call(Call::within(deadline).idempotent(), request, rpc)
            .await
    }

    /// Gives `order_id`'s reservation back.
    pub async fn release(
        &self,
        order_id: Uuid,
        deadline: Deadline,
    ) -> Result<Reservation, UpstreamError> {
        let request = ReleaseStockRequest {
            order_id: order_id.to_string(),
        };
        let rpc = |mut c: Client, r| async move { c.release_stock(r).await };
        self.0
            .call(Call::within(deadline).idempotent(), request, rpc)
            .await
    }
}
