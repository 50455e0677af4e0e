//! The streaming calls: search (server streaming), update (client
//! streaming) and process (bidirectional).

use std::time::Duration;

use futures::StreamExt as _;
use prost::Message as _;
use shop_proto::ecommerce::{Order, OrderStatus, UpdateOrdersResult};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::helpers::{Shop, order_of};

#[tokio::test]
async fn search_matches_items_and_addresses_within_what_the_caller_may_see() {
    let shop = Shop::start().await;
    let pixel = shop.add_product("Google Pixel 3A", 100, 10).await;
    let mac = shop.add_product("Mac Book Pro", 100, 10).await;
    let mine_pixel = shop.place(order_of(&pixel, 1, "San Jose")).await;
    let mine_mac = shop.place(order_of(&mac, 1, "Mountain View")).await;
    let theirs = shop
        .other_customer()
        .add_order(order_of(&pixel, 1, "Seattle"))
        .await
        .unwrap()
        .into_inner();

    let search = |client: crate::helpers::OrderClient, query: &str| {
        let query = query.to_owned();
        let mut client = client;
        async move {
            client
                .search_orders(query)
                .await
                .unwrap()
                .into_inner()
                .map(|o| o.unwrap().id)
                .collect::<Vec<_>>()
                .await
        }
    };
    assert_eq!(
        search(shop.customer(), "google").await,
        std::slice::from_ref(&mine_pixel)
    );
    assert_eq!(
        search(shop.customer(), "").await,
        [mine_pixel.clone(), mine_mac.clone()]
    );
    assert_eq!(search(shop.customer(), "view").await, [mine_mac]);
    assert_eq!(search(shop.admin(), "Google").await, [mine_pixel, theirs]);
    assert!(search(shop.customer(), "%").await.is_empty());
}

#[tokio::test]
async fn search_streams_a_hundred_thousand_orders_in_batches() {
    let shop = Shop::start().await;
    let db = shop.order_db().await;
    sqlx::query(
        "INSERT INTO orders (id, customer, fingerprint, status, destination, currency, total_minor, created_at) \
         SELECT gen_random_uuid(), 'bulk', 'f', 'confirmed', 'Warehouse ' || i, 'USD', 100, \
                now() - make_interval(secs => 200000 - i) \
         FROM generate_series(1, 100000) AS i",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO order_lines (order_id, line_no, product_id, name, quantity, unit_price_minor) \
         SELECT id, 1, gen_random_uuid(), 'Bulk item', 1, 100 FROM orders",
    )
    .execute(&db)
    .await
    .unwrap();

    let mut stream = search_all(&shop).await;
    let mut count = 0;
    let mut last = String::new();
    while let Some(order) = stream.message().await.unwrap() {
        assert!(
            order.destination > last || count == 0 || order.destination.len() > last.len(),
            "oldest first"
        );
        assert_eq!(order.lines.len(), 1, "lines come with every order");
        last = order.destination;
        count += 1;
    }
    assert_eq!(count, 100_000);
}

#[tokio::test]
async fn a_client_that_cancels_a_search_stops_it() {
    let shop = Shop::start().await;
    let db = shop.order_db().await;
    sqlx::query(
        "INSERT INTO orders (id, customer, fingerprint, status, destination, currency, total_minor) \
         SELECT gen_random_uuid(), 'bulk', 'f', 'confirmed', 'W', 'USD', 1 FROM generate_series(1, 5000)",
    )
    .execute(&db)
    .await
    .unwrap();
    let reads_before: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(seq_scan + idx_scan), 0)::bigint FROM pg_stat_user_tables WHERE relname = 'orders'",
    )
    .fetch_one(&db)
    .await
    .unwrap();

    let mut stream = search_all(&shop).await;
    for _ in 0..10 {
        stream.message().await.unwrap().unwrap();
    }
    drop(stream);
    // Give the server every chance to (wrongly) keep reading, then check it
    // read only a few batches of the 20 the full result would take.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads_after: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(seq_scan + idx_scan), 0)::bigint FROM pg_stat_user_tables WHERE relname = 'orders'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        reads_after - reads_before <= 4,
        "{} scans of orders for a cancelled search",
        reads_after - reads_before
    );
}

#[tokio::test]
async fn update_orders_applies_each_update_alone_and_reports_every_outcome() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let a = shop.place(order_of(&mug, 1, "Old A")).await;
    let b = shop.place(order_of(&mug, 1, "Old B")).await;
    let c = shop.place(order_of(&mug, 2, "Old C")).await;
    // An update may send the whole order back, as read: same items, no change.
    let echoed = Order {
        destination: "New C".into(),
        description: "gift wrap".into(),
        ..shop
            .admin()
            .get_order(c.clone())
            .await
            .unwrap()
            .into_inner()
    };
    let ghost = uuid::Uuid::now_v7().to_string();
    let update = |id: &str, destination: &str| Order {
        id: id.into(),
        destination: destination.into(),
        ..Default::default()
    };

    let response = shop
        .admin()
        .update_orders(futures::stream::iter(vec![
            update(&a, "New A"),
            update(&ghost, "Nowhere"),
            Order {
                items: vec!["Something else".into()],
                ..update(&b, "New B")
            },
            update("not-an-id", "x"),
            echoed,
        ]))
        .await
        .unwrap();

    let result = UpdateOrdersResult::decode(
        response
            .metadata()
            .get_bin("order-update-results-bin")
            .unwrap()
            .to_bytes()
            .unwrap(),
    )
    .unwrap();
    let summary = response.into_inner();
    assert!(
        summary.starts_with(&format!("Orders processed: {a}")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{ghost} (NOT_FOUND")),
        "{summary}"
    );
    assert_eq!(result.updated_ids, [a.clone(), c.clone()]);
    let failed: Vec<_> = result
        .failed
        .iter()
        .map(|f| (f.id.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            (ghost.as_str(), "NOT_FOUND"),
            (b.as_str(), "FAILED_PRECONDITION"),
            ("not-an-id", "NOT_FOUND")
        ]
    );
    let read = |id: String| {
        let mut admin = shop.admin();
        async move { admin.get_order(id).await.unwrap().into_inner().destination }
    };
    assert_eq!(read(a).await, "New A");
    assert_eq!(read(b).await, "Old B", "a refused update changes nothing");
    assert_eq!(read(c).await, "New C");
}

#[tokio::test]
async fn process_orders_ships_full_batches_at_once_and_the_rest_at_half_close() {
    let shop = Shop::start().await; // batch size 3
    let mug = shop.add_product("Mug", 100, 100).await;
    let place = |destination: &'static str| {
        let mut client = shop.customer();
        let order = order_of(&mug, 1, destination);
        async move { client.add_order(order).await.unwrap().into_inner() }
    };
    let paris: Vec<String> = vec![
        place("Paris").await,
        place("Paris").await,
        place("Paris").await,
        place("Paris").await,
    ];
    let rome = place("Rome").await;
    let cancelled = place("Rome").await;
    shop.customer()
        .cancel_order(shop_proto::ecommerce::CancelOrderRequest {
            order_id: cancelled.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();

    let (tx, rx) = mpsc::channel::<String>(8);
    let mut shipments = shop
        .admin()
        .process_orders(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(paris[0].clone()).await.unwrap();
    tx.send(rome.clone()).await.unwrap();
    tx.send(paris[1].clone()).await.unwrap();
    tx.send("bogus".into()).await.unwrap();
    let rejected = shipments.message().await.unwrap().unwrap();
    assert_eq!(
        (
            rejected.status.as_str(),
            rejected.orders_list[0].id.as_str()
        ),
        ("REJECTED", "bogus")
    );
    tx.send(paris[2].clone()).await.unwrap();
    // Three for Paris: that shipment comes while the stream is still open.
    let first = shipments.message().await.unwrap().unwrap();
    assert_eq!(first.status, "SHIPPED");
    assert_eq!(first.destination, "Paris");
    let ids: Vec<_> = first.orders_list.iter().map(|o| o.id.clone()).collect();
    assert_eq!(ids, paris[..3].to_vec());
    assert!(
        first
            .orders_list
            .iter()
            .all(|o| o.status == OrderStatus::Shipped as i32)
    );

    tx.send(cancelled.clone()).await.unwrap();
    tx.send(paris[0].clone()).await.unwrap();
    tx.send(paris[3].clone()).await.unwrap();
    drop(tx); // half-close
    let mut rest = Vec::new();
    while let Some(s) = shipments.message().await.unwrap() {
        rest.push(s);
    }
    let summary: Vec<(String, String, usize)> = rest
        .iter()
        .map(|s| (s.status.clone(), s.destination.clone(), s.orders_list.len()))
        .collect();
    assert_eq!(
        summary,
        [
            ("REJECTED".to_string(), String::new(), 1),
            ("REJECTED".to_string(), String::new(), 1),
            ("SHIPPED".to_string(), "Paris".to_string(), 1),
            ("SHIPPED".to_string(), "Rome".to_string(), 1),
        ]
    );
    assert_eq!(rest[0].orders_list[0].id, cancelled);
    assert!(rest[0].reason.contains("cancelled"), "{}", rest[0].reason);
    assert!(rest[1].reason.contains("twice"), "{}", rest[1].reason);
    assert_eq!(
        shop.count("SELECT count(*) FROM orders WHERE status = 'shipped'")
            .await,
        5
    );
    assert_eq!(shop.count("SELECT count(*) FROM shipments").await, 3);
}

/// Every order, as an admin's search streams them.
async fn search_all(shop: &Shop) -> tonic::Streaming<shop_proto::ecommerce::Order> {
    shop.admin()
        .search_orders(String::new())
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn update_orders_takes_a_hundred_updates_a_call_and_says_the_rest_were_not_applied() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let id = shop.place(order_of(&mug, 1, "Home")).await;
    let updates: Vec<Order> = (0..500)
        .map(|i| Order {
            id: id.clone(),
            description: format!("note {i}"),
            ..Default::default()
        })
        .collect();

    let response = shop
        .admin()
        .update_orders(futures::stream::iter(updates))
        .await
        .unwrap();

    let header = response
        .metadata()
        .get_bin("order-update-results-bin")
        .unwrap()
        .to_bytes()
        .unwrap();
    assert!(header.len() < 8 * 1024, "{} bytes", header.len());
    let result = UpdateOrdersResult::decode(header).unwrap();
    assert_eq!(result.updated_ids.len(), 100);
    assert!(result.truncated);
    assert!(
        response.into_inner().contains("stopped after 100 updates"),
        "the summary says so"
    );
    let order = shop.customer().get_order(id).await.unwrap().into_inner();
    assert_eq!(
        order.description, "note 99",
        "the 101st and later were not applied"
    );
}
