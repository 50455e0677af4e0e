//! `ecommerce.Storefront` over gRPC: the same accounts, cart and checkout.

use shop_proto::ecommerce::{
    CartItemRequest, CheckoutRequest, GetCartRequest, LoginRequest, OrderStatus, RegisterRequest,
    storefront_client::StorefrontClient,
};
use shop_testkit::Bearer;
use tonic::Code;
use tonic_types::StatusExt as _;

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
    let mut fay = StorefrontClient::with_interceptor(
        shop.storefront.channel.clone(),
        Bearer::new(&session.token),
    );

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
            Bearer::new(&session.token),
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
    let fields: Vec<_> = weak
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
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
