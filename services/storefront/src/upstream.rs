//! The storefront's clients of the catalog and the order service, built once
//! at start-up over [`Balanced`] channels (round-robin over every ready
//! replica).
//!
//! Who the storefront is on each call:
//! - catalog reads: itself, with its own service token;
//! - everything done for a person (orders, admin changes to the catalog):
//!   that person, with a short-lived token the storefront signs for them,
//!   so the order service and the catalog check the person's own role.
//!
//! Every call has a deadline ([`Upstreams::timeout`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shop_proto::ecommerce::{
    AdjustStockRequest, CancelOrderRequest, CombinedShipment, GetProductsRequest,
    ListProductsRequest, ListProductsResponse, Order, Product, ProductId,
    order_management_client::OrderManagementClient,
    order_management_server::SERVICE_NAME as ORDER_SERVICE, product_info_client::ProductInfoClient,
    product_info_server::SERVICE_NAME as CATALOG_SERVICE,
};
use shop_runtime::{
    auth::{Role, ServiceAuth, ServiceToken, Signer},
    balance::{BalanceConfig, Balanced},
    metrics::Metrics,
    telemetry::{Methods, client::Observed},
};
use tonic::{
    Request, Status, Streaming, metadata::AsciiMetadataValue,
    service::interceptor::InterceptedService,
};
use uuid::Uuid;

use crate::{accounts::User, config::UpstreamArgs, error::Error};

/// How long tokens signed for people live; reused until half-life.
const USER_TOKEN_TTL: Duration = Duration::from_secs(600);
const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(600);

/// The catalog and order clients.
#[derive(Clone)]
pub struct Upstreams {
    order_channel: Balanced,
    catalog: ProductInfoClient<InterceptedService<Observed<Balanced>, ServiceAuth>>,
    catalog_as_user: ProductInfoClient<Observed<Balanced>>,
    orders: OrderManagementClient<Observed<Balanced>>,
    tokens: Arc<UserTokens>,
    timeout: Duration,
}

/// Tokens the storefront signs for people, cached per user and role.
struct UserTokens {
    signer: Signer,
    cache: Mutex<HashMap<(Uuid, Role), (AsciiMetadataValue, Instant)>>,
}

impl UserTokens {
    fn bearer(&self, user: &User) -> Result<AsciiMetadataValue, Error> {
        let key = (user.id, user.role);
        if let Some((value, refresh_at)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && Instant::now() < *refresh_at
        {
            return Ok(value.clone());
        }
        let token = self
            .signer
            .sign(
                &user.id.to_string(),
                user.role,
                &["order", "productinfo"],
                USER_TOKEN_TTL,
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
        let value: AsciiMetadataValue = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::Internal("token is not ASCII".into()))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, (value.clone(), Instant::now() + USER_TOKEN_TTL / 2));
        Ok(value)
    }
}

fn catalog_error(status: Status) -> Error {
    Error::Upstream {
        service: "productinfo",
        status,
    }
}

fn order_error(status: Status) -> Error {
    Error::Upstream {
        service: "order",
        status,
    }
}

/// An upstream's answer, `None` when it has no such thing (not found, or an
/// id it cannot parse), other failures through `error`.
fn found<T>(
    answer: Result<tonic::Response<T>, Status>,
    error: fn(Status) -> Error,
) -> Result<Option<T>, Error> {
    match answer {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::NotFound | tonic::Code::InvalidArgument
            ) =>
        {
            Ok(None)
        }
        Err(status) => Err(error(status)),
    }
}

impl Upstreams {
    /// Clients for the configured targets, signing as the storefront, traced
    /// and counted into `metrics`.
    pub fn new(args: &UpstreamArgs, metrics: &Metrics) -> anyhow::Result<Self> {
        let catalog_channel = Balanced::new(
            args.productinfo_target.clone(),
            BalanceConfig {
                refresh: args.resolve_interval,
                ..BalanceConfig::new("productinfo", CATALOG_SERVICE)
            },
        );
        let order_channel = Balanced::new(
            args.order_target.clone(),
            BalanceConfig {
                refresh: args.resolve_interval,
                ..BalanceConfig::new("order", ORDER_SERVICE)
            },
        );
        metrics.watch_balancer("productinfo", &catalog_channel);
        metrics.watch_balancer("order", &order_channel);
        let methods = Methods::from_descriptor_sets(&[shop_proto::FILE_DESCRIPTOR_SET]);
        let catalog_observed =
            Observed::new(catalog_channel, "productinfo", metrics, methods.clone());
        let order_observed = Observed::new(order_channel.clone(), "order", metrics, methods);
        let signer = Signer::from_file(args.token_issuer.clone(), &args.signing_key_file)?;
        let service_token = ServiceToken::new(
            signer.clone(),
            vec!["productinfo".into()],
            SERVICE_TOKEN_TTL,
        );
        Ok(Self {
            catalog: ProductInfoClient::with_interceptor(
                catalog_observed.clone(),
                ServiceAuth::new(service_token),
            ),
            catalog_as_user: ProductInfoClient::new(catalog_observed),
            orders: OrderManagementClient::new(order_observed),
            order_channel,
            tokens: Arc::new(UserTokens {
                signer,
                cache: Mutex::new(HashMap::new()),
            }),
            timeout: args.upstream_timeout,
        })
    }

    /// Whether some order service replica is ready (its health says SERVING).
    pub fn ordering_available(&self) -> bool {
        self.order_channel.has_ready()
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    fn request_as<T>(&self, user: &User, message: T) -> Result<Request<T>, Error> {
        self.authorized(user, self.request(message))
    }

    /// `request` carrying a token signed for `user`.
    fn authorized<T>(&self, user: &User, mut request: Request<T>) -> Result<Request<T>, Error> {
        request
            .metadata_mut()
            .insert("authorization", self.tokens.bearer(user)?);
        Ok(request)
    }

    /// One page of the catalog.
    pub async fn list_products(
        &self,
        query: &str,
        category: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ListProductsResponse, Error> {
        let request = self.request(ListProductsRequest {
            query: query.to_owned(),
            category: category.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
        });
        self.catalog
            .clone()
            .list_products(request)
            .await
            .map(|r| r.into_inner())
            .map_err(catalog_error)
    }

    /// One product; `None` when the catalog does not have it.
    pub async fn product(&self, id: &str) -> Result<Option<Product>, Error> {
        let request = self.request(ProductId {
            value: id.to_owned(),
        });
        found(
            self.catalog.clone().get_product(request).await,
            catalog_error,
        )
    }

    /// Products by id, in one call; missing ones are simply absent.
    pub async fn products(&self, ids: Vec<String>) -> Result<Vec<Product>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = self.request(GetProductsRequest { ids, names: vec![] });
        self.catalog
            .clone()
            .get_products(request)
            .await
            .map(|r| r.into_inner().products)
            .map_err(catalog_error)
    }

    /// Adds a product, as `admin`.
    pub async fn add_product(&self, admin: &User, product: Product) -> Result<String, Error> {
        let request = self.request_as(admin, product)?;
        self.catalog_as_user
            .clone()
            .add_product(request)
            .await
            .map(|r| r.into_inner().value)
            .map_err(catalog_error)
    }

    /// Adjusts stock, as `admin`.
    pub async fn adjust_stock(
        &self,
        admin: &User,
        product_id: &str,
        delta: i64,
        reason: &str,
    ) -> Result<Product, Error> {
        let request = self.request_as(
            admin,
            AdjustStockRequest {
                product_id: product_id.to_owned(),
                delta,
                reason: reason.to_owned(),
            },
        )?;
        self.catalog_as_user
            .clone()
            .adjust_stock(request)
            .await
            .map(|r| r.into_inner())
            .map_err(catalog_error)
    }

    /// Places an order for `user`; returns its id.
    pub async fn add_order(&self, user: &User, order: Order) -> Result<String, Error> {
        let request = self.request_as(user, order)?;
        self.orders
            .clone()
            .add_order(request)
            .await
            .map(|r| r.into_inner())
            .map_err(order_error)
    }

    /// One of `user`'s orders (any order for an admin).
    pub async fn order(&self, user: &User, id: &str) -> Result<Option<Order>, Error> {
        let request = self.request_as(user, id.to_owned())?;
        found(self.orders.clone().get_order(request).await, order_error)
    }

    /// Up to `limit` of `user`'s orders (everyone's for an admin) matching
    /// `query`, newest first. The stream is read to the end but only the
    /// newest `limit` are kept, so memory stays bounded.
    pub async fn orders(
        &self,
        user: &User,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Order>, Error> {
        let mut request = self.request_as(user, query.to_owned())?;
        request.set_timeout(self.timeout * 5);
        let mut stream = self
            .orders
            .clone()
            .search_orders(request)
            .await
            .map_err(order_error)?
            .into_inner();
        let mut newest = std::collections::VecDeque::with_capacity(limit + 1);
        while let Some(order) = stream.message().await.map_err(order_error)? {
            newest.push_back(order);
            if newest.len() > limit {
                newest.pop_front();
            }
        }
        Ok(newest.into_iter().rev().collect())
    }

    /// A live stream of one order's changes, for `user`. No deadline: it
    /// lasts until the order is final or the page goes away.
    pub async fn watch_order(&self, user: &User, id: &str) -> Result<Streaming<Order>, Error> {
        let request = self.authorized(user, Request::new(id.to_owned()))?;
        self.orders
            .clone()
            .watch_order(request)
            .await
            .map(|r| r.into_inner())
            .map_err(order_error)
    }

    /// Cancels one of `user`'s orders.
    pub async fn cancel_order(&self, user: &User, id: &str) -> Result<Order, Error> {
        let request = self.request_as(
            user,
            CancelOrderRequest {
                order_id: id.to_owned(),
                reason: "cancelled in the web shop".into(),
            },
        )?;
        self.orders
            .clone()
            .cancel_order(request)
            .await
            .map(|r| r.into_inner())
            .map_err(order_error)
    }

    /// Ships `ids`, as `admin`: every shipment and rejection the order
    /// service sends back.
    pub async fn process_orders(
        &self,
        admin: &User,
        ids: Vec<String>,
    ) -> Result<Vec<CombinedShipment>, Error> {
        let mut request = self.request_as(admin, futures::stream::iter(ids))?;
        request.set_timeout(self.timeout * 5);
        let mut stream = self
            .orders
            .clone()
            .process_orders(request)
            .await
            .map_err(order_error)?
            .into_inner();
        let mut shipments = Vec::new();
        while let Some(s) = stream.message().await.map_err(order_error)? {
            shipments.push(s);
        }
        Ok(shipments)
    }
}
