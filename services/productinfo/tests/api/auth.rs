//! Every business call needs a valid token; the role decides what it may do.
//! Health and reflection stay open.

use std::time::Duration;

use shop_proto::ecommerce::{
    AdjustStockRequest, Product, ProductId, ReserveStockRequest, StockLine,
    product_info_client::ProductInfoClient,
};
use shop_runtime::auth::{Claims, Role, Signer, generate_keypair, now_secs};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::helpers::{Bearer, TestApp, bearer, keys};

async fn get_with(app: &TestApp, bearer: Bearer) -> tonic::Status {
    let mut client = ProductInfoClient::with_interceptor(app.channel.clone(), bearer);
    client
        .get_product(ProductId {
            value: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .expect_err("refused")
}

fn claims(role: Role, aud: &str, exp: u64) -> Claims {
    Claims {
        iss: "storefront".into(),
        sub: "someone".into(),
        role,
        aud: vec![aud.into()],
        exp,
        iat: now_secs(),
    }
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let hour = now_secs() + 3600;
    let (stranger_key, _) = generate_keypair().unwrap();
    let forger = Signer::from_pem("storefront", stranger_key.as_bytes()).unwrap();
    let unknown = Signer::from_pem("mallory", stranger_key.as_bytes()).unwrap();

    let cases = [
        ("no token", Bearer::none(), "missing bearer token"),
        (
            "not a bearer",
            Bearer::raw("Basic dXNlcjpwYXNz").unwrap(),
            "malformed",
        ),
        ("garbage", bearer("abc.def.ghi"), "malformed"),
        (
            "bad signature",
            bearer(
                &forger
                    .sign_claims(&claims(Role::Admin, "productinfo", hour))
                    .unwrap(),
            ),
            "signature",
        ),
        (
            "unknown issuer",
            bearer(
                &unknown
                    .sign_claims(&Claims {
                        iss: "mallory".into(),
                        ..claims(Role::Admin, "productinfo", hour)
                    })
                    .unwrap(),
            ),
            "not trusted",
        ),
        (
            "expired",
            bearer(
                &keys()
                    .storefront
                    .sign_claims(&claims(Role::Admin, "productinfo", now_secs() - 3600))
                    .unwrap(),
            ),
            "expired",
        ),
        (
            "wrong audience",
            bearer(
                &keys()
                    .storefront
                    .sign_claims(&claims(Role::Admin, "order", hour))
                    .unwrap(),
            ),
            "not meant for this service",
        ),
        (
            "order may only grant service",
            bearer(
                &keys()
                    .order
                    .sign(
                        "order",
                        Role::Admin,
                        &["productinfo"],
                        Duration::from_secs(60),
                    )
                    .unwrap(),
            ),
            "may not grant role admin",
        ),
    ];
    for (case, bearer, message) in cases {
        let status = get_with(&app, bearer).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        assert!(
            status.message().contains(message),
            "{case}: {:?} should mention {message:?}",
            status.message()
        );
    }
}

#[tokio::test]
async fn a_customer_may_read_but_not_write_or_reserve() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 3).await;
    let mut customer = app.customer();

    customer
        .get_product(ProductId { value: id.clone() })
        .await
        .expect("customers read");
    let add = customer
        .add_product(Product {
            name: "Sneaky".into(),
            price: 1.0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(add.code(), Code::PermissionDenied);
    let adjust = customer
        .adjust_stock(AdjustStockRequest {
            product_id: id.clone(),
            delta: 100,
            reason: "free stuff".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(adjust.code(), Code::PermissionDenied);
    let reserve = customer
        .reserve_stock(ReserveStockRequest {
            order_id: "o-1".into(),
            lines: vec![StockLine {
                product_id: id.clone(),
                quantity: 1,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(reserve.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn only_the_order_service_reserves_not_even_an_admin() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 3).await;
    let request = || ReserveStockRequest {
        order_id: "o-2".into(),
        lines: vec![StockLine {
            product_id: id.clone(),
            quantity: 1,
        }],
    };

    let admin = app.admin().reserve_stock(request()).await.unwrap_err();
    assert_eq!(admin.code(), Code::PermissionDenied);
    let storefront_service = keys()
        .storefront
        .sign(
            "storefront",
            Role::Service,
            &["productinfo"],
            Duration::from_secs(60),
        )
        .unwrap();
    let other_service = app
        .client(&storefront_service)
        .reserve_stock(request())
        .await
        .unwrap_err();
    assert_eq!(other_service.code(), Code::PermissionDenied);
    app.order_service()
        .reserve_stock(request())
        .await
        .expect("the order service reserves");
}

#[tokio::test]
async fn health_needs_no_token() {
    let app = TestApp::spawn().await;
    let status = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "ecommerce.ProductInfo".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 1, "SERVING");
}
