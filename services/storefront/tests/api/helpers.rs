//! A whole shop per test (productinfo, order and storefront in-process, each
//! on fresh databases); pages are driven with testkit's cookie-keeping
//! HTTP client.

use std::path::PathBuf;

use shop_testkit::services;
pub use shop_testkit::services::Running;
pub use shop_testkit::web::Web;

/// The first admin's credentials in every test shop.
pub const ADMIN_EMAIL: &str = "boss@shop.test";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub struct Shop {
    pub productinfo: Running,
    pub order: Option<Running>,
    pub storefront: Running,
    _dir: tempfile::TempDir,
}

impl Shop {
    pub async fn start() -> Shop {
        Self::start_with(|_| {}).await
    }

    /// A shop whose storefront configuration `tweak` may change.
    pub async fn start_with(tweak: impl FnOnce(&mut storefront::Config)) -> Shop {
        let productinfo = services::productinfo().await;
        let order = services::order_with(services::order_config(
            shop_testkit::fresh_database("order").await,
            &productinfo.addr.to_string(),
        ))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("admin-password");
        std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n")).unwrap();
        let mut config = services::storefront_config(
            shop_testkit::fresh_database("storefront").await,
            &productinfo.addr.to_string(),
            &order.addr.to_string(),
        );
        config.service.admin_email = Some(ADMIN_EMAIL.into());
        config.service.admin_password_file = Some(password_file);
        tweak(&mut config);
        let storefront = services::storefront_with(config).await;
        Shop {
            productinfo,
            order: Some(order),
            storefront,
            _dir: dir,
        }
    }

    /// The web shop's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.storefront.http_addr.unwrap())
    }

    /// A new visitor (no cookies yet).
    pub fn visitor(&self) -> Web {
        Web::new(&self.url())
    }

    /// Adds a USD product to the catalog as admin; returns its id.
    pub async fn add_product(&self, name: &str, cents: i64, stock: i64) -> String {
        let product = shop_testkit::product(name, cents, stock);
        shop_testkit::add_product(self.productinfo.channel.clone(), product).await
    }

    pub async fn storefront_db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.storefront.database_url)
            .await
            .unwrap()
    }
}

/// Where browser screenshots go for inspection: target/browser-screenshots.
pub fn screenshot_dir() -> PathBuf {
    let dir = shop_testkit::workspace_root().join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
