//! The book's clients keep working: the extended contract is wire-compatible
//! with the book's own `product_info.proto` (proto/book/).

use prost::Message as _;
use shop_proto::{book, ecommerce};

use crate::helpers::{TestApp, admin_token, bearer, customer_token};

#[test]
fn book_messages_decode_as_shop_messages_and_back() {
    let book_product = book::ecommerce::Product {
        id: "p-1".into(),
        name: "Samsung S10".into(),
        description: "Samsung Galaxy S10 is the latest smart phone".into(),
        price: 700.0,
    };
    let shop = ecommerce::Product::decode(book_product.encode_to_vec().as_slice()).unwrap();
    assert_eq!(
        (
            shop.id.as_str(),
            shop.name.as_str(),
            shop.description.as_str(),
            shop.price
        ),
        (
            "p-1",
            "Samsung S10",
            "Samsung Galaxy S10 is the latest smart phone",
            700.0
        )
    );
    assert!(shop.unit_price.is_none());

    let full = ecommerce::Product {
        unit_price: Some(ecommerce::Money::from_minor("USD", 70000)),
        stock: Some(3),
        image_url: "/static/products/phone.svg".into(),
        category: "phones".into(),
        create_time: Some(prost_types::Timestamp::default()),
        ..shop
    };
    let back = book::ecommerce::Product::decode(full.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, book_product, "new fields are skipped by old clients");

    // ProductID has the same bytes as google.protobuf.StringValue (a String in prost).
    let id = ecommerce::ProductId {
        value: "p-1".into(),
    };
    let string_value = String::from("p-1");
    assert_eq!(id.encode_to_vec(), string_value.encode_to_vec());
    assert_eq!(
        ecommerce::ProductId::decode(string_value.encode_to_vec().as_slice()).unwrap(),
        id
    );
}

#[tokio::test]
async fn the_books_client_adds_a_product_and_reads_it_back() {
    let app = TestApp::spawn().await;
    let mut admin = book::ecommerce::product_info_client::ProductInfoClient::with_interceptor(
        app.channel.clone(),
        bearer(&admin_token()),
    );
    let mut customer = book::ecommerce::product_info_client::ProductInfoClient::with_interceptor(
        app.channel.clone(),
        bearer(&customer_token()),
    );

    let id = admin
        .add_product(book::ecommerce::Product {
            id: String::new(),
            name: "Apple iPhone 11".into(),
            description: "Meet Apple iPhone 11.".into(),
            price: 699.99,
        })
        .await
        .unwrap()
        .into_inner();
    let product = customer.get_product(id.clone()).await.unwrap().into_inner();

    assert_eq!(product.id, id.value);
    assert_eq!(product.name, "Apple iPhone 11");
    assert_eq!(product.description, "Meet Apple iPhone 11.");
    assert!((product.price - 699.99).abs() < 1e-3);
}
