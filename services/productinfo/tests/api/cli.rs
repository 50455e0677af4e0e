//! The real `productinfo` binary, driven the way people and Kubernetes drive
//! it: environment configuration, the real `grpcurl` 1.8.6 through
//! reflection, SIGTERM, `migrate` and `check-config`.

use std::process::Command;

use shop_proto::ecommerce::Product;
use shop_testkit::binary::{Process, grpcurl, text};
use tonic::transport::Endpoint;

use crate::helpers::{admin_token, bearer, cluster, customer_token, keys};

const BIN: &str = env!("CARGO_BIN_EXE_productinfo");

/// The binary with exactly this environment.
fn productinfo(env: &[(&str, &str)]) -> Command {
    shop_testkit::binary::command(BIN, env)
}

async fn start_binary(dir: &std::path::Path, database_url: &str) -> Process {
    Process::serve(
        BIN,
        dir,
        &[
            ("DATABASE_URL", database_url),
            ("TRUSTED_ISSUERS", &keys().productinfo_trusts),
            ("MIGRATE_ON_START", "true"),
            ("SHUTDOWN_GRACE", "5s"),
        ],
        "ecommerce.ProductInfo",
    )
    .await
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_the_real_binary_which_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = cluster().fresh_database("productinfo").await.unwrap();
    let mut server = start_binary(dir.path(), &url).await;
    let addr = server.addr.clone();

    shop_testkit::binary::assert_reflects_only(&addr, &["-plaintext"], "ecommerce.ProductInfo");

    let describe = grpcurl(&["-plaintext", &addr, "describe", "ecommerce.ProductInfo"]);
    let described = text(&describe.stdout);
    assert!(
        described
            .contains("rpc getProduct ( .ecommerce.ProductID ) returns ( .ecommerce.Product );"),
        "{described}"
    );
    assert!(described.contains("rpc searchProducts ( .ecommerce.SearchProductsRequest ) returns ( stream .ecommerce.Product );"));

    let health = grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]);
    assert!(
        text(&health.stdout).contains("\"SERVING\""),
        "{}",
        text(&health.stdout)
    );

    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let id = shop_proto::ecommerce::product_info_client::ProductInfoClient::with_interceptor(
        channel,
        bearer(&admin_token()),
    )
    .add_product(Product {
        name: "Grpcurl mug".into(),
        price: 9.5,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .value;

    let token = customer_token();
    let auth = format!("authorization: Bearer {token}");
    let body = format!(r#"{{"value": "{id}"}}"#);
    let get = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        &body,
        &addr,
        "ecommerce.ProductInfo/getProduct",
    ]);
    assert!(get.status.success(), "{}", text(&get.stderr));
    let product: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(product["name"], "Grpcurl mug");
    assert_eq!(product["unitPrice"]["currencyCode"], "USD");
    assert_eq!(product["unitPrice"]["units"], "9");
    assert_eq!(product["unitPrice"]["nanos"], 500000000);

    let anonymous = grpcurl(&[
        "-plaintext",
        "-d",
        &body,
        &addr,
        "ecommerce.ProductInfo/getProduct",
    ]);
    assert_eq!(
        anonymous.status.code(),
        Some(64 + 16),
        "grpcurl exits 64 + UNAUTHENTICATED"
    );
    assert!(text(&anonymous.stderr).contains("Unauthenticated"));

    let unknown = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        r#"{"value": "102"}"#,
        &addr,
        "ecommerce.ProductInfo/getProduct",
    ]);
    assert_eq!(unknown.status.code(), Some(64 + 5), "NOT_FOUND");
    let bad = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        r#"{"value": ""}"#,
        &addr,
        "ecommerce.ProductInfo/getProduct",
    ]);
    assert_eq!(bad.status.code(), Some(64 + 3), "INVALID_ARGUMENT");
    assert!(
        text(&bad.stderr).contains("value: must not be empty"),
        "{}",
        text(&bad.stderr)
    );

    let status = server.terminate().await;
    assert!(status.success(), "clean exit: {status}");

    assert!(
        !server.log_text().contains(&token),
        "tokens never reach the log"
    );
    let lines = server.log_lines();
    let get_lines: Vec<_> = lines
        .iter()
        .filter(|l| l["grpc.method"] == "/ecommerce.ProductInfo/getProduct")
        .map(|l| l["grpc.code"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        get_lines,
        ["OK", "UNAUTHENTICATED", "NOT_FOUND", "INVALID_ARGUMENT"]
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "shutting down: NOT_SERVING")
    );
}

#[tokio::test]
async fn migrate_runs_alone_and_check_config_catches_bad_settings() {
    let url = cluster().fresh_database("productinfo").await.unwrap();

    let migrate = productinfo(&[("DATABASE_URL", &url), ("LOG_FORMAT", "text")])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('products', 'reservations')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 2);

    let good = productinfo(&[
        ("DATABASE_URL", &url),
        ("TRUSTED_ISSUERS", &keys().productinfo_trusts),
    ])
    .arg("check-config")
    .output()
    .unwrap();
    assert!(good.status.success(), "{}", text(&good.stderr));

    let bad_key = productinfo(&[
        ("DATABASE_URL", &url),
        ("TRUSTED_ISSUERS", "order=/no/such/key.pub"),
    ])
    .arg("check-config")
    .output()
    .unwrap();
    assert!(!bad_key.status.success());
    assert!(text(&bad_key.stderr).contains("/no/such/key.pub"));

    let bad_currency = productinfo(&[
        ("DATABASE_URL", &url),
        ("TRUSTED_ISSUERS", &keys().productinfo_trusts),
        ("DEFAULT_CURRENCY", "DOLLARS"),
    ])
    .arg("check-config")
    .output()
    .unwrap();
    assert!(!bad_currency.status.success());
    assert!(text(&bad_currency.stderr).contains("DOLLARS"));
}

#[tokio::test]
async fn each_service_role_reaches_its_own_database_only() {
    let productinfo_url = cluster().fresh_database("productinfo").await.unwrap();
    let order_url = cluster().fresh_database("order").await.unwrap();
    let order_db = order_url.rsplit('/').next().unwrap();
    let intruder = format!("{}/{order_db}", productinfo_url.rsplit_once('/').unwrap().0);

    sqlx::PgPool::connect(&productinfo_url)
        .await
        .expect("own database");
    let refused = sqlx::PgPool::connect(&intruder).await.unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    let postgres = format!("{}/postgres", productinfo_url.rsplit_once('/').unwrap().0);
    assert!(
        sqlx::PgPool::connect(&postgres).await.is_err(),
        "no maintenance database either"
    );
}
