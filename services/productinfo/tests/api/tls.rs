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

/// The DER of the certificate productinfo presents to a new connection.
async fn presented(running: &services::Running, client: &shop_runtime::tls::Tls) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(client.client_config())
        .connect("productinfo".try_into().unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_certificate_renewed_on_disk_is_picked_up_by_the_running_service_without_a_failed_call() {
    let pki = Pki::new();
    let mut config = config(shop_testkit::fresh_database("productinfo").await);
    config.tls = pki.server_args("productinfo");
    config.tls.tls_reload_interval = std::time::Duration::from_secs(1);
    let running = services::productinfo_over(config, Some(&pki.client("admin-tool"))).await;
    let product = shop_testkit::add_product(
        running.channel.clone(),
        shop_testkit::product("Kettle", 2500, 3),
    )
    .await;
    let storefront = pki.client("storefront");
    let before = presented(&running, &storefront).await;
    let mut caller = client(&running, &storefront, &admin_token());
    let read = |mut c: Client, id: String| async move {
        c.get_product(ProductId { value: id }).await.map(|_| ())
    };
    read(caller.clone(), product.clone()).await.unwrap();

    // cert-manager renews: new key and certificate written in place.
    pki.ca
        .issue_into(
            pki.dir.path(),
            &shop_runtime::tls::issue::Leaf::new("productinfo"),
        )
        .unwrap();

    // Calls on the connection made before go on; the service's watcher
    // takes the new pair in within its interval, and new connections get it.
    let mut calls = 0;
    let renewed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            read(caller.clone(), product.clone()).await.unwrap();
            calls += 1;
            let now = presented(&running, &storefront).await;
            if now != before {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the renewed certificate is served within the reload interval");

    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let on_disk = CertificateDer::from_pem_file(pki.dir.path().join("productinfo.pem")).unwrap();
    assert_eq!(
        renewed,
        on_disk.to_vec(),
        "the renewed certificate is served"
    );
    assert_ne!(renewed, before);
    assert!(calls > 0);
    caller = client(&running, &storefront, &admin_token());
    read(caller, product).await.unwrap();
}
