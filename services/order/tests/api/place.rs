//! Placing orders: prices from the catalog, stock reserved, nothing oversold,
//! retries that make one order.

use shop_proto::ecommerce::{Order, OrderLine, OrderStatus};
use shop_runtime::error::violated_fields as violations;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{Shop, order_of, order_of_lines};

#[tokio::test]
async fn an_order_is_priced_by_the_catalog_and_takes_its_stock() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 10).await;
    let tea = shop.add_product("Tea", 399, 5).await;

    let id = shop
        .customer()
        .add_order(Order {
            lines: vec![
                OrderLine {
                    product_id: mug.clone(),
                    quantity: 2,
                    // A client-sent price is ignored.
                    unit_price: Some(shop_proto::ecommerce::Money::from_minor("USD", 1)),
                    ..Default::default()
                },
                OrderLine {
                    product_id: tea.clone(),
                    quantity: 3,
                    ..Default::default()
                },
            ],
            price: 0.01,
            destination: "Berlin".into(),
            description: "birthday".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let order = shop
        .customer()
        .get_order(id.clone())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(order.id, id);
    assert_eq!(order.status, OrderStatus::Confirmed as i32);
    assert_eq!(order.customer, "customer-1");
    assert_eq!(
        order.total.as_ref().unwrap().to_minor(),
        Ok(2 * 1250 + 3 * 399)
    );
    assert!(
        (order.price - 36.97).abs() < 1e-3,
        "legacy total {}",
        order.price
    );
    let lines: Vec<_> = order
        .lines
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.quantity,
                l.unit_price.as_ref().unwrap().to_minor().unwrap(),
                l.line_total.as_ref().unwrap().to_minor().unwrap(),
            )
        })
        .collect();
    assert!(lines.contains(&("Mug", 2, 1250, 2500)));
    assert!(lines.contains(&("Tea", 3, 399, 1197)));
    assert_eq!(shop.stock(&mug).await, 8);
    assert_eq!(shop.stock(&tea).await, 2);
}

#[tokio::test]
async fn book_style_items_resolve_by_name_or_id() {
    let shop = Shop::start().await;
    let pixel = shop.add_product("Google Pixel 3A", 44900, 5).await;
    shop.add_product("Mac Book Pro", 229900, 5).await;

    let id = shop
        .customer()
        .add_order(Order {
            items: vec![
                pixel.clone(),
                "Mac Book Pro".into(),
                "Google Pixel 3A".into(),
            ],
            destination: "Mountain View, CA".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let order = shop.customer().get_order(id).await.unwrap().into_inner();

    assert_eq!(order.total.unwrap().to_minor(), Ok(2 * 44900 + 229900));
    assert_eq!(shop.stock(&pixel).await, 3, "two units of the same item");
    assert_eq!(
        order.items,
        [pixel.as_str(), "Mac Book Pro", "Google Pixel 3A"],
        "the items as sent, in their order, repeats kept"
    );
    let lines: Vec<(&str, i64)> = order
        .lines
        .iter()
        .map(|l| (l.name.as_str(), l.quantity))
        .collect();
    assert_eq!(
        lines,
        [
            ("Google Pixel 3A", 1),
            ("Mac Book Pro", 1),
            ("Google Pixel 3A", 1)
        ]
    );
}

#[tokio::test]
async fn unknown_products_and_bad_fields_are_invalid_and_nothing_is_stored() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;

    let unknown = shop
        .customer()
        .add_order(Order {
            items: vec!["Mug".into(), "Unicorn".into()],
            destination: "Home".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(violations(&unknown), ["items[1]"]);
    assert!(unknown.message().contains("Unicorn"));

    let bad = shop
        .customer()
        .add_order(order_of(&mug, 0, ""))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["destination", "lines[0].quantity"]);

    assert_eq!(shop.count("SELECT count(*) FROM orders").await, 0);
    assert_eq!(shop.stock(&mug).await, 10);
}

#[tokio::test]
async fn not_enough_stock_names_the_short_items_and_stores_nothing() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let tea = shop.add_product("Tea", 100, 1).await;

    let short = shop
        .customer()
        .add_order(order_of_lines(&[(&mug, 2), (&tea, 5)], "Home"))
        .await
        .unwrap_err();

    assert_eq!(short.code(), Code::FailedPrecondition);
    let subjects: Vec<_> = short
        .get_details_precondition_failure()
        .unwrap()
        .violations
        .into_iter()
        .map(|v| v.subject)
        .collect();
    assert_eq!(subjects, std::slice::from_ref(&tea));
    assert!(
        short.message().contains("5 requested, 1 available"),
        "{}",
        short.message()
    );
    assert_eq!(shop.count("SELECT count(*) FROM orders").await, 0);
    assert_eq!(
        shop.count("SELECT count(*) FROM reservation_intents").await,
        0
    );
    assert_eq!((shop.stock(&mug).await, shop.stock(&tea).await), (10, 1));
}

#[tokio::test]
async fn a_retried_order_with_the_same_key_is_placed_once() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let keyed = |quantity| Order {
        idempotency_key: "checkout-42".into(),
        ..order_of(&mug, quantity, "Home")
    };

    let first = shop
        .customer()
        .add_order(keyed(2))
        .await
        .unwrap()
        .into_inner();
    let retry = shop
        .customer()
        .add_order(keyed(2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retry);
    assert_eq!(shop.stock(&mug).await, 8, "stock taken once");

    let different = shop.customer().add_order(keyed(3)).await.unwrap_err();
    assert_eq!(different.code(), Code::FailedPrecondition);

    // Keys belong to one customer: another may use the same one.
    let theirs = shop
        .other_customer()
        .add_order(keyed(2))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(theirs, first);
    assert_eq!(shop.count("SELECT count(*) FROM orders").await, 2);

    // Concurrent retries of one key: still one order.
    let concurrent = (0..8).map(|_| {
        let mut client = shop.customer();
        let order = Order {
            idempotency_key: "checkout-43".into(),
            ..order_of(&mug, 1, "Home")
        };
        async move { client.add_order(order).await }
    });
    let results = futures::future::join_all(concurrent).await;
    let ids: std::collections::HashSet<String> = results
        .into_iter()
        .filter_map(|r| match r {
            Ok(id) => Some(id.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                None
            }
        })
        .collect();
    assert_eq!(ids.len(), 1, "every success names the same order");
    assert_eq!(
        shop.count("SELECT count(*) FROM orders WHERE idempotency_key = 'checkout-43'")
            .await,
        1
    );
    assert_eq!(
        shop.stock(&mug).await,
        10 - 2 - 2 - 1,
        "the losers reserved nothing"
    );
    assert_eq!(
        shop.count("SELECT count(*) FROM reservation_intents").await,
        0
    );
}

#[tokio::test]
async fn two_hundred_concurrent_orders_sell_exactly_the_fifty_in_stock() {
    let shop = Shop::start().await;
    let scarce = shop.add_product("Scarce", 1999, 50).await;

    let attempts = (0..200).map(|i| {
        let mut client = shop.customer();
        let order = order_of(&scarce, 1, &format!("Address {i}"));
        async move { client.add_order(order).await }
    });
    let results = futures::future::join_all(attempts).await;

    let confirmed = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        if let Err(status) = r {
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        }
    }
    assert_eq!(confirmed, 50);
    assert_eq!(shop.stock(&scarce).await, 0);
    assert_eq!(
        shop.count("SELECT count(*) FROM orders WHERE status = 'confirmed'")
            .await,
        50
    );
    assert_eq!(
        shop.count("SELECT COALESCE(sum(total_minor), 0)::bigint FROM orders")
            .await,
        50 * 1999,
        "totals exact"
    );
    let catalog_held: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(quantity), 0)::bigint FROM reservation_lines l \
         JOIN reservations r USING (order_id) WHERE r.state = 'held'",
    )
    .fetch_one(&shop.catalog_db().await)
    .await
    .unwrap();
    assert_eq!(catalog_held, 50, "one held reservation per confirmed order");
}

/// Sessions of `db`'s database waiting on a lock, running SQL that starts
/// with `sql`.
async fn lock_waiters(db: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND datname = current_database() AND query LIKE $1",
    )
    .bind(format!("{sql}%"))
    .fetch_one(db)
    .await
    .unwrap()
}

/// The two racers for a placement's intent row, by their statements.
const CONFIRM: &str = "DELETE FROM reservation_intents";
const SWEEP: &str = "UPDATE reservation_intents";

/// Which of the two racers reaches the placement's intent row first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum First {
    Confirm,
    AbandonedSweep,
}

/// Places an order of 3 mugs (of 10) and makes its confirmation and the
/// abandoned-placement sweep (abandoned after 3 s) queue on its intent row
/// in the order `first` says, then lets them go. Returns the shop, the
/// mug, and what the client was told.
async fn race_confirm_and_sweep(first: First) -> (Shop, String, Result<String, tonic::Status>) {
    use sqlx::Connection as _;
    let shop = Shop::start_with(1, |c| {
        c.service.abandoned_after = std::time::Duration::from_secs(3);
        c.service.release_interval = std::time::Duration::from_millis(50);
    })
    .await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let (catalog_db, order_db) = (shop.catalog_db().await, shop.order_db().await);
    let patience = std::time::Duration::from_secs(20);

    // The catalog's product row held: the reservation waits inside productinfo.
    let mut catalog_conn = sqlx::PgConnection::connect(&shop.productinfo[0].database_url)
        .await
        .unwrap();
    let mut lock = catalog_conn.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM products WHERE id = $1::uuid FOR UPDATE")
        .bind(&mug)
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut catalog_lock = Some(lock);
    async fn release(lock: &mut Option<sqlx::Transaction<'_, sqlx::Postgres>>) {
        if let Some(lock) = lock.take() {
            lock.commit().await.unwrap();
        }
    }
    let placing = {
        let mut customer = shop.customer();
        let order = order_of(&mug, 3, "Home");
        tokio::spawn(async move { customer.add_order(order).await.map(|r| r.into_inner()) })
    };
    shop_testkit::eventually("the reservation waits in the catalog", patience, || async {
        lock_waiters(&catalog_db, "SELECT").await == 1
    })
    .await;

    // The placement's intent row held: both racers will queue on it.
    let intent: uuid::Uuid =
        sqlx::query_scalar("SELECT order_id FROM reservation_intents WHERE state = 'reserving'")
            .fetch_one(&order_db)
            .await
            .unwrap();
    let mut order_conn = sqlx::PgConnection::connect(&shop.order.database_url)
        .await
        .unwrap();
    let mut intent_lock = order_conn.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM reservation_intents WHERE order_id = $1 FOR UPDATE")
        .bind(intent)
        .execute(&mut *intent_lock)
        .await
        .unwrap();

    let queued = |sql: &'static str| {
        let order_db = order_db.clone();
        move || {
            let order_db = order_db.clone();
            async move { lock_waiters(&order_db, sql).await == 1 }
        }
    };
    let (one, other) = match first {
        First::Confirm => {
            release(&mut catalog_lock).await;
            (CONFIRM, SWEEP)
        }
        First::AbandonedSweep => (SWEEP, CONFIRM),
    };
    shop_testkit::eventually(one, patience, queued(one)).await;
    assert_eq!(
        lock_waiters(&order_db, other).await,
        0,
        "{other} queued before {one}: the test lost control of the race"
    );
    release(&mut catalog_lock).await;
    shop_testkit::eventually(other, patience, queued(other)).await;
    intent_lock.commit().await.unwrap();
    let told = placing.await.unwrap();

    shop_testkit::eventually("the release outbox drains", patience, || async {
        shop.count("SELECT count(*) FROM reservation_intents").await == 0
    })
    .await;
    (shop, mug, told)
}

/// What the catalog holds for `order_id`: its reservation's state, if any.
async fn reservation_state(shop: &Shop, order_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT state FROM reservations WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(&shop.catalog_db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_placement_confirmed_before_the_sweep_keeps_its_reservation() {
    let (shop, mug, told) = race_confirm_and_sweep(First::Confirm).await;

    let id = told.expect("the order is confirmed");
    assert_eq!(shop.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(reservation_state(&shop, &id).await.as_deref(), Some("held"));
    assert_eq!(shop.stock(&mug).await, 7, "the 3 mugs stay reserved");
}

#[tokio::test]
async fn a_placement_the_sweep_abandons_first_cannot_confirm_and_is_released() {
    let (shop, mug, told) = race_confirm_and_sweep(First::AbandonedSweep).await;

    let status = told.expect_err("the placement is abandoned");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(shop.count("SELECT count(*) FROM orders").await, 0);
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE state = 'held'")
        .fetch_one(&shop.catalog_db().await)
        .await
        .unwrap();
    assert_eq!(held, 0, "no reservation is held without an order");
    assert_eq!(shop.stock(&mug).await, 10, "every mug is back");
}
