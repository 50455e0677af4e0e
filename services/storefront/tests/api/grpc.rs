//! `ecommerce.Storefront` over gRPC: the same accounts, cart and checkout.

use shop_proto::ecommerce::{
    CartItemRequest, CheckoutRequest, GetCartRequest, LoginRequest, OrderStatus, RegisterRequest,
    storefront_client::StorefrontClient,
};
use std::time::Duration;

use shop_testkit::{bearer, fake::RecordingCatalog, services};
use tonic::Code;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Shop};

fn client(shop: &Shop) -> StorefrontClient<tonic::transport::Channel> {
    StorefrontClient::new(shop.storefront.channel.clone())
}

#[tokio::test]
async fn a_script_registers_fills_a_cart_and_checks_out() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let tea = shop.add_product("Tea", 399, 5).await;

    let session = client(&shop)
        .register(RegisterRequest {
            email: "Fay@Example.com".into(),
            password: "a long enough password".into(),
            name: "Fay".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.user.as_ref().unwrap().email, "fay@example.com");
    assert_eq!(session.user.as_ref().unwrap().role, "customer");
    let mut fay =
        StorefrontClient::with_interceptor(shop.storefront.channel.clone(), bearer(&session.token));

    fay.add_to_cart(CartItemRequest {
        product_id: mug.clone(),
        quantity: 2,
    })
    .await
    .unwrap();
    let cart = fay
        .add_to_cart(CartItemRequest {
            product_id: tea.clone(),
            quantity: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cart.total.unwrap().to_minor(), Ok(2 * 1250 + 399));
    let cart = fay
        .set_cart_item(CartItemRequest {
            product_id: tea,
            quantity: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cart.lines.len(), 1);

    let order = fay
        .checkout(CheckoutRequest {
            destination: "Reykjavik".into(),
            idempotency_key: "script-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.status, OrderStatus::Confirmed as i32);
    assert_eq!(order.total.unwrap().to_minor(), Ok(2500));
    assert!(
        fay.get_cart(GetCartRequest {})
            .await
            .unwrap()
            .into_inner()
            .lines
            .is_empty()
    );

    // The token also works directly with the order service.
    let direct =
        shop_proto::ecommerce::order_management_client::OrderManagementClient::with_interceptor(
            shop.order.as_ref().unwrap().channel.clone(),
            bearer(&session.token),
        )
        .get_order(order.id.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(direct.id, order.id);
}

#[tokio::test]
async fn bad_requests_get_the_right_codes() {
    let shop = Shop::start().await;
    let mut anonymous = client(&shop);

    let no_token = anonymous.get_cart(GetCartRequest {}).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let weak = anonymous
        .register(RegisterRequest {
            email: "not-an-email".into(),
            password: "short".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(weak.code(), Code::InvalidArgument);
    let fields = shop_runtime::error::violated_fields(&weak);
    assert_eq!(fields, ["email", "password"]);
    let taken = anonymous
        .register(RegisterRequest {
            email: ADMIN_EMAIL.into(),
            password: "another long password".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    let unknown = anonymous
        .login(LoginRequest {
            email: "ghost@example.com".into(),
            password: "whatever it is".into(),
        })
        .await
        .unwrap_err();
    let wrong = anonymous
        .login(LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: "not the password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.code(), wrong.code()),
        (Code::Unauthenticated, Code::Unauthenticated)
    );
    assert_eq!(
        unknown.message(),
        wrong.message(),
        "no hint whether the account exists"
    );
    for _ in 0..4 {
        let _ = anonymous
            .login(LoginRequest {
                email: ADMIN_EMAIL.into(),
                password: "not the password".into(),
            })
            .await;
    }
    let locked = anonymous
        .login(LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn a_callers_deadline_reaches_the_catalog_and_a_spent_one_is_not_sent_there() {
    let (catalog_addr, catalog) = RecordingCatalog::spawn().await;
    let nowhere = "127.0.0.1:9";
    let storefront = services::storefront_with(services::storefront_config(
        shop_testkit::fresh_database("storefront").await,
        &catalog_addr.to_string(),
        nowhere,
    ))
    .await;
    let session = StorefrontClient::new(storefront.channel.clone())
        .register(RegisterRequest {
            email: "quick@shop.test".into(),
            password: "a long enough password".into(),
            name: "Quick".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut quick =
        StorefrontClient::with_interceptor(storefront.channel.clone(), bearer(&session.token));

    let mut within = tonic::Request::new(CartItemRequest {
        product_id: uuid::Uuid::now_v7().to_string(),
        quantity: 1,
    });
    within.set_timeout(Duration::from_millis(1500));
    quick.add_to_cart(within).await.unwrap();

    let seen = catalog.seen();
    let methods: Vec<&str> = seen.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods, ["getProduct", "getProducts"]);
    for (method, timeout) in &seen {
        let t = timeout.unwrap_or_else(|| panic!("{method} had no deadline"));
        assert!(
            t < Duration::from_millis(1500),
            "{method}: {t:?}, inside the caller's 1.5 s (not the 15 s default)"
        );
    }

    let mut spent = tonic::Request::new(GetCartRequest::default());
    spent.set_timeout(Duration::from_millis(5));
    let status = quick.get_cart(spent).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert_eq!(
        catalog.seen().len(),
        2,
        "a call with no time left is not sent upstream"
    );
}
