//! Test support shared by every service's integration tests: one private
//! PostgreSQL cluster per test binary, the issuers' keys and their tokens,
//! clients that send a bearer token, waiting on health (no sleeps), and
//! each service spawned in-process exactly as its binary runs it.

pub mod binary;
pub mod drain;
pub mod fake;
pub mod pki;
pub mod services;
pub mod web;

use std::{path::PathBuf, sync::OnceLock, time::Duration};

use shop_devdb::Cluster;
use shop_proto::ecommerce::{Money, Product, product_info_client::ProductInfoClient};
use shop_runtime::auth::{Role, Signer, ensure_keypair};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Sends the services' logs to the test harness (shown for failing tests),
/// at the level in `RUST_LOG` (default: warnings). Idempotent.
pub fn init_logs() {
    static LOGS: OnceLock<()> = OnceLock::new();
    LOGS.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The cluster shared by every test of a test binary; each test gets its own
/// databases in it. `DATABASE_URL` (an admin URL) points the tests at a
/// server you run instead of a private one.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        Cluster::from_env_or_temporary().expect("start the test PostgreSQL cluster")
    })
}

/// A fresh database named after `service`, with its own role; its URL.
pub async fn fresh_database(service: &str) -> String {
    cluster()
        .fresh_database(service)
        .await
        .expect("create a fresh database")
}

/// The signing keys of the issuers the tests play.
pub struct Keys {
    /// Holds the key files for as long as the tests run.
    pub dir: tempfile::TempDir,
    /// The storefront: people's tokens and its own service token.
    pub storefront: Signer,
    pub storefront_key: PathBuf,
    /// The order service: its service tokens.
    pub order: Signer,
    pub order_key: PathBuf,
    /// `--trusted-issuers` for productinfo.
    pub productinfo_trusts: String,
    /// `--trusted-issuers` for order.
    pub order_trusts: String,
    /// `--trusted-issuers` for storefront.
    pub storefront_trusts: String,
}

/// Keys made once per test binary.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("key dir");
        let (sf_key, sf_pub) = ensure_keypair(dir.path(), "storefront").expect("keys");
        let (order_key, order_pub) = ensure_keypair(dir.path(), "order").expect("keys");
        Keys {
            storefront: Signer::from_file("storefront", &sf_key).expect("signer"),
            order: Signer::from_file("order", &order_key).expect("signer"),
            // As the chart trusts them: the storefront's key grants people's
            // roles everywhere and its own service role only at the catalog.
            productinfo_trusts: format!(
                "storefront:customer+admin+service={},order:service={}",
                sf_pub.display(),
                order_pub.display()
            ),
            order_trusts: format!("storefront:customer+admin={}", sf_pub.display()),
            storefront_trusts: format!("storefront:customer+admin={}", sf_pub.display()),
            storefront_key: sf_key,
            order_key,
            dir,
        }
    })
}

const HOUR: Duration = Duration::from_secs(3600);
const EVERYONE: [&str; 3] = ["productinfo", "order", "storefront"];

/// A token signed by the storefront for `subject` with `role`, accepted by
/// every service.
pub fn token(subject: &str, role: Role) -> String {
    keys()
        .storefront
        .sign(subject, role, &EVERYONE, HOUR)
        .expect("sign")
}

pub fn admin_token() -> String {
    token("admin-1", Role::Admin)
}

pub fn customer_token() -> String {
    token("customer-1", Role::Customer)
}

/// The order service's own service token for productinfo.
pub fn order_service_token() -> String {
    keys()
        .order
        .sign("order", Role::Service, &["productinfo"], HOUR)
        .expect("sign")
}

pub use shop_runtime::auth::Bearer;

/// An interceptor sending `token` as `authorization: Bearer <token>`.
pub fn bearer(token: &str) -> Bearer {
    Bearer::new(token).expect("an ASCII token")
}

/// Waits (up to 10 s) until `service`'s health at `channel` is `status`,
/// following the Watch stream: no polling, no sleeps.
pub async fn wait_for_health(channel: Channel, service: &str, status: ServingStatus) {
    let wait = async {
        let mut health = HealthClient::new(channel);
        loop {
            let stream = health
                .watch(HealthCheckRequest {
                    service: service.into(),
                })
                .await;
            let Ok(stream) = stream else {
                // Not listening yet or restarting: try again shortly.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(update)) = stream.message().await {
                if update.status == status as i32 {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("health of {service:?} did not become {status:?} within 10 s"));
}

/// A product for tests: `cents` US cents, `stock` units, in the kitchen.
pub fn product(name: &str, cents: i64, stock: i64) -> Product {
    Product {
        name: name.into(),
        description: format!("All about {name}."),
        unit_price: Some(Money::from_minor("USD", cents)),
        stock: Some(stock),
        category: "kitchen".into(),
        ..Default::default()
    }
}

/// Adds `product` to the catalog at `channel`, as an admin; its id.
pub async fn add_product(channel: Channel, product: Product) -> String {
    ProductInfoClient::with_interceptor(channel, bearer(&admin_token()))
        .add_product(product)
        .await
        .expect("add product")
        .into_inner()
        .value
}

/// The value of metric `name` on `/metrics` at `addr`, summed over every
/// series whose labels include those given (`name{label="value"}`, any
/// subset; 0 when not there yet).
pub async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let page = web::Web::new(&format!("http://{addr}"))
        .get("/metrics")
        .await;
    let (want, want_labels) = name.split_once('{').unwrap_or((name, ""));
    let want_labels: Vec<&str> = want_labels
        .trim_end_matches('}')
        .split(',')
        .filter(|l| !l.is_empty())
        .collect();
    page.body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (metric, labels) = key.split_once('{').unwrap_or((key, ""));
            let labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
            (metric == want && want_labels.iter().all(|w| labels.contains(w)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Waits (checking every 20 ms, up to `timeout`) until `check` says yes:
/// for states that show up in a database or a log, where there is no
/// stream to follow. Panics naming `what` when time runs out.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(timeout, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} did not happen within {timeout:?}");
}

/// The root of the workspace.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A third-party tool installed by `make tools` into `.tools/bin`.
pub fn tool(name: &str) -> PathBuf {
    let path = workspace_root().join(".tools/bin").join(name);
    assert!(
        path.is_file(),
        "{name} is not installed at {}: run `make tools` (the README's test command does)",
        path.display()
    );
    path
}
