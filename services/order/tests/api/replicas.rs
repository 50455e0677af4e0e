//! Two order replicas on one database, as the chart and `make up` run
//! them: a watch on one sees what the other changes (LISTEN/NOTIFY), and
//! both release sweeps run without releasing anything twice.

use shop_proto::ecommerce::{
    CancelOrderRequest, OrderStatus, ReserveStockRequest, StockLine,
    product_info_client::ProductInfoClient,
};
use shop_testkit::{eventually, order_service_token};
use std::time::Duration;

use crate::helpers::{Shop, customer_token, order_of};

#[tokio::test]
async fn a_watch_on_one_replica_sees_a_change_made_through_the_other() {
    let shop = Shop::start().await;
    let other = shop.another_order().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let id = shop.place(order_of(&mug, 1, "Home")).await;

    let mut watch = shop
        .orders_at(&other, &customer_token())
        .watch_order(id.clone())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, OrderStatus::Confirmed as i32);

    // Cancelled through the first replica...
    shop.customer()
        .cancel_order(CancelOrderRequest {
            order_id: id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    // ...seen by the stream on the second, which then ends (final status).
    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the change reaches the other replica's watch")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, OrderStatus::Cancelled as i32);
    assert!(watch.message().await.unwrap().is_none());
}

/// Abandoned placements (a replica died between reserving and storing the
/// order) left for both replicas' sweeps at once: each reservation is
/// released exactly once, by one replica or the other.
#[tokio::test]
async fn both_replicas_sweep_and_each_reservation_is_released_once() {
    const ORDERS: usize = 40;
    let shop = Shop::start_with(2, |c| {
        c.service.release_interval = Duration::from_millis(20);
    })
    .await;
    let other = shop.another_order().await;
    let lamp = shop.add_product("Lamp", 100, 1000).await;

    // Reservations made as the order service makes them...
    let mut catalog = ProductInfoClient::with_interceptor(
        shop.productinfo[0].channel.clone(),
        shop_testkit::bearer(&order_service_token()),
    );
    let ids: Vec<uuid::Uuid> = (0..ORDERS).map(|_| uuid::Uuid::new_v4()).collect();
    for id in &ids {
        catalog
            .reserve_stock(ReserveStockRequest {
                order_id: id.to_string(),
                lines: vec![StockLine {
                    product_id: lamp.clone(),
                    quantity: 2,
                }],
            })
            .await
            .unwrap();
    }
    assert_eq!(shop.stock(&lamp).await, 1000 - 2 * ORDERS as i64);
    // ...whose placements were abandoned an hour ago, all found at once.
    let db = shop.order_db().await;
    sqlx::query(
        "INSERT INTO reservation_intents (order_id, customer, state, created_at) \
         SELECT id, 'customer-1', 'reserving', now() - interval '1 hour' FROM unnest($1::uuid[]) id",
    )
    .bind(&ids)
    .execute(&db)
    .await
    .unwrap();

    eventually(
        "every reservation is released",
        Duration::from_secs(60),
        || async { shop.count("SELECT count(*) FROM reservation_intents").await == 0 },
    )
    .await;
    assert_eq!(shop.stock(&lamp).await, 1000, "all stock back, once");
    // Each release was sent once, from one replica or the other.
    let sent = |addr| async move {
        shop_testkit::metric(
            addr,
            "grpc_client_handled_total{grpc_method=\"releaseStock\",grpc_code=\"OK\"}",
        )
        .await
    };
    let (first, second) = (
        sent(shop.order.metrics_addr).await,
        sent(other.metrics_addr).await,
    );
    assert_eq!(
        first + second,
        ORDERS as f64,
        "releases sent: {first} by one replica, {second} by the other"
    );
    let received: f64 = {
        let mut total = 0.0;
        for replica in &shop.productinfo {
            total += shop_testkit::metric(
                replica.metrics_addr,
                "grpc_server_handled_total{grpc_method=\"releaseStock\"}",
            )
            .await;
        }
        total
    };
    assert_eq!(
        received, ORDERS as f64,
        "the catalog was asked once per order"
    );
}
