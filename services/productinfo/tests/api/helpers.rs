//! Spawning `productinfo` for tests: a fresh database per test on one private
//! PostgreSQL cluster per test binary, keys and tokens, and gRPC clients.

use std::{net::SocketAddr, path::PathBuf, sync::OnceLock, time::Duration};

use productinfo::Config;
use shop_devdb::Cluster;
use shop_proto::ecommerce::{Money, Product, product_info_client::ProductInfoClient};
use shop_runtime::{
    auth::{Role, Signer, ensure_keypair},
    config::{AuthArgs, DbArgs, LogArgs, ServerArgs},
    telemetry::LogFormat,
};
use tonic::{
    Request, Status,
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The cluster shared by every test of this binary; each test gets its own
/// database in it. `DATABASE_URL` (an admin URL) points the tests at a
/// server you run instead of a private one.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        Cluster::from_env_or_temporary().expect("start the test PostgreSQL cluster")
    })
}

/// Signing keys of the issuers the tests play: the storefront (people and its
/// own service token) and the order service (service tokens only).
pub struct Keys {
    /// Holds the key files for as long as the tests run.
    _dir: tempfile::TempDir,
    pub storefront: Signer,
    pub order: Signer,
    /// `--trusted-issuers` for productinfo.
    pub trusted: String,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("key dir");
        let (sf_key, sf_pub) = ensure_keypair(dir.path(), "storefront").expect("keys");
        let (order_key, order_pub) = ensure_keypair(dir.path(), "order").expect("keys");
        Keys {
            storefront: Signer::from_file("storefront", &sf_key).expect("signer"),
            order: Signer::from_file("order", &order_key).expect("signer"),
            trusted: format!(
                "storefront={},order:service={}",
                sf_pub.display(),
                order_pub.display()
            ),
            _dir: dir,
        }
    })
}

const HOUR: Duration = Duration::from_secs(3600);

pub fn admin_token() -> String {
    keys()
        .storefront
        .sign("admin-1", Role::Admin, &["productinfo"], HOUR)
        .expect("sign")
}

pub fn customer_token() -> String {
    keys()
        .storefront
        .sign("customer-1", Role::Customer, &["productinfo"], HOUR)
        .expect("sign")
}

pub fn order_service_token() -> String {
    keys()
        .order
        .sign("order", Role::Service, &["productinfo"], HOUR)
        .expect("sign")
}

/// A productinfo configuration for `database_url`, listening anywhere.
pub fn config(database_url: String) -> Config {
    Config {
        server: ServerArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            shutdown_grace: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
        },
        auth: AuthArgs {
            trusted_issuers: keys().trusted.clone(),
        },
        db: DbArgs {
            database_url,
            database_password_file: None,
            db_max_connections: 8,
            db_acquire_timeout: Duration::from_secs(2),
            db_health_interval: Duration::from_millis(100),
        },
        log: LogArgs {
            log_format: LogFormat::Text,
            log_level: "info".into(),
        },
        migrate: true,
        default_currency: "USD".into(),
        reserve_callers: vec!["order".into()],
        addr_file: None,
    }
}

/// A running productinfo server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub database_url: String,
    pub channel: Channel,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// A server on a fresh database of the shared cluster.
    pub async fn spawn() -> TestApp {
        let url = cluster()
            .fresh_database("productinfo")
            .await
            .expect("fresh database");
        Self::spawn_with(config(url)).await
    }

    /// A server with this exact configuration, SERVING when this returns.
    pub async fn spawn_with(config: Config) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let database_url = config.db.database_url.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(productinfo::run(config, listener, async {
            let _ = rx.await;
        }));
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy();
        let app = TestApp {
            addr,
            database_url,
            channel,
            shutdown: Some(tx),
            server: Some(server),
        };
        app.wait_for(ServingStatus::Serving).await;
        app
    }

    /// Waits (up to 10 s) until the server's overall health is `status`.
    pub async fn wait_for(&self, status: ServingStatus) {
        wait_for_health(self.channel.clone(), "", status).await;
    }

    /// A client sending `token` as its bearer token.
    pub fn client(&self, token: &str) -> ProductInfoClient<InterceptedService<Channel, Bearer>> {
        ProductInfoClient::with_interceptor(self.channel.clone(), Bearer::new(token))
    }

    pub fn admin(&self) -> ProductInfoClient<InterceptedService<Channel, Bearer>> {
        self.client(&admin_token())
    }

    pub fn customer(&self) -> ProductInfoClient<InterceptedService<Channel, Bearer>> {
        self.client(&customer_token())
    }

    pub fn order_service(&self) -> ProductInfoClient<InterceptedService<Channel, Bearer>> {
        self.client(&order_service_token())
    }

    /// Adds a product as admin and returns its id.
    pub async fn add_product(&self, name: &str, price_cents: i64, stock: i64) -> String {
        self.admin()
            .add_product(Product {
                name: name.into(),
                description: format!("{name} for tests"),
                unit_price: Some(Money::from_minor("USD", price_cents)),
                stock,
                category: "test".into(),
                ..Default::default()
            })
            .await
            .expect("add product")
            .into_inner()
            .value
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits until the server has stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
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

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Bearer(Some(
            format!("Bearer {token}").parse().expect("ascii token"),
        ))
    }

    /// Sends no token at all.
    pub fn none() -> Self {
        Bearer(None)
    }

    /// Sends this exact `authorization` value.
    pub fn raw(value: &str) -> Self {
        Bearer(Some(value.parse().expect("ascii")))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
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
