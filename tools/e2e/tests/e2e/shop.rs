//! The three real binaries, started as the shop runs them.

use std::path::PathBuf;

use shop_testkit::{binary::Process, keys};
use tonic::transport::Endpoint;

/// The first admin of every test shop.
pub const ADMIN_EMAIL: &str = "root@shop.test";
pub const ADMIN_PASSWORD: &str = "a very long admin password";

/// A service binary next to this test's executable (built by
/// `cargo test --workspace`).
pub fn binary(name: &str) -> String {
    let path: PathBuf = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --bins` (`cargo test --workspace` does)",
        path.display()
    );
    path.display().to_string()
}

pub struct RealShop {
    pub productinfo: Process,
    pub order: Process,
    pub storefront: Process,
    /// The web shop, e.g. http://127.0.0.1:41234
    pub web: String,
    /// `/metrics` ports of productinfo, order and storefront.
    pub metrics: [u16; 3],
    _dirs: Vec<tempfile::TempDir>,
}

impl RealShop {
    /// Starts productinfo, order and storefront (each on a fresh database)
    /// with `extra` environment for all three (e.g. OTLP settings).
    pub async fn start(extra: &[(&'static str, &str)]) -> RealShop {
        shop_testkit::init_logs();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let common = |service: &'static str| {
            let mut env = vec![
                ("MIGRATE_ON_START", "true".to_owned()),
                ("SHUTDOWN_GRACE", "5s".to_owned()),
                ("OTEL_SERVICE_NAME", service.to_owned()),
                ("DB_HEALTH_INTERVAL", "200ms".to_owned()),
            ];
            env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            env
        };

        let mut env = common("productinfo");
        env.push((
            "DATABASE_URL",
            shop_testkit::fresh_database("productinfo").await,
        ));
        env.push(("TRUSTED_ISSUERS", keys().productinfo_trusts.clone()));
        let productinfo = serve("productinfo", dirs[0].path(), &env, "ecommerce.ProductInfo").await;

        let mut env = common("order");
        env.push(("DATABASE_URL", shop_testkit::fresh_database("order").await));
        env.push(("TRUSTED_ISSUERS", keys().order_trusts.clone()));
        env.push(("PRODUCTINFO_TARGET", productinfo.addr.clone()));
        env.push(("SIGNING_KEY_FILE", keys().order_key.display().to_string()));
        let order = serve("order", dirs[1].path(), &env, "ecommerce.OrderManagement").await;

        let password = dirs[2].path().join("admin-password");
        std::fs::write(&password, ADMIN_PASSWORD).unwrap();
        let mut env = common("storefront");
        env.push((
            "DATABASE_URL",
            shop_testkit::fresh_database("storefront").await,
        ));
        env.push(("TRUSTED_ISSUERS", keys().storefront_trusts.clone()));
        env.push(("PRODUCTINFO_TARGET", productinfo.addr.clone()));
        env.push(("ORDER_TARGET", order.addr.clone()));
        env.push((
            "SIGNING_KEY_FILE",
            keys().storefront_key.display().to_string(),
        ));
        env.push(("ADMIN_EMAIL", ADMIN_EMAIL.to_owned()));
        env.push(("ADMIN_PASSWORD_FILE", password.display().to_string()));
        let storefront = serve("storefront", dirs[2].path(), &env, "ecommerce.Storefront").await;
        let web = format!("http://{}", storefront.addrs.web.expect("web address"));
        let metrics = [&productinfo, &order, &storefront]
            .map(|p| p.addrs.metrics.expect("metrics address").port());

        RealShop {
            productinfo,
            order,
            storefront,
            web,
            metrics,
            _dirs: dirs,
        }
    }

    /// Adds a USD product through productinfo; returns its id.
    pub async fn add_product(&self, name: &str, cents: i64, stock: i64) -> String {
        let channel = Endpoint::from_shared(format!("http://{}", self.productinfo.addr))
            .unwrap()
            .connect_lazy();
        shop_testkit::add_product(channel, shop_testkit::product(name, cents, stock)).await
    }

    /// SIGTERM to all three, last first; each must exit cleanly (flushing
    /// its spans on the way out).
    pub async fn stop(mut self) {
        for (name, process) in [
            ("storefront", &mut self.storefront),
            ("order", &mut self.order),
            ("productinfo", &mut self.productinfo),
        ] {
            let status = process.terminate().await;
            assert!(
                status.success(),
                "{name} exited with {status}:\n{}",
                process.log_text()
            );
        }
    }
}

async fn serve(
    name: &str,
    dir: &std::path::Path,
    env: &[(&'static str, String)],
    health: &str,
) -> Process {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Process::serve(&binary(name), dir, &env, health).await
}

/// Scrapes `http://127.0.0.1:{port}/metrics`.
pub async fn scrape(port: u16) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client
        .get(format!("http://127.0.0.1:{port}/metrics").parse().unwrap())
        .await
        .expect("scrape /metrics");
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}
