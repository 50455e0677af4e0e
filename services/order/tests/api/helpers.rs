//! A small shop per test: productinfo replicas on one catalog database and
//! an order service balancing over them, each on fresh databases.

use shop_proto::ecommerce::{
    Order, OrderLine, ProductId, order_management_client::OrderManagementClient,
    product_info_client::ProductInfoClient,
};
use shop_runtime::auth::Role;
use shop_testkit::services;
pub use shop_testkit::{Bearer, admin_token, bearer, customer_token, services::Running, token};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub type OrderClient = OrderManagementClient<InterceptedService<Channel, Bearer>>;
pub type CatalogClient = ProductInfoClient<InterceptedService<Channel, Bearer>>;

pub struct Shop {
    pub productinfo: Vec<Running>,
    pub order: Running,
    /// The order service's configuration, for more replicas of it.
    config: order::Config,
}

impl Shop {
    /// Two productinfo replicas and an order service with default settings.
    pub async fn start() -> Shop {
        Self::start_with(2, |_| {}).await
    }

    /// `replicas` productinfo replicas and an order service whose
    /// configuration `tweak` may change.
    pub async fn start_with(replicas: usize, tweak: impl FnOnce(&mut order::Config)) -> Shop {
        let catalog_db = shop_testkit::fresh_database("productinfo").await;
        let mut productinfo = Vec::new();
        for _ in 0..replicas {
            productinfo.push(
                services::productinfo_with(services::productinfo_config(catalog_db.clone())).await,
            );
        }
        let target: Vec<String> = productinfo.iter().map(|p| p.addr.to_string()).collect();
        let mut config = services::order_config(
            shop_testkit::fresh_database("order").await,
            &target.join(","),
        );
        tweak(&mut config);
        let order = services::order_with(config.clone()).await;
        Shop {
            productinfo,
            order,
            config,
        }
    }

    /// One more order replica on the same database and catalog, as the
    /// chart and `make up` run two.
    pub async fn another_order(&self) -> Running {
        services::order_with(self.config.clone()).await
    }

    /// A client of order replica `replica` as `token`.
    pub fn orders_at(&self, replica: &Running, token: &str) -> OrderClient {
        OrderManagementClient::with_interceptor(replica.channel.clone(), bearer(token))
    }

    pub fn orders(&self, token: &str) -> OrderClient {
        OrderManagementClient::with_interceptor(self.order.channel.clone(), bearer(token))
    }

    /// The customer "customer-1".
    pub fn customer(&self) -> OrderClient {
        self.orders(&customer_token())
    }

    /// Another customer, "customer-2".
    pub fn other_customer(&self) -> OrderClient {
        self.orders(&token("customer-2", Role::Customer))
    }

    pub fn admin(&self) -> OrderClient {
        self.orders(&admin_token())
    }

    /// Places `order` as the customer; returns its id.
    pub async fn place(&self, order: Order) -> String {
        self.customer()
            .add_order(order)
            .await
            .expect("the order is placed")
            .into_inner()
    }

    /// The catalog, as an admin, on the first replica.
    pub fn catalog(&self) -> CatalogClient {
        ProductInfoClient::with_interceptor(
            self.productinfo[0].channel.clone(),
            bearer(&admin_token()),
        )
    }

    /// Adds a USD product; returns its id.
    pub async fn add_product(&self, name: &str, cents: i64, stock: i64) -> String {
        let product = shop_testkit::product(name, cents, stock);
        shop_testkit::add_product(self.productinfo[0].channel.clone(), product).await
    }

    pub async fn stock(&self, product_id: &str) -> i64 {
        self.catalog()
            .get_product(ProductId {
                value: product_id.into(),
            })
            .await
            .expect("get product")
            .into_inner()
            .stock
            .expect("a product that tracks stock")
    }

    /// The order service's own database.
    pub async fn order_db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.order.database_url)
            .await
            .expect("order database")
    }

    /// The catalog's database.
    pub async fn catalog_db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.productinfo[0].database_url)
            .await
            .expect("catalog database")
    }

    /// The order service's `shop_order_watch_reads_total`.
    pub async fn watch_reads(&self) -> f64 {
        shop_testkit::metric(self.order.metrics_addr, "shop_order_watch_reads_total").await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.order_db().await)
            .await
            .expect("count")
    }
}

/// An order of `quantity` units of one product, to `destination`.
pub fn order_of(product_id: &str, quantity: i64, destination: &str) -> Order {
    order_of_lines(&[(product_id, quantity)], destination)
}

/// An order of these (product, quantity) lines, to `destination`.
pub fn order_of_lines(lines: &[(&str, i64)], destination: &str) -> Order {
    Order {
        lines: lines
            .iter()
            .map(|(product_id, quantity)| OrderLine {
                product_id: (*product_id).into(),
                quantity: *quantity,
                ..Default::default()
            })
            .collect(),
        destination: destination.into(),
        ..Default::default()
    }
}
