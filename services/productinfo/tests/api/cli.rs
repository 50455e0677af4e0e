//! The real `productinfo` binary, driven the way people and Kubernetes drive
//! it: environment configuration, the real `grpcurl` 1.8.6 through
//! reflection, SIGTERM, `migrate` and `check-config`.

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use shop_proto::ecommerce::Product;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{Bearer, admin_token, cluster, customer_token, keys, tool, wait_for_health};

const BIN: &str = env!("CARGO_BIN_EXE_productinfo");

/// The binary, started with only the given environment (plus PATH).
fn productinfo(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

fn grpcurl(args: &[&str]) -> Output {
    Command::new(tool("grpcurl"))
        .args(args)
        .output()
        .expect("run grpcurl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_binary(dir: &Path, database_url: &str) -> Running {
    let addr_file = dir.join("addr");
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let child = productinfo(&[
        ("LISTEN_ADDR", "127.0.0.1:0"),
        ("ADDR_FILE", addr_file.to_str().unwrap()),
        ("DATABASE_URL", database_url),
        ("TRUSTED_ISSUERS", &keys().trusted),
        ("MIGRATE_ON_START", "true"),
        ("LOG_FORMAT", "json"),
        ("SHUTDOWN_GRACE", "5s"),
    ])
    .arg("serve")
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .expect("start productinfo");
    let mut running = Running {
        child,
        addr: String::new(),
    };
    running.addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                return addr;
            }
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!(
                    "productinfo exited early ({status}):\n{}",
                    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("productinfo writes its address");
    let channel = Endpoint::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect_lazy();
    wait_for_health(channel, "ecommerce.ProductInfo", ServingStatus::Serving).await;
    running
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_the_real_binary_which_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = cluster().fresh_database("productinfo").await.unwrap();
    let mut server = start_binary(dir.path(), &url).await;
    let addr = server.addr.clone();

    let list = grpcurl(&["-plaintext", &addr, "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let services = text(&list.stdout);
    for expected in [
        "ecommerce.ProductInfo",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.lines().any(|l| l == expected),
            "{expected} in {services}"
        );
    }

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
        Bearer::new(&admin_token()),
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

    let bad = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        r#"{"value": "nope"}"#,
        &addr,
        "ecommerce.ProductInfo/getProduct",
    ]);
    assert_eq!(bad.status.code(), Some(64 + 3), "INVALID_ARGUMENT");
    assert!(
        text(&bad.stderr).contains("value: must be a product id"),
        "{}",
        text(&bad.stderr)
    );

    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("exits after SIGTERM");
    assert!(status.success(), "clean exit: {status}");

    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(!log.contains(&token), "tokens never reach the log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("JSON log line {l:?}: {e}")))
        .collect();
    let get_lines: Vec<_> = lines
        .iter()
        .filter(|l| l["grpc.method"] == "/ecommerce.ProductInfo/getProduct")
        .map(|l| l["grpc.code"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(get_lines, ["OK", "UNAUTHENTICATED", "INVALID_ARGUMENT"]);
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

    let good = productinfo(&[("DATABASE_URL", &url), ("TRUSTED_ISSUERS", &keys().trusted)])
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
        ("TRUSTED_ISSUERS", &keys().trusted),
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
