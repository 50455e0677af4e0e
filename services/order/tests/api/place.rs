//! Placing orders: prices from the catalog, stock reserved, nothing oversold,
//! retries that make one order.

use shop_proto::ecommerce::{Order, OrderLine, OrderStatus};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{Shop, order_of};

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

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
    assert_eq!(order.items.len(), 2, "one entry per product");
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
        .add_order(Order {
            lines: vec![
                OrderLine {
                    product_id: mug.clone(),
                    quantity: 2,
                    ..Default::default()
                },
                OrderLine {
                    product_id: tea.clone(),
                    quantity: 5,
                    ..Default::default()
                },
            ],
            destination: "Home".into(),
            ..Default::default()
        })
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
