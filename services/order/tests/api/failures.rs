//! When the catalog is away or slow: clear errors, nothing half-done, and
//! replicas that come and go without failed calls.

use std::time::Duration;

use shop_testkit::{fake::RecordingCatalog, services};
use sqlx::Connection as _;
use tonic::Code;

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
        c.service.upstream.upstream_timeout = Duration::from_millis(500);
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

#[tokio::test]
async fn the_callers_deadline_bounds_every_call_to_the_catalog() {
    let (addr, catalog) = RecordingCatalog::spawn().await;
    let mut config = services::order_config(
        shop_testkit::fresh_database("order").await,
        &addr.to_string(),
    );
    config.service.upstream.upstream_timeout = Duration::from_secs(30);
    let order = services::order_with(config).await;
    let mut client =
        shop_proto::ecommerce::order_management_client::OrderManagementClient::with_interceptor(
            order.channel.clone(),
            shop_testkit::bearer(&shop_testkit::customer_token()),
        );
    let product = uuid::Uuid::now_v7().to_string();

    let mut hurried = tonic::Request::new(order_of(&product, 1, "Home"));
    hurried.set_timeout(Duration::from_millis(1500));
    client.add_order(hurried).await.unwrap();
    client
        .add_order(order_of(&product, 1, "Home"))
        .await
        .unwrap();

    let seen = catalog.seen();
    let methods: Vec<&str> = seen.iter().map(|(m, _)| m.as_str()).collect();
    // Lines by product id need no lookup: the reservation is the one call.
    assert_eq!(methods, ["reserveStock", "reserveStock"]);
    for (method, timeout) in &seen[..1] {
        let t = timeout.unwrap_or_else(|| panic!("{method} had no deadline"));
        assert!(
            t <= Duration::from_millis(1500),
            "{method}: {t:?} within the caller's 1.5 s"
        );
    }
    for (method, timeout) in &seen[1..] {
        let t = timeout.unwrap_or_else(|| panic!("{method} had no deadline"));
        assert!(
            t > Duration::from_secs(25) && t <= Duration::from_secs(30),
            "{method}: {t:?} is the configured default when the caller sets none"
        );
    }
}

#[tokio::test]
async fn orders_placed_during_the_drain_delay_are_served() {
    let drain_delay = Duration::from_secs(5);
    let shop = Shop::start_with(1, |c| c.server.drain_delay = drain_delay).await;
    let mug = shop.add_product("Mug", 100, 10).await;

    let Shop {
        productinfo, order, ..
    } = shop;
    shop_testkit::drain::served_while_draining(order, drain_delay, "/", |channel| async move {
        let mut client =
            shop_proto::ecommerce::order_management_client::OrderManagementClient::with_interceptor(
                channel,
                shop_testkit::bearer(&shop_testkit::customer_token()),
            );
        client.add_order(order_of(&mug, 2, "Home")).await?;
        Ok(())
    })
    .await;
    drop(productinfo);
}
