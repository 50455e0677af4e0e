//! When an upstream is down: the rest of the shop keeps working and pages
//! say what is wrong without leaking internals. When the storefront itself
//! drains: pages and calls keep being served until the drain delay ends.

use std::time::Duration;

use shop_proto::ecommerce::{RegisterRequest, storefront_client::StorefrontClient};

use crate::helpers::Shop;

#[tokio::test]
async fn with_the_order_service_down_the_catalog_and_cart_work_and_checkout_says_so() {
    let mut shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let visitor = shop.visitor();
    visitor.get("/").await;
    visitor.register("eve@example.com").await;
    visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;

    shop.order.take().unwrap().stop().await.unwrap();

    assert_eq!(visitor.get("/").await.status, 200, "the catalog works");
    let cart = visitor.get("/cart").await;
    assert_eq!(cart.status, 200, "the cart works");
    assert_eq!(cart.testid("cart-total").as_deref(), Some("12.50 USD"));
    // The storefront's balancer notices the order service is gone.
    let checkout = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let page = visitor.get("/checkout").await;
            if page.body.contains("data-testid=\"ordering-unavailable\"") {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("checkout says ordering is unavailable");
    assert!(checkout.body.contains("Ordering is unavailable right now"));
    assert!(!checkout.body.contains("place-order"), "no form to submit");

    let orders = visitor.get("/orders").await;
    assert_eq!(orders.status, 200);
    assert!(orders.body.contains("order service is not answering"));
}

#[tokio::test]
async fn with_the_catalog_down_pages_are_a_friendly_503_without_internals() {
    let shop = Shop::start().await;
    let visitor = shop.visitor();
    visitor.get("/").await;
    let Shop { productinfo, .. } = shop;
    productinfo.stop().await.unwrap();
    let page = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let page = visitor.get("/").await;
            if page.status == 503 {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a 503 page");
    assert!(
        page.body.contains("We&#39;ll be right back"),
        "{}",
        page.body
    );
    for internal in [
        "tonic",
        "transport",
        "no ready",
        "address",
        "127.0.0.1",
        "Unavailable",
    ] {
        assert!(
            !page.body.contains(internal),
            "{internal} leaked: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn pages_and_calls_arriving_during_the_drain_delay_are_served() {
    let drain_delay = Duration::from_secs(5);
    let shop = Shop::start_with(|c| c.server.drain_delay = drain_delay).await;
    shop.add_product("Tea pot", 3950, 5).await;

    let Shop {
        storefront,
        productinfo,
        order,
        ..
    } = shop;
    shop_testkit::drain::served_while_draining(storefront, drain_delay, "/", |channel| async {
        let session = StorefrontClient::new(channel)
            .register(RegisterRequest {
                email: "late@shop.test".into(),
                password: "a password long enough".into(),
                name: "Late".into(),
            })
            .await?;
        assert!(!session.into_inner().token.is_empty());
        Ok(())
    })
    .await;
    drop((productinfo, order));
}
