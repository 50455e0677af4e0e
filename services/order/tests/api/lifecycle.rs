//! Reading, cancelling and watching orders; who may see what.

use std::time::Duration;

use shop_proto::ecommerce::{CancelOrderRequest, OrderStatus};
use tonic::Code;

use crate::helpers::{Shop, order_of};

#[tokio::test]
async fn customers_see_only_their_own_orders_admins_see_all() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let id = shop.place(order_of(&mug, 1, "Home")).await;

    let stranger = shop
        .other_customer()
        .get_order(id.clone())
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound, "no hint that it exists");
    assert_eq!(
        shop.admin()
            .get_order(id.clone())
            .await
            .unwrap()
            .into_inner()
            .id,
        id
    );
    // The book's ids ("42") are ids no order has; an empty id is invalid.
    let malformed = shop
        .customer()
        .get_order("42".to_string())
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::NotFound);
    let empty = shop.customer().get_order(String::new()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let unknown = shop
        .admin()
        .get_order(uuid::Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn cancelling_gives_the_stock_back_once_and_shipped_orders_cannot_be_cancelled() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let id = shop.place(order_of(&mug, 4, "Home")).await;
    assert_eq!(shop.stock(&mug).await, 6);
    let cancel = |reason: &str| CancelOrderRequest {
        order_id: id.clone(),
        reason: reason.into(),
    };

    let stranger = shop
        .other_customer()
        .cancel_order(cancel("mine now"))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound);
    let cancelled = shop
        .customer()
        .cancel_order(cancel("changed my mind"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, OrderStatus::Cancelled as i32);
    assert_eq!(cancelled.status_reason, "changed my mind");
    assert_eq!(shop.stock(&mug).await, 10);
    let again = shop
        .customer()
        .cancel_order(cancel("again"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.status, OrderStatus::Cancelled as i32);
    assert_eq!(shop.stock(&mug).await, 10, "stock given back once");
    assert_eq!(
        shop.count("SELECT count(*) FROM reservation_intents").await,
        0
    );

    let shipped_id = shop.place(order_of(&mug, 1, "Far away")).await;
    let shipments: Vec<_> = shop
        .admin()
        .process_orders(futures::stream::iter(vec![shipped_id.clone()]))
        .await
        .unwrap()
        .into_inner()
        .collect_all()
        .await;
    assert_eq!(shipments.len(), 1);
    let too_late = shop
        .customer()
        .cancel_order(CancelOrderRequest {
            order_id: shipped_id,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(too_late.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn only_admins_update_and_process_orders() {
    let shop = Shop::start().await;
    let update = shop
        .customer()
        .update_orders(futures::stream::iter(vec![order_of("x", 1, "y")]))
        .await
        .unwrap_err();
    assert_eq!(update.code(), Code::PermissionDenied);
    let process = shop
        .customer()
        .process_orders(futures::stream::iter(vec!["x".to_string()]))
        .await
        .unwrap_err();
    assert_eq!(process.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_watch_shows_the_order_then_each_change_and_ends_when_final() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let id = shop.place(order_of(&mug, 1, "Home")).await;

    let mut watch = shop
        .customer()
        .watch_order(id.clone())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, OrderStatus::Confirmed as i32);

    let shipments = shop
        .admin()
        .process_orders(futures::stream::iter(vec![id.clone()]))
        .await
        .unwrap()
        .into_inner()
        .collect_all()
        .await;
    assert_eq!(shipments[0].status, "SHIPPED");

    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the change arrives")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, OrderStatus::Shipped as i32);
    assert_eq!(next.shipment_id, shipments[0].id);
    assert!(
        watch.message().await.unwrap().is_none(),
        "shipped is final: the stream ends"
    );

    let stranger = shop.other_customer().watch_order(id).await.unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound);
}

#[tokio::test]
async fn a_caller_has_at_most_five_watches_and_each_change_is_read_once_for_all() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let id = shop.place(order_of(&mug, 1, "Home")).await;
    let mut watches = Vec::new();
    for _ in 0..5 {
        let mut watch = shop
            .customer()
            .watch_order(id.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            watch.message().await.unwrap().unwrap().status,
            OrderStatus::Confirmed as i32
        );
        watches.push(watch);
    }

    let sixth = shop.customer().watch_order(id.clone()).await.unwrap_err();
    assert_eq!(sixth.code(), Code::ResourceExhausted, "{sixth:?}");
    let other = shop.other_customer().watch_order(id.clone()).await;
    assert_eq!(
        other.unwrap_err().code(),
        Code::NotFound,
        "the cap is per caller: another caller is not refused for it"
    );

    let reads_before = shop.watch_reads().await;
    shop.customer()
        .cancel_order(shop_proto::ecommerce::CancelOrderRequest {
            order_id: id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    for watch in &mut watches {
        let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("every watcher hears the change")
            .unwrap()
            .unwrap();
        assert_eq!(next.status, OrderStatus::Cancelled as i32);
    }
    assert_eq!(
        shop.watch_reads().await - reads_before,
        1.0,
        "one read for the five streams"
    );
    drop(watches);
    shop_testkit::eventually(
        "closed watches free their places",
        Duration::from_secs(10),
        || {
            let (shop, id) = (&shop, id.clone());
            async move { shop.customer().watch_order(id).await.is_ok() }
        },
    )
    .await;
}

/// Collects a stream of results, failing the test on an error.
trait CollectAll<T> {
    async fn collect_all(self) -> Vec<T>;
}

impl<T> CollectAll<T> for tonic::Streaming<T> {
    async fn collect_all(mut self) -> Vec<T> {
        let mut all = Vec::new();
        while let Some(item) = self.message().await.unwrap() {
            all.push(item);
        }
        all
    }
}
