//! Order search on indexes: `listOrders` pages newest first, and every
//! search statement's plan on a big generated order table.

use futures::StreamExt as _;
use shop_proto::ecommerce::ListOrdersRequest;
use tonic::Code;

use crate::helpers::{OrderClient, Shop};

/// Places an order of one `product` to `city` as `client`'s customer.
async fn place(mut client: OrderClient, product: &str, city: &str) {
    client
        .add_order(shop_proto::ecommerce::Order {
            lines: vec![shop_proto::ecommerce::OrderLine {
                product_id: product.into(),
                quantity: 1,
                ..Default::default()
            }],
            destination: city.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Every page of `listOrders` for `query`, `size` at a time: the
/// destinations in order.
async fn destinations(client: &mut OrderClient, query: &str, size: i32) -> Vec<String> {
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_orders(ListOrdersRequest {
                query: query.into(),
                page_size: size,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.orders.into_iter().map(|o| o.destination));
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn list_orders_pages_newest_first_and_customers_see_their_own() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 500, 100).await;
    for city in ["Lisbon", "Porto", "Faro", "Braga"] {
        place(shop.customer(), &mug, city).await;
    }
    place(shop.other_customer(), &mug, "Lagos").await;

    let newest_first = ["Braga", "Faro", "Porto", "Lisbon"];
    for size in [1, 3, 20] {
        assert_eq!(
            destinations(&mut shop.customer(), "", size).await,
            newest_first,
            "pages of {size}"
        );
    }
    assert_eq!(
        destinations(&mut shop.admin(), "", 2).await,
        ["Lagos", "Braga", "Faro", "Porto", "Lisbon"]
    );
    assert_eq!(destinations(&mut shop.admin(), "ORT", 2).await, ["Porto"]);
    assert_eq!(
        destinations(&mut shop.customer(), "lagos", 2).await,
        Vec::<String>::new()
    );

    let bad = shop
        .customer()
        .list_orders(ListOrdersRequest {
            page_size: 101,
            page_token: "not a token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        shop_runtime::error::violated_fields(&bad),
        ["page_size", "page_token"]
    );
}

/// The plan PostgreSQL makes for `sql` bound to `binds`, as text.
async fn plan(
    pool: &sqlx::PgPool,
    explain: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> String {
    let rows = explain.fetch_all(pool).await.unwrap();
    use sqlx::Row as _;
    rows.iter()
        .map(|r| r.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

fn explain(sql: &str) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    // The statements are the service's own constants.
    sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}"))).persistent(false)
}

#[tokio::test]
async fn search_statements_use_their_indexes_on_a_big_order_table() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 500, 100).await;
    place(shop.customer(), &mug, "Zanzibar harbour").await;
    let pool = shop.order_db().await;
    // 50 000 orders of 500 customers, a line each, a minute apart.
    sqlx::query(
        "WITH o AS ( \
           INSERT INTO orders (id, customer, fingerprint, status, description, destination, \
                               currency, total_minor, created_at) \
           SELECT gen_random_uuid(), 'bulk-' || (i % 500), 'f', 'confirmed', \
                  'generated order ' || i, 'City ' || (i % 300), 'USD', 500, \
                  now() - make_interval(mins => i) \
           FROM generate_series(1, 50000) AS i RETURNING id) \
         INSERT INTO order_lines (order_id, line_no, product_id, name, quantity, unit_price_minor) \
         SELECT id, 1, gen_random_uuid(), 'Generated item', 1, 500 FROM o",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE orders").execute(&pool).await.unwrap();
    sqlx::query("ANALYZE order_lines")
        .execute(&pool)
        .await
        .unwrap();
    let none = None::<&str>;
    let after = (None::<chrono::DateTime<chrono::Utc>>, uuid::Uuid::nil());

    let matching = plan(
        &pool,
        explain(order::search_sql::MATCHING_IDS)
            .bind("%zanzibar%")
            .bind(10_001_i64),
    )
    .await;
    assert!(matching.contains("orders_search"), "{matching}");
    assert!(matching.contains("order_lines_search"), "{matching}");
    let by_ids = plan(
        &pool,
        explain(order::search_sql::BY_IDS_NEWEST)
            .bind(vec![uuid::Uuid::nil()])
            .bind(after.0)
            .bind(after.1)
            .bind(20_i64),
    )
    .await;
    assert!(by_ids.contains("orders_pkey"), "{by_ids}");
    let customer = plan(
        &pool,
        explain(order::search_sql::WALK_NEWEST)
            .bind(Some("bulk-7"))
            .bind(Some("%city%"))
            .bind(after.0)
            .bind(after.1)
            .bind(20_i64),
    )
    .await;
    assert!(customer.contains("orders_customer_created"), "{customer}");
    let everyone = plan(
        &pool,
        explain(order::search_sql::WALK_NEWEST)
            .bind(none)
            .bind(none)
            .bind(after.0)
            .bind(after.1)
            .bind(20_i64),
    )
    .await;
    assert!(everyone.contains("orders_created"), "{everyone}");
    for plan in [&matching, &by_ids, &customer, &everyone] {
        assert!(!plan.contains("Seq Scan on orders"), "{plan}");
    }

    // Through the API: the rare order among them, by a word of its
    // destination, for the admin (indexes) and its customer (date walk).
    for client in [shop.admin(), shop.customer()] {
        let found: Vec<_> = client
            .clone()
            .search_orders("zanzibar".to_owned())
            .await
            .unwrap()
            .into_inner()
            .map(|o| o.unwrap().destination)
            .collect()
            .await;
        assert_eq!(found, ["Zanzibar harbour"]);
    }
    // A word thousands of orders share: a page at once, newest first.
    let page = shop
        .admin()
        .list_orders(ListOrdersRequest {
            query: "generated".into(),
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.orders.len(), 5);
    assert_eq!(page.orders[0].description, "generated order 1");
}
