//! The storefront's clients of the catalog and the order service: typed
//! facades over the shop's one upstream client ([`Upstream`]), which
//! balances, sets deadlines, sorts failures and retries what is safe.
//!
//! Who the storefront is on each call:
//! - catalog reads: itself, with its own service token;
//! - everything done for a person (orders, admin changes to the catalog):
//!   that person, with a short-lived token the storefront signs for them,
//!   so the order service and the catalog check the person's own role.
//!
//! Every call takes the deadline of the request being served (a gRPC
//! caller's, or [`Deadline::NONE`] for a web page: the default timeout).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shop_proto::ecommerce::{
    AdjustStockRequest, CancelOrderRequest, CombinedShipment, GetProductsRequest,
    ListOrdersRequest, ListProductsRequest, ListProductsResponse, Order, Product, ProductId,
    order_management_client::OrderManagementClient,
    order_management_server::SERVICE_NAME as ORDER_SERVICE, product_info_client::ProductInfoClient,
    product_info_server::SERVICE_NAME as CATALOG_SERVICE,
};
use shop_runtime::{
    auth::{Role, Signer},
    balance::{Balanced, Target},
    deadline::Deadline,
    metrics::Metrics,
    telemetry::client::Observed,
    upstream::{Call, Caller, Peer, Upstream, found},
};
use tonic::{Streaming, metadata::AsciiMetadataValue};
use uuid::Uuid;

use crate::{accounts::User, error::Error};

/// How long tokens signed for people live; reused until half-life.
const USER_TOKEN_TTL: Duration = Duration::from_secs(600);

/// Calls that read or write many orders get this long (never past the
/// caller's own deadline).
const LONG_CALL: Duration = Duration::from_secs(10);

/// A live order page's stream ends after this long; the browser's
/// EventSource connects again by itself.
const WATCH_LIFETIME: Duration = Duration::from_secs(30 * 60);

const CATALOG: Peer = Peer {
    name: "productinfo",
    health_service: CATALOG_SERVICE,
    contract: &[shop_proto::reflection::PRODUCT_INFO],
};

const ORDERS: Peer = Peer {
    name: "order",
    health_service: ORDER_SERVICE,
    contract: &[shop_proto::reflection::ORDER_MANAGEMENT],
};

type Catalog = ProductInfoClient<Observed<Balanced>>;
type Orders = OrderManagementClient<Observed<Balanced>>;

/// The catalog and order clients.
#[derive(Clone)]
pub struct Upstreams {
    catalog: Upstream<Catalog>,
    orders: Upstream<Orders>,
    tokens: Arc<UserTokens>,
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
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("cannot sign a token")))?;
        let value: AsciiMetadataValue = format!("Bearer {token}").parse().map_err(|e| {
            Error::Internal(anyhow::Error::new(e).context("a token that is not ASCII"))
        })?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, (value.clone(), Instant::now() + USER_TOKEN_TTL / 2));
        Ok(value)
    }
}

impl Upstreams {
    /// Clients of the replicas at the given targets, calling as `caller`
    /// (whose key also signs people's tokens), recording into `metrics`.
    pub fn new(caller: &Caller, productinfo: Target, order: Target, metrics: &Metrics) -> Self {
        Self {
            catalog: Upstream::new(
                caller,
                CATALOG,
                productinfo,
                metrics,
                ProductInfoClient::new,
            ),
            orders: Upstream::new(caller, ORDERS, order, metrics, OrderManagementClient::new),
            tokens: Arc::new(UserTokens {
                signer: caller.signer().clone(),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether some order service replica is ready (its health says SERVING).
    pub fn ordering_available(&self) -> bool {
        self.orders.has_ready()
    }

    /// A call for `user`, with a token signed for them.
    fn as_user(&self, deadline: Deadline, user: &User) -> Result<Call, Error> {
        Ok(Call::within(deadline).on_behalf(self.tokens.bearer(user)?))
    }

    /// One page of the catalog.
    pub async fn list_products(
        &self,
        deadline: Deadline,
        query: &str,
        category: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ListProductsResponse, Error> {
        let request = ListProductsRequest {
            query: query.to_owned(),
            category: category.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
        };
        let call = Call::within(deadline).idempotent();
        let rpc = |mut c: Catalog, r| async move { c.list_products(r).await };
        Ok(self.catalog.call(call, request, rpc).await?)
    }

    /// One product; `None` when the catalog does not have it.
    pub async fn product(&self, deadline: Deadline, id: &str) -> Result<Option<Product>, Error> {
        let request = ProductId {
            value: id.to_owned(),
        };
        let call = Call::within(deadline).idempotent();
        let rpc = |mut c: Catalog, r| async move { c.get_product(r).await };
        Ok(found(self.catalog.call(call, request, rpc).await)?)
    }

    /// Products by id, in one call; missing ones are simply absent.
    pub async fn products(
        &self,
        deadline: Deadline,
        ids: Vec<String>,
    ) -> Result<Vec<Product>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = GetProductsRequest { ids, names: vec![] };
        let call = Call::within(deadline).idempotent();
        let rpc = |mut c: Catalog, r| async move { c.get_products(r).await };
        Ok(self.catalog.call(call, request, rpc).await?.products)
    }

    /// Adds a product, as `admin`.
    pub async fn add_product(
        &self,
        deadline: Deadline,
        admin: &User,
        product: Product,
    ) -> Result<String, Error> {
        let call = self.as_user(deadline, admin)?;
        let rpc = |mut c: Catalog, r| async move { c.add_product(r).await };
        Ok(self.catalog.call(call, product, rpc).await?.value)
    }

    /// Adjusts stock, as `admin`.
    pub async fn adjust_stock(
        &self,
        deadline: Deadline,
        admin: &User,
        product_id: &str,
        delta: i64,
        reason: &str,
    ) -> Result<Product, Error> {
        let request = AdjustStockRequest {
            product_id: product_id.to_owned(),
            delta,
            reason: reason.to_owned(),
        };
        let call = self.as_user(deadline, admin)?;
        let rpc = |mut c: Catalog, r| async move { c.adjust_stock(r).await };
        Ok(self.catalog.call(call, request, rpc).await?)
    }

    /// Places an order for `user`; returns its id. The order carries an
    /// idempotency key, so sending it twice places it once.
    pub async fn add_order(
        &self,
        deadline: Deadline,
        user: &User,
        order: Order,
    ) -> Result<String, Error> {
        let call = self.as_user(deadline, user)?;
        let call = if order.idempotency_key.is_empty() {
            call
        } else {
            call.idempotent()
        };
        let rpc = |mut c: Orders, r| async move { c.add_order(r).await };
        Ok(self.orders.call(call, order, rpc).await?)
    }

    /// One of `user`'s orders (any order for an admin).
    pub async fn order(
        &self,
        deadline: Deadline,
        user: &User,
        id: &str,
    ) -> Result<Option<Order>, Error> {
        let call = self.as_user(deadline, user)?.idempotent();
        let rpc = |mut c: Orders, r| async move { c.get_order(r).await };
        Ok(found(self.orders.call(call, id.to_owned(), rpc).await)?)
    }

    /// One page (`size` orders) of `user`'s orders (everyone's for an
    /// admin) matching `query`, newest first, from `page` (a token, empty
    /// for the first page); and the token of the next, older page (empty
    /// when none). A page costs the same however many orders there are.
    pub async fn orders(
        &self,
        deadline: Deadline,
        user: &User,
        query: &str,
        page: &str,
        size: i32,
    ) -> Result<(Vec<Order>, String), Error> {
        let call = self.as_user(deadline, user)?.idempotent();
        let request = ListOrdersRequest {
            query: query.to_owned(),
            page_size: size,
            page_token: page.to_owned(),
        };
        let rpc = |mut c: Orders, r| async move { c.list_orders(r).await };
        let page = self.orders.call(call, request, rpc).await?;
        Ok((page.orders, page.next_page_token))
    }

    /// A live stream of one order's changes, for `user`: it lasts until the
    /// order is final, the page goes away, or [`WATCH_LIFETIME`] passes.
    pub async fn watch_order(&self, user: &User, id: &str) -> Result<Streaming<Order>, Error> {
        let call = self
            .as_user(Deadline::NONE, user)?
            .idempotent()
            .timeout(WATCH_LIFETIME);
        let rpc = |mut c: Orders, r| async move { c.watch_order(r).await };
        Ok(self.orders.call(call, id.to_owned(), rpc).await?)
    }

    /// Cancels one of `user`'s orders (cancelling twice changes nothing).
    pub async fn cancel_order(
        &self,
        deadline: Deadline,
        user: &User,
        id: &str,
    ) -> Result<Order, Error> {
        let request = CancelOrderRequest {
            order_id: id.to_owned(),
            reason: "cancelled in the web shop".into(),
        };
        let call = self.as_user(deadline, user)?.idempotent();
        let rpc = |mut c: Orders, r| async move { c.cancel_order(r).await };
        Ok(self.orders.call(call, request, rpc).await?)
    }

    /// Ships `ids`, as `admin`: every shipment and rejection the order
    /// service sends back.
    pub async fn process_orders(
        &self,
        deadline: Deadline,
        admin: &User,
        ids: Vec<String>,
    ) -> Result<Vec<CombinedShipment>, Error> {
        let call = self.as_user(deadline, admin)?.timeout(LONG_CALL);
        let rpc = |mut c: Orders, r| async move { c.process_orders(r).await };
        let mut stream = self
            .orders
            .call(call, futures::stream::iter(ids), rpc)
            .await?;
        let mut shipments = Vec::new();
        while let Some(s) = self.orders.next(&mut stream).await? {
            shipments.push(s);
        }
        Ok(shipments)
    }
}
