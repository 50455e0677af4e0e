//! Search on indexes: best matches first with stable pages, short queries,
//! and the statements' plans on a big generated catalog.

use shop_proto::ecommerce::ListProductsRequest;

use crate::helpers::TestApp;

/// Every page of `query`'s results, `size` at a time: the names in order.
async fn all_pages(app: &TestApp, query: &str, size: i32) -> Vec<String> {
    let mut client = app.customer();
    let (mut names, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_products(ListProductsRequest {
                query: query.into(),
                page_size: size,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        names.extend(page.products.into_iter().map(|p| p.name));
        if page.next_page_token.is_empty() {
            return names;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn names_that_start_with_the_query_come_first_and_pages_stay_stable() {
    let app = TestApp::spawn().await;
    for name in ["Green tea", "Teapot", "Mug", "Tea", "Black tea", "Tea cosy"] {
        app.add_product(name, 100, 1).await;
    }
    // A mug whose description mentions tea, and one that does not.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE products SET description = 'for tea' WHERE name = 'Mug'")
        .execute(&pool)
        .await
        .unwrap();

    let expected = ["Tea", "Tea cosy", "Teapot", "Black tea", "Green tea", "Mug"];
    assert_eq!(all_pages(&app, "tea", 20).await, expected);
    for size in [1, 2, 4] {
        assert_eq!(
            all_pages(&app, "TEA", size).await,
            expected,
            "pages of {size}"
        );
    }
    // Too short for trigrams: name starts only.
    assert_eq!(
        all_pages(&app, "te", 20).await,
        ["Tea", "Tea cosy", "Teapot"]
    );
    assert_eq!(all_pages(&app, "m", 1).await, ["Mug"]);
}

/// The plan PostgreSQL makes for `sql` with `binds`, as text.
async fn plan(pool: &sqlx::PgPool, sql: &str, binds: (&str, Option<&str>)) -> String {
    // The statement is one of the service's own constants.
    let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
        .persistent(false)
        .bind(binds.0)
        .bind(binds.1)
        .bind(None::<&str>)
        .bind(uuid::Uuid::nil())
        .bind(20_i64)
        .fetch_all(pool)
        .await
        .unwrap();
    lines.join("\n")
}

#[tokio::test]
async fn search_statements_use_their_indexes_on_a_big_catalog() {
    let app = TestApp::spawn().await;
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    // 50 000 products in a handful of categories, and one rare word.
    sqlx::query(
        "INSERT INTO products (id, name, description, currency, price_minor, stock, category) \
         SELECT gen_random_uuid(), 'Product ' || i, \
                'A generated product, number ' || i || ', for the search test', \
                'USD', i, 1, 'category ' || (i % 8) \
         FROM generate_series(1, 50000) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    app.add_product("Zanzibar clove tin", 700, 1).await;
    sqlx::query("ANALYZE products")
        .execute(&pool)
        .await
        .unwrap();

    let rare = plan(&pool, productinfo::search_sql::CONTAINS, ("zanzibar", None)).await;
    assert!(rare.contains("products_search"), "{rare}");
    let starts = plan(
        &pool,
        productinfo::search_sql::NAME_STARTS,
        ("product 4", None),
    )
    .await;
    assert!(starts.contains("products_name_lower"), "{starts}");
    // A word every product has: walking the names in order finds a page
    // at once, and the plan says so.
    let common = plan(
        &pool,
        productinfo::search_sql::CONTAINS,
        ("generated", None),
    )
    .await;
    assert!(
        common.contains("Index Scan using products_name_key"),
        "{common}"
    );
    for plan in [&rare, &starts, &common] {
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }

    // And through the API, the rare word is found among them.
    assert_eq!(
        all_pages(&app, "zanzibar", 20).await,
        ["Zanzibar clove tin"]
    );
}
