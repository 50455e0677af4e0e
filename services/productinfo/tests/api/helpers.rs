//! productinfo under test: a server per test on a fresh database, and
//! clients carrying each kind of token. The shared pieces live in
//! `shop-testkit`.

use shop_proto::ecommerce::product_info_client::ProductInfoClient;
pub use shop_testkit::{
    Bearer, admin_token, bearer, cluster, customer_token, keys, order_service_token,
    services::Running,
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub use shop_testkit::services::productinfo_config as config;

pub type Client = ProductInfoClient<InterceptedService<Channel, Bearer>>;

/// A running productinfo server.
pub struct TestApp {
    pub running: Running,
}

impl std::ops::Deref for TestApp {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

impl std::ops::DerefMut for TestApp {
    fn deref_mut(&mut self) -> &mut Running {
        &mut self.running
    }
}

impl TestApp {
    /// A server on a fresh database of the shared cluster.
    pub async fn spawn() -> TestApp {
        TestApp {
            running: shop_testkit::services::productinfo().await,
        }
    }

    /// A server with this exact configuration, SERVING when this returns.
    pub async fn spawn_with(config: productinfo::Config) -> TestApp {
        TestApp {
            running: shop_testkit::services::productinfo_with(config).await,
        }
    }

    /// A client sending `token` as its bearer token.
    pub fn client(&self, token: &str) -> Client {
        ProductInfoClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn admin(&self) -> Client {
        self.client(&admin_token())
    }

    pub fn customer(&self) -> Client {
        self.client(&customer_token())
    }

    pub fn order_service(&self) -> Client {
        self.client(&order_service_token())
    }

    /// Adds a product as admin and returns its id.
    pub async fn add_product(&self, name: &str, price_cents: i64, stock: i64) -> String {
        let product = shop_testkit::product(name, price_cents, stock);
        shop_testkit::add_product(self.channel.clone(), product).await
    }

    /// Shuts down and waits until the server has stopped.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
    }
}
