//! The book's chapters 2 and 3, step by step, with clients generated from
//! the book's own protos (proto/book/): ProductInfo's addProduct and
//! getProduct, then OrderManagement's add, get, search, update and process.
//! Nothing is set up beforehand, stock included: the book's products do not
//! track stock, so its orders go through.

use futures::StreamExt as _;
use shop_proto::book::ecommerce::{
    Order, Product, order_management_client::OrderManagementClient,
    product_info_client::ProductInfoClient,
};
use shop_proto::ecommerce::ProductId;
use shop_testkit::{admin_token, bearer, customer_token};
use tonic::Code;

use crate::helpers::Shop;

fn book_order(id: &str, items: &[&str], destination: &str, price: f32) -> Order {
    Order {
        id: id.into(),
        items: items.iter().map(|i| (*i).to_owned()).collect(),
        description: String::new(),
        price,
        destination: destination.into(),
    }
}

#[tokio::test]
async fn the_books_chapters_two_and_three_run_step_by_step() {
    let shop = Shop::start().await;

    // Chapter 2: ProductInfo. addProduct, then getProduct of the id it gave.
    let mut catalog = ProductInfoClient::with_interceptor(
        shop.productinfo[0].channel.clone(),
        bearer(&admin_token()),
    );
    let products = [
        ("Google Pixel 3A", "Google's mid-range phone", 449.0),
        ("Mac Book Pro", "Apple's laptop", 2299.0),
        ("Google Home Mini", "A small smart speaker", 49.0),
    ];
    let mut ids = Vec::new();
    for (name, description, price) in products {
        let id = catalog
            .add_product(Product {
                id: String::new(),
                name: name.into(),
                description: description.into(),
                price,
            })
            .await
            .unwrap_or_else(|e| panic!("addProduct {name}: {e:?}"))
            .into_inner();
        let got = catalog.get_product(id.clone()).await.unwrap().into_inner();
        assert_eq!(
            (got.id.as_str(), got.name.as_str(), got.description.as_str()),
            (id.value.as_str(), name, description)
        );
        assert!(
            (got.price - price).abs() < 0.001,
            "{} vs {price}",
            got.price
        );
        ids.push(id.value);
    }
    let missing = catalog
        .get_product(shop_proto::book::ecommerce::ProductId { value: "1".into() })
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Code::NotFound,
        "the book's ids are just ids"
    );

    // Chapter 3: OrderManagement, ordering the products by name.
    let mut customer = OrderManagementClient::with_interceptor(
        shop.order.channel.clone(),
        bearer(&customer_token()),
    );
    let mut admin =
        OrderManagementClient::with_interceptor(shop.order.channel.clone(), bearer(&admin_token()));
    let sent = [
        book_order(
            "101",
            &["Google Pixel 3A", "Mac Book Pro"],
            "Mountain View, CA",
            2300.0,
        ),
        book_order(
            "102",
            &["Google Home Mini", "Google Pixel 3A", "Google Home Mini"],
            "San Jose, CA",
            550.0,
        ),
        book_order("103", &["Mac Book Pro"], "Mountain View, CA", 2299.0),
    ];
    let mut placed = Vec::new();
    for order in &sent {
        let id = customer
            .add_order(order.clone())
            .await
            .unwrap_or_else(|e| panic!("addOrder {}: {e:?}", order.id))
            .into_inner();
        placed.push(id);
    }
    assert_eq!(
        customer
            .add_order(sent[0].clone())
            .await
            .unwrap()
            .into_inner(),
        placed[0],
        "the book's id makes a retry the same order"
    );

    // getOrder: the items exactly as sent, the catalog's price.
    for (order, id) in sent.iter().zip(&placed) {
        let got = customer.get_order(id.clone()).await.unwrap().into_inner();
        assert_eq!(got.id, *id);
        assert_eq!(
            got.items, order.items,
            "items as sent, in order, repeats kept"
        );
        assert_eq!(got.destination, order.destination);
    }
    let first = customer
        .get_order(placed[0].clone())
        .await
        .unwrap()
        .into_inner();
    assert!(
        (first.price - (449.0 + 2299.0)).abs() < 0.01,
        "the catalog's prices, not the client's: {}",
        first.price
    );
    let unknown = customer.get_order("106".to_string()).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // searchOrders (server streaming).
    let found: Vec<String> = customer
        .search_orders("Google".to_string())
        .await
        .unwrap()
        .into_inner()
        .map(|o| o.unwrap().id)
        .collect()
        .await;
    assert_eq!(found, placed[..2]);

    // updateOrders (client streaming): the book sends whole orders back.
    // Destination and description change; the same items are no change; new
    // items are refused for that order alone, which stays as it was.
    let updates = vec![
        Order {
            id: placed[0].clone(),
            destination: "San Jose, CA".into(),
            description: "Deliver to the front desk".into(),
            ..sent[0].clone()
        },
        Order {
            id: placed[1].clone(),
            description: "Gift".into(),
            items: Vec::new(),
            destination: String::new(),
            price: 0.0,
        },
        Order {
            id: placed[2].clone(),
            items: vec!["Google Home Mini".into()],
            ..sent[2].clone()
        },
    ];
    let summary = admin
        .update_orders(futures::stream::iter(updates))
        .await
        .unwrap()
        .into_inner();
    assert!(
        summary.starts_with(&format!("Orders processed: {}, {}", placed[0], placed[1])),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{} (FAILED_PRECONDITION", placed[2])),
        "{summary}"
    );
    let read = |id: &String| {
        let mut admin = admin.clone();
        let id = id.clone();
        async move { admin.get_order(id).await.unwrap().into_inner() }
    };
    let updated = read(&placed[0]).await;
    assert_eq!(
        (
            updated.destination.as_str(),
            updated.description.as_str(),
            &updated.items
        ),
        ("San Jose, CA", "Deliver to the front desk", &sent[0].items)
    );
    let described = read(&placed[1]).await;
    assert_eq!(
        (
            described.destination.as_str(),
            described.description.as_str()
        ),
        ("San Jose, CA", "Gift")
    );
    assert_eq!(read(&placed[2]).await.items, sent[2].items);

    // processOrders (bidirectional streaming): one shipment per destination.
    let shipments: Vec<_> = admin
        .process_orders(futures::stream::iter(placed.clone()))
        .await
        .unwrap()
        .into_inner()
        .map(|s| s.unwrap())
        .collect()
        .await;
    let mut shipped: Vec<(String, Vec<String>)> = shipments
        .into_iter()
        .map(|s| {
            let mut ids: Vec<String> = s.orders_list.into_iter().map(|o| o.id).collect();
            ids.sort();
            (s.status, ids)
        })
        .collect();
    shipped.sort();
    let mut san_jose = vec![placed[0].clone(), placed[1].clone()];
    san_jose.sort();
    let mut expected = vec![
        ("SHIPPED".to_string(), san_jose),
        ("SHIPPED".to_string(), vec![placed[2].clone()]),
    ];
    expected.sort();
    assert_eq!(shipped, expected);

    // The book's products never tracked stock.
    for id in ids {
        let product = shop
            .catalog()
            .get_product(ProductId { value: id })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(product.stock, None, "{}", product.name);
    }
}
