//! The book's OrderManagement client flow, with a client generated from the
//! book's own proto: add, get, search, update, process.

use futures::StreamExt as _;
use shop_proto::book::ecommerce::{Order, order_management_client::OrderManagementClient};
use shop_testkit::{admin_token, bearer, customer_token};

use crate::helpers::Shop;

#[tokio::test]
async fn the_books_client_flow_runs_end_to_end() {
    let shop = Shop::start().await;
    for (name, cents) in [
        ("Google Pixel 3A", 44900),
        ("Mac Book Pro", 229900),
        ("Google Home Mini", 4900),
        ("Apple Watch S4", 39900),
    ] {
        shop.add_product(name, cents, 100).await;
    }
    let mut customer = OrderManagementClient::with_interceptor(
        shop.order.channel.clone(),
        bearer(&customer_token()),
    );
    let mut admin =
        OrderManagementClient::with_interceptor(shop.order.channel.clone(), bearer(&admin_token()));

    // addOrder, as the book sends it: its own id, item names, a price.
    let order1 = Order {
        id: "101".into(),
        items: vec!["Google Pixel 3A".into(), "Mac Book Pro".into()],
        destination: "Mountain View, CA".into(),
        price: 2300.0,
        description: String::new(),
    };
    let id = customer
        .add_order(order1.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        customer.add_order(order1).await.unwrap().into_inner(),
        id,
        "the book's id makes retries safe"
    );
    let other = customer
        .add_order(Order {
            id: "102".into(),
            items: vec!["Google Home Mini".into()],
            destination: "Mountain View, CA".into(),
            price: 49.0,
            description: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    // getOrder
    let got = customer.get_order(id.clone()).await.unwrap().into_inner();
    assert_eq!(got.items, ["Google Pixel 3A", "Mac Book Pro"]);
    assert!(
        (got.price - 2748.0).abs() < 0.01,
        "the catalog's price, not the client's: {}",
        got.price
    );

    // searchOrders (server streaming)
    let found: Vec<String> = customer
        .search_orders("Google".to_string())
        .await
        .unwrap()
        .into_inner()
        .map(|o| o.unwrap().id)
        .collect()
        .await;
    assert_eq!(found, [id.clone(), other.clone()]);

    // updateOrders (client streaming)
    let summary = admin
        .update_orders(futures::stream::iter(vec![Order {
            id: id.clone(),
            destination: "San Jose, CA".into(),
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary, format!("Orders processed: {id}"));

    // processOrders (bidirectional streaming): same destination? no, so two shipments at half-close.
    let shipments: Vec<_> = admin
        .process_orders(futures::stream::iter(vec![id.clone(), other.clone()]))
        .await
        .unwrap()
        .into_inner()
        .map(|s| s.unwrap())
        .collect()
        .await;
    let mut shipped: Vec<(String, Vec<String>)> = shipments
        .into_iter()
        .map(|s| {
            (
                s.status,
                s.orders_list.into_iter().map(|o| o.destination).collect(),
            )
        })
        .collect();
    shipped.sort();
    assert_eq!(
        shipped,
        [
            ("SHIPPED".to_string(), vec!["Mountain View, CA".to_string()]),
            ("SHIPPED".to_string(), vec!["San Jose, CA".to_string()]),
        ]
    );
}
