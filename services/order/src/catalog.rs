//! The order service's client of the catalog (productinfo): built once at
//! start-up over a [`Balanced`] channel (strict round-robin over every ready
//! replica), sending the order service's own service token and a deadline on
//! every call.

use std::{collections::BTreeMap, time::Duration};

use shop_proto::ecommerce::{
    GetProductsRequest, GetProductsResponse, ReleaseStockRequest, Reservation, ReserveStockRequest,
    StockLine, product_info_client::ProductInfoClient, product_info_server::SERVICE_NAME,
};
use shop_runtime::{
    auth::{ServiceAuth, ServiceToken, Signer},
    balance::{BalanceConfig, Balanced, Target},
    deadline::Deadline,
    metrics::Metrics,
    telemetry::{Methods, client::Observed},
};
use tonic::{Code, Request, Status, service::interceptor::InterceptedService};
use uuid::Uuid;

use crate::error::Error;

/// How long the service's own tokens live; a fresh one is minted at half-life.
const TOKEN_TTL: Duration = Duration::from_secs(600);

type Client = ProductInfoClient<InterceptedService<Observed<Balanced>, ServiceAuth>>;

/// The catalog, as the order service calls it.
#[derive(Clone, Debug)]
pub struct Catalog {
    client: Client,
    timeout: Duration,
}

impl Catalog {
    /// A client of the productinfo replicas at `target`, authenticating as
    /// `signer`'s issuer, each call bounded by `timeout`, traced and counted
    /// into `metrics`.
    pub fn new(
        target: Target,
        signer: Signer,
        timeout: Duration,
        resolve_interval: Duration,
        metrics: &Metrics,
    ) -> Self {
        let balanced = Balanced::new(
            target,
            BalanceConfig {
                refresh: resolve_interval,
                ..BalanceConfig::new("productinfo", SERVICE_NAME)
            },
        );
        let token = ServiceToken::new(signer, vec!["productinfo".into()], TOKEN_TTL);
        // No compression: the messages are small and the network is local,
        // so gzip would cost CPU for nothing (servers still accept it).
        metrics.watch_balancer("productinfo", &balanced);
        let observed = Observed::new(
            balanced,
            "productinfo",
            metrics,
            Methods::from_descriptor_sets(&[shop_proto::FILE_DESCRIPTOR_SET]),
        );
        let client = ProductInfoClient::with_interceptor(observed, ServiceAuth::new(token));
        Catalog { client, timeout }
    }

    fn request<T>(&self, message: T, deadline: Deadline) -> Result<Request<T>, Error> {
        let mut request = Request::new(message);
        deadline
            .apply(&mut request, self.timeout)
            .map_err(Error::CatalogUnavailable)?;
        Ok(request)
    }

    /// Products by id and by exact name.
    pub async fn products(
        &self,
        ids: Vec<String>,
        names: Vec<String>,
        deadline: Deadline,
    ) -> Result<GetProductsResponse, Error> {
        let request = self.request(GetProductsRequest { ids, names }, deadline)?;
        self.client
            .clone()
            .get_products(request)
            .await
            .map(|r| r.into_inner())
            .map_err(classify)
    }

    /// Reserves `lines` (product → quantity) for `order_id`.
    pub async fn reserve(
        &self,
        order_id: Uuid,
        lines: &BTreeMap<Uuid, i64>,
        deadline: Deadline,
    ) -> Result<Reservation, Error> {
        let request = self.request(
            ReserveStockRequest {
                order_id: order_id.to_string(),
                lines: lines
                    .iter()
                    .map(|(id, quantity)| StockLine {
                        product_id: id.to_string(),
                        quantity: *quantity,
                    })
                    .collect(),
            },
            deadline,
        )?;
        self.client
            .clone()
            .reserve_stock(request)
            .await
            .map(|r| r.into_inner())
            .map_err(classify)
    }

    /// Gives `order_id`'s reservation back (idempotent).
    pub async fn release(&self, order_id: Uuid, deadline: Deadline) -> Result<Reservation, Error> {
        let request = self.request(
            ReleaseStockRequest {
                order_id: order_id.to_string(),
            },
            deadline,
        )?;
        self.client
            .clone()
            .release_stock(request)
            .await
            .map(|r| r.into_inner())
            .map_err(classify)
    }
}

/// Sorts the catalog's answers: a definite "no" the client should hear,
/// "could not reach it" (the call may or may not have happened), or a bug.
fn classify(status: Status) -> Error {
    match status.code() {
        Code::FailedPrecondition | Code::NotFound => Error::Refused(status),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Unknown => Error::CatalogUnavailable(status),
        Code::Unauthenticated | Code::PermissionDenied => {
            tracing::error!(
                message = status.message(),
                "the catalog refused this service's token: check its TRUSTED_ISSUERS and RESERVE_CALLERS"
            );
            Error::CatalogBroken(status)
        }
        _ => Error::CatalogBroken(status),
    }
}
