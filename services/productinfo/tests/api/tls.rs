//! productinfo over mutual TLS: the right certificate gets in, and a
//! service's token counts only over that service's own certificate.

use shop_proto::ecommerce::{
    ProductId, ReserveStockRequest, StockLine, product_info_client::ProductInfoClient,
};
use shop_testkit::{admin_token, bearer, order_service_token, pki::Pki, services};
use tonic::Code;

use crate::helpers::{Client, config};

/// productinfo with a certificate from `pki`, requiring client certificates.
async fn spawn(pki: &Pki) -> services::Running {
    let mut config = config(shop_testkit::fresh_database("productinfo").await);
    config.tls = pki.server_args("productinfo");
    services::productinfo_over(config, Some(&pki.client("admin-tool"))).await
}

/// A client presenting `tls`'s certificate and sending `token`.
fn client(running: &services::Running, tls: &shop_runtime::tls::Tls, token: &str) -> Client {
    let channel = shop_runtime::tls::connect::channel(
        &running.addr.to_string(),
        Some((tls, "productinfo")),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    ProductInfoClient::with_interceptor(channel, bearer(token))
}

fn reserve(product_id: &str) -> ReserveStockRequest {
    ReserveStockRequest {
        order_id: uuid::Uuid::new_v4().to_string(),
        lines: vec![StockLine {
            product_id: product_id.into(),
            quantity: 1,
        }],
    }
}

#[tokio::test]
async fn the_order_token_reserves_stock_only_over_the_order_services_certificate() {
    let pki = Pki::new();
    let running = spawn(&pki).await;
    let product = shop_testkit::add_product(
        running.channel.clone(),
        shop_testkit::product("Mug", 500, 5),
    )
    .await;

    let as_order = client(&running, &pki.client("order"), &order_service_token())
        .reserve_stock(reserve(&product))
        .await;
    let as_storefront = client(&running, &pki.client("storefront"), &order_service_token())
        .reserve_stock(reserve(&product))
        .await
        .unwrap_err();
    let anonymous_tls = client(&running, &pki.anonymous(), &order_service_token())
        .reserve_stock(reserve(&product))
        .await
        .unwrap_err();

    assert!(as_order.is_ok(), "{as_order:?}");
    assert_eq!(as_storefront.code(), Code::PermissionDenied);
    assert!(
        as_storefront
            .message()
            .contains("spiffe://shop/ns/default/sa/storefront"),
        "{}",
        as_storefront.message()
    );
    // Refused before the handshake ends: no client certificate at all.
    assert_eq!(anonymous_tls.code(), Code::Unavailable, "{anonymous_tls:?}");
}

#[tokio::test]
async fn peoples_tokens_pass_over_any_service_certificate_and_plaintext_is_refused() {
    let pki = Pki::new();
    let running = spawn(&pki).await;
    let product = shop_testkit::add_product(
        running.channel.clone(),
        shop_testkit::product("Tea", 300, 2),
    )
    .await;

    let read = client(&running, &pki.client("storefront"), &admin_token())
        .get_product(ProductId {
            value: product.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let plaintext = ProductInfoClient::with_interceptor(
        tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
            .unwrap()
            .connect_lazy(),
        bearer(&admin_token()),
    )
    .get_product(ProductId { value: product })
    .await
    .unwrap_err();

    assert_eq!(read.name, "Tea");
    assert_eq!(plaintext.code(), Code::Unavailable);
    assert!(
        plaintext.message().contains("requires TLS"),
        "{plaintext:?}"
    );
}
