//! When the catalog is away or slow: clear errors, nothing half-done, and
//! replicas that come and go without failed calls.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use shop_proto::ecommerce::{
    AdjustStockRequest, GetProductsRequest, GetProductsResponse, ListProductsRequest,
    ListProductsResponse, Money, Product, ProductId, ReleaseStockRequest, Reservation,
    ReservationState, ReserveStockRequest, ReservedLine, SearchProductsRequest,
    product_info_server::{ProductInfo, ProductInfoServer},
};
use shop_runtime::health::Serving as ServingStatus;
use shop_testkit::services;
use sqlx::Connection as _;
use tonic::{Code, Status};

use crate::helpers::{Shop, order_of};

#[tokio::test]
async fn with_the_catalog_unreachable_orders_fail_unavailable_and_nothing_is_stored() {
    let mut shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    for replica in shop.productinfo.drain(..) {
        replica.stop().await.unwrap();
    }

    let down = shop
        .customer()
        .add_order(order_of(&mug, 1, "Home"))
        .await
        .unwrap_err();

    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(
        down.message().contains("nothing was ordered"),
        "{}",
        down.message()
    );
    assert_eq!(shop.count("SELECT count(*) FROM orders").await, 0);
    assert_eq!(
        shop.count("SELECT count(*) FROM reservation_intents").await,
        0
    );
}

#[tokio::test]
async fn a_reservation_that_times_out_is_released_and_nothing_is_stored() {
    let shop = Shop::start_with(1, |c| {
        c.upstream.upstream_timeout = Duration::from_millis(500);
    })
    .await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let product: uuid::Uuid = mug.parse().unwrap();

    // Hold the product row in the catalog: the reservation waits and the
    // order service's deadline passes while the catalog may be mid-way.
    let mut blocker = sqlx::PgConnection::connect(&shop.productinfo[0].database_url)
        .await
        .unwrap();
    let mut lock = blocker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM products WHERE id = $1 FOR UPDATE")
        .bind(product)
        .execute(&mut *lock)
        .await
        .unwrap();

    let slow = shop
        .customer()
        .add_order(order_of(&mug, 3, "Home"))
        .await
        .unwrap_err();
    assert_eq!(slow.code(), Code::Unavailable, "{slow:?}");
    lock.rollback().await.unwrap();

    assert_eq!(shop.count("SELECT count(*) FROM orders").await, 0);
    // The release is confirmed by the catalog (now or by the retry task).
    tokio::time::timeout(Duration::from_secs(20), async {
        while shop.count("SELECT count(*) FROM reservation_intents").await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the uncertain reservation is released");
    assert_eq!(shop.stock(&mug).await, 10, "no stock left reserved");
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE state = 'held'")
        .fetch_one(&shop.catalog_db().await)
        .await
        .unwrap();
    assert_eq!(held, 0);

    // And the shop carries on.
    shop.customer()
        .add_order(order_of(&mug, 3, "Home"))
        .await
        .unwrap();
    assert_eq!(shop.stock(&mug).await, 7);
}

#[tokio::test]
async fn orders_keep_flowing_while_a_catalog_replica_shuts_down() {
    let mut shop = Shop::start_with(3, |_| {}).await;
    let mug = shop.add_product("Mug", 100, 1000).await;

    for i in 0..30 {
        shop.customer()
            .add_order(order_of(&mug, 1, &format!("before {i}")))
            .await
            .unwrap();
    }
    let leaving = shop.productinfo.remove(1);
    leaving.stop().await.unwrap();
    for i in 0..60 {
        shop.customer()
            .add_order(order_of(&mug, 1, &format!("after {i}")))
            .await
            .unwrap_or_else(|e| panic!("order {i} after the replica left: {e:?}"));
    }
    assert_eq!(shop.stock(&mug).await, 1000 - 90);
}

/// Each call's method and the deadline it came with.
type Seen = Vec<(String, Option<Duration>)>;

/// A stand-in catalog that records the deadline of each call it gets.
#[derive(Clone, Default)]
struct RecordingCatalog {
    timeouts: Arc<Mutex<Seen>>,
}

impl RecordingCatalog {
    fn record<T>(&self, method: &str, request: &tonic::Request<T>) {
        let timeout = shop_runtime::deadline::grpc_timeout(request.metadata().as_ref());
        self.timeouts
            .lock()
            .unwrap()
            .push((method.to_owned(), timeout));
    }
}

#[tonic::async_trait]
impl ProductInfo for RecordingCatalog {
    async fn add_product(
        &self,
        _: tonic::Request<Product>,
    ) -> Result<tonic::Response<ProductId>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn get_product(
        &self,
        _: tonic::Request<ProductId>,
    ) -> Result<tonic::Response<Product>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn get_products(
        &self,
        request: tonic::Request<GetProductsRequest>,
    ) -> Result<tonic::Response<GetProductsResponse>, Status> {
        self.record("getProducts", &request);
        let products = request
            .into_inner()
            .ids
            .into_iter()
            .map(|id| Product {
                id,
                name: "Mug".into(),
                unit_price: Some(Money::from_minor("USD", 100)),
                ..Default::default()
            })
            .collect();
        Ok(tonic::Response::new(GetProductsResponse {
            products,
            missing: vec![],
        }))
    }
    async fn list_products(
        &self,
        _: tonic::Request<ListProductsRequest>,
    ) -> Result<tonic::Response<ListProductsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    type searchProductsStream = futures::stream::Empty<Result<Product, Status>>;
    async fn search_products(
        &self,
        _: tonic::Request<SearchProductsRequest>,
    ) -> Result<tonic::Response<Self::searchProductsStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn adjust_stock(
        &self,
        _: tonic::Request<AdjustStockRequest>,
    ) -> Result<tonic::Response<Product>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn reserve_stock(
        &self,
        request: tonic::Request<ReserveStockRequest>,
    ) -> Result<tonic::Response<Reservation>, Status> {
        self.record("reserveStock", &request);
        let request = request.into_inner();
        Ok(tonic::Response::new(Reservation {
            order_id: request.order_id,
            state: ReservationState::Held as i32,
            lines: request
                .lines
                .into_iter()
                .map(|l| ReservedLine {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    unit_price: Some(Money::from_minor("USD", 100)),
                    name: "Mug".into(),
                })
                .collect(),
            create_time: None,
        }))
    }
    async fn release_stock(
        &self,
        request: tonic::Request<ReleaseStockRequest>,
    ) -> Result<tonic::Response<Reservation>, Status> {
        self.record("releaseStock", &request);
        Ok(tonic::Response::new(Reservation::default()))
    }
}

#[tokio::test]
async fn the_callers_deadline_bounds_every_call_to_the_catalog() {
    let catalog = RecordingCatalog::default();
    let server =
        shop_runtime::server::Server::new("fake-catalog", &[shop_proto::FILE_DESCRIPTOR_SET]);
    server.health.set("", ServingStatus::Serving);
    server
        .health
        .set("ecommerce.ProductInfo", ServingStatus::Serving);
    let routes = server
        .routes(tonic::service::Routes::new(ProductInfoServer::new(
            catalog.clone(),
        )))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(
        listener,
        routes,
        shop_runtime::server::ServeOptions {
            drain_delay: Duration::ZERO,
            grace: Duration::from_secs(1),
            metrics_addr: None,
            addr_file: None,
        },
        futures::future::pending(),
    ));
    let mut config = services::order_config(
        shop_testkit::fresh_database("order").await,
        &addr.to_string(),
    );
    config.upstream.upstream_timeout = Duration::from_secs(30);
    let order = services::order_with(config).await;
    let mut client =
        shop_proto::ecommerce::order_management_client::OrderManagementClient::with_interceptor(
            order.channel.clone(),
            shop_testkit::Bearer::new(&shop_testkit::customer_token()),
        );
    let product = uuid::Uuid::now_v7().to_string();

    let mut hurried = tonic::Request::new(order_of(&product, 1, "Home"));
    hurried.set_timeout(Duration::from_millis(1500));
    client.add_order(hurried).await.unwrap();
    client
        .add_order(order_of(&product, 1, "Home"))
        .await
        .unwrap();

    let seen = catalog.timeouts.lock().unwrap().clone();
    let methods: Vec<&str> = seen.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        methods,
        ["getProducts", "reserveStock", "getProducts", "reserveStock"]
    );
    for (method, timeout) in &seen[..2] {
        let t = timeout.unwrap_or_else(|| panic!("{method} had no deadline"));
        assert!(
            t <= Duration::from_millis(1500),
            "{method}: {t:?} within the caller's 1.5 s"
        );
    }
    for (method, timeout) in &seen[2..] {
        let t = timeout.unwrap_or_else(|| panic!("{method} had no deadline"));
        assert!(
            t > Duration::from_secs(25) && t <= Duration::from_secs(30),
            "{method}: {t:?} is the configured default when the caller sets none"
        );
    }
}
