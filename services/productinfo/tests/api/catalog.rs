//! Adding, reading, listing and searching products, and what bad input gets.

use futures::StreamExt as _;
use shop_proto::ecommerce::{
    GetProductsRequest, ListProductsRequest, Money, Product, ProductId, SearchProductsRequest,
};
use shop_runtime::error::violated_fields as violations;
use tonic::Code;

use crate::helpers::TestApp;

#[tokio::test]
async fn an_added_product_reads_back_with_exact_and_legacy_prices() {
    let app = TestApp::spawn().await;

    let id = app
        .admin()
        .add_product(Product {
            name: "Espresso cup".into(),
            description: "Porcelain, 80 ml".into(),
            unit_price: Some(Money {
                currency_code: "EUR".into(),
                units: 12,
                nanos: 990_000_000,
            }),
            stock: Some(7),
            image_url: "/static/products/cup.svg".into(),
            category: "kitchen".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .value;
    let p = app
        .customer()
        .get_product(ProductId { value: id.clone() })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(p.id, id);
    assert_eq!(p.name, "Espresso cup");
    assert_eq!(p.description, "Porcelain, 80 ml");
    assert_eq!(p.unit_price.as_ref().unwrap().to_minor(), Ok(1299));
    assert_eq!(p.unit_price.as_ref().unwrap().currency_code, "EUR");
    assert!((p.price - 12.99).abs() < 1e-4, "legacy price {}", p.price);
    assert_eq!(p.stock, Some(7));
    assert_eq!(p.image_url, "/static/products/cup.svg");
    assert_eq!(p.category, "kitchen");
    assert!(p.create_time.is_some() && p.update_time.is_some());
}

#[tokio::test]
async fn any_id_no_product_has_is_not_found_and_only_an_empty_one_is_invalid() {
    let app = TestApp::spawn().await;
    let mut client = app.customer();

    let missing = client
        .get_product(ProductId {
            value: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // The book's ids are strings like "42": ids no product has.
    let malformed = client
        .get_product(ProductId {
            value: "42; DROP TABLE products".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::NotFound);
    assert!(
        malformed.message().contains("42; DROP"),
        "{}",
        malformed.message()
    );

    let empty = client
        .get_product(ProductId {
            value: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(violations(&empty), ["value"]);
}

#[tokio::test]
async fn bad_products_get_one_field_violation_per_problem_and_nothing_is_stored() {
    let app = TestApp::spawn().await;

    let status = app
        .admin()
        .add_product(Product {
            name: "x".repeat(201),
            price: -3.0,
            stock: Some(-1),
            category: "bad\u{7}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), ["name", "category", "price", "stock"]);
    let listed = app
        .customer()
        .list_products(ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.products.is_empty());

    let unknown_currency = app
        .admin()
        .add_product(Product {
            name: "Mug".into(),
            unit_price: Some(Money {
                currency_code: "XYZ".into(),
                units: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&unknown_currency), ["unit_price.currency_code"]);
}

#[tokio::test]
async fn names_and_client_chosen_ids_are_unique() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::now_v7().to_string();
    let product = |name: &str| Product {
        id: id.clone(),
        name: name.into(),
        price: 1.0,
        ..Default::default()
    };
    app.admin().add_product(product("Mug")).await.unwrap();

    let same_id = app.admin().add_product(product("Cup")).await.unwrap_err();
    assert_eq!(same_id.code(), Code::AlreadyExists);
    let same_name = app
        .admin()
        .add_product(Product {
            name: "Mug".into(),
            price: 2.0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(same_name.code(), Code::AlreadyExists);
    assert!(same_name.message().contains("Mug"));
}

#[tokio::test]
async fn get_products_finds_by_id_and_by_name_and_reports_the_rest_missing() {
    let app = TestApp::spawn().await;
    let a = app.add_product("Alpha", 100, 1).await;
    let b = app.add_product("Beta", 200, 1).await;
    let ghost = uuid::Uuid::now_v7().to_string();

    let found = app
        .order_service()
        .get_products(GetProductsRequest {
            ids: vec![a.clone(), ghost.clone(), "102".into()],
            names: vec!["Beta".into(), "Gamma".into()],
        })
        .await
        .unwrap()
        .into_inner();

    let mut ids: Vec<_> = found.products.iter().map(|p| p.id.clone()).collect();
    ids.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        found.missing,
        [ghost, "102".to_string(), "Gamma".to_string()]
    );
}

#[tokio::test]
async fn listing_pages_through_the_catalog_in_name_order() {
    let app = TestApp::spawn().await;
    for name in ["Delta", "Alpha", "Echo", "Charlie", "Bravo"] {
        app.add_product(name, 100, 1).await;
    }
    let mut client = app.customer();

    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_products(ListProductsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        names.extend(page.products.into_iter().map(|p| p.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }

    assert_eq!(names, ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]);
    assert_eq!(pages, 3);

    let bad = client
        .list_products(ListProductsRequest {
            page_size: 1000,
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["page_size", "page_token"]);
}

#[tokio::test]
async fn queries_match_name_description_or_category_literally() {
    let app = TestApp::spawn().await;
    app.add_product("Green tea", 500, 1).await;
    app.add_product("Black tea", 500, 1).await;
    app.add_product("Coffee 100%", 900, 1).await;

    let page = |query: &str| {
        let mut client = app.customer();
        let query = query.to_owned();
        async move {
            client
                .list_products(ListProductsRequest {
                    query,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .products
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page("TEA").await, ["Black tea", "Green tea"]);
    assert_eq!(page("100%").await, ["Coffee 100%"]);
    assert_eq!(page("00%").await, ["Coffee 100%"], "% is not a wildcard");
    assert!(page("%%%").await.is_empty(), "% is not a wildcard");
    assert!(page("nothing like this").await.is_empty());
}

#[tokio::test]
async fn search_streams_every_match_across_batches_and_honours_the_limit() {
    let app = TestApp::spawn().await;
    // More than two database batches of 100.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query(
        "INSERT INTO products (id, name, currency, price_minor, stock, category) \
         SELECT gen_random_uuid(), 'Bulk ' || lpad(i::text, 4, '0'), 'USD', i, 1, 'bulk' \
         FROM generate_series(1, 250) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    app.add_product("Other", 1, 1).await;

    let all: Vec<Product> = app
        .customer()
        .search_products(SearchProductsRequest {
            category: "bulk".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(all.len(), 250);
    assert!(all.windows(2).all(|w| w[0].name < w[1].name), "name order");

    let limited = app
        .customer()
        .search_products(SearchProductsRequest {
            query: "bulk".into(),
            limit: 120,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count()
        .await;
    assert_eq!(limited, 120);
}
