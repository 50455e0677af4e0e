//! Each service spawned in-process, on port 0, through its real `run`.

use std::{future::Future, net::SocketAddr, time::Duration};

use std::path::PathBuf;

use shop_runtime::tls::Tls;
use shop_runtime::{
    config::{
        AuthArgs, Config, DbArgs, LimitArgs, LogArgs, ServerArgs, TlsArgs, UpstreamArgs, WebArgs,
    },
    service::{Listeners, Service as _},
    telemetry::LogFormat,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{keys, wait_for_health};

/// A service running in this process.
pub struct Running {
    pub addr: SocketAddr,
    /// The web shop's address (storefront only).
    pub http_addr: Option<SocketAddr>,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    pub database_url: String,
    /// A channel to it (connects lazily).
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Binds port 0 for gRPC, `/metrics` and (with `web`) the web shop,
    /// starts `run(listeners, shutdown)` and waits until it is SERVING.
    pub async fn start<F, Fut>(database_url: String, web: bool, run: F) -> Running
    where
        F: FnOnce(Listeners, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::start_with_tls(database_url, web, None, run).await
    }

    /// Like [`start`](Self::start), for a server speaking TLS: its
    /// `channel` calls it as `client` (the server proving it is `localhost`).
    pub async fn start_with_tls<F, Fut>(
        database_url: String,
        web: bool,
        client: Option<&Tls>,
        run: F,
    ) -> Running
    where
        F: FnOnce(Listeners, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        crate::init_logs();
        let listeners = Listeners {
            grpc: bind().await,
            web: if web { Some(bind().await) } else { None },
            metrics: Some(bind().await),
            health: None,
        };
        let addrs = listeners.addrs().expect("bound addresses");
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run(listeners, rx));
        let channel = shop_runtime::tls::connect::channel(
            &addrs.grpc.to_string(),
            client.map(|tls| (tls, "localhost")),
            Duration::from_secs(5),
        )
        .expect("channel");
        let running = Running {
            addr: addrs.grpc,
            http_addr: addrs.web,
            metrics_addr: addrs.metrics.expect("metrics bound"),
            database_url,
            channel,
            shutdown: Some(tx),
            task: Some(task),
        };
        running.wait_for(ServingStatus::Serving).await;
        running
    }

    /// Waits (up to 10 s) until its overall health is `status`.
    pub async fn wait_for(&self, status: ServingStatus) {
        wait_for_health(self.channel.clone(), "", status).await;
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
        match self.task.take() {
            Some(task) => task.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

fn server_args() -> ServerArgs {
    ServerArgs {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shutdown_grace: Duration::from_secs(10),
        drain_delay: Duration::ZERO,
        metrics_addr: shop_runtime::config::OptionalAddr(None),
        addr_file: None,
        faults_file: None,
    }
}

fn db_args(database_url: String) -> DbArgs {
    DbArgs {
        database_url,
        database_password_file: None,
        db_max_connections: 8,
        db_acquire_timeout: TEST_PATIENCE,
        db_health_interval: Duration::from_millis(100),
        db_statement_timeout: TEST_PATIENCE,
        db_lock_timeout: TEST_PATIENCE,
        db_idle_in_transaction_timeout: TEST_PATIENCE,
    }
}

fn log_args() -> LogArgs {
    LogArgs {
        log_format: LogFormat::Text,
        log_level: "info".into(),
    }
}

/// The flags every service has, for `database_url` trusting `trusted_issuers`.
fn config<A: clap::Args>(database_url: String, trusted_issuers: &str, service: A) -> Config<A> {
    Config {
        server: server_args(),
        // Tests of concurrency fire hundreds of calls at once to see every
        // one decided; the load-shedding tests set their own limit.
        limits: LimitArgs {
            max_in_flight: 1000,
            ..LimitArgs::default()
        },
        auth: AuthArgs {
            trusted_issuers: trusted_issuers.to_owned(),
            token_max_lifetime: Duration::from_secs(12 * 3600),
        },
        tls: TlsArgs::default(),
        db: db_args(database_url),
        log: log_args(),
        migrate: true,
        service,
    }
}

/// How a service calls the others: as `issuer`, with the tests' patience.
fn upstream_args(signing_key_file: PathBuf, issuer: &str) -> UpstreamArgs {
    UpstreamArgs {
        signing_key_file,
        token_issuer: Some(issuer.into()),
        upstream_timeout: TEST_PATIENCE,
        upstream_retries: 2,
        resolve_interval: Duration::from_secs(1),
    }
}

/// A productinfo configuration for `database_url`.
pub fn productinfo_config(database_url: String) -> productinfo::Config {
    config(
        database_url,
        &keys().productinfo_trusts,
        productinfo::Args {
            default_currency: "USD".into(),
            reserve_callers: vec!["order".into()],
            database_read_url: None,
            database_read_max_lag: Duration::from_secs(2),
        },
    )
}

/// productinfo on a fresh database.
pub async fn productinfo() -> Running {
    productinfo_with(productinfo_config(
        crate::fresh_database("productinfo").await,
    ))
    .await
}

/// productinfo with this exact configuration.
pub async fn productinfo_with(config: productinfo::Config) -> Running {
    productinfo_over(config, None).await
}

/// productinfo with this exact configuration (with TLS flags), called
/// (for its health, and through `channel`) as `client`.
pub async fn productinfo_over(config: productinfo::Config, client: Option<&Tls>) -> Running {
    let url = config.db.database_url.clone();
    Running::start_with_tls(url, false, client, |listeners, stop| {
        productinfo::ProductInfo::run(config, listeners, async {
            let _ = stop.await;
        })
    })
    .await
}

/// Upstream deadline and pool wait in tests: generous, because debug builds share two
/// cores with every other test; tests of deadlines set their own.
const TEST_PATIENCE: Duration = Duration::from_secs(15);

/// An order configuration for `database_url`, calling productinfo at
/// `productinfo_target`.
pub fn order_config(database_url: String, productinfo_target: &str) -> order::Config {
    config(
        database_url,
        &keys().order_trusts,
        order::Args {
            productinfo_target: productinfo_target.parse().expect("target"),
            upstream: upstream_args(keys().order_key.clone(), "order"),
            shipment_batch_size: 3,
            release_interval: Duration::from_millis(200),
            abandoned_after: Duration::from_secs(60),
            watch_max_per_caller: 5,
            watch_max_total: 1000,
            watch_max_lifetime: Duration::from_secs(1800),
        },
    )
}

/// A storefront configuration for `database_url`, calling productinfo and
/// order at the given targets.
pub fn storefront_config(
    database_url: String,
    productinfo_target: &str,
    order_target: &str,
) -> storefront::Config {
    config(
        database_url,
        &keys().storefront_trusts,
        storefront::Args {
            web: WebArgs {
                http_listen: "127.0.0.1:0".parse().expect("addr"),
                http_max_connections: 1024,
            },
            productinfo_target: productinfo_target.parse().expect("target"),
            order_target: order_target.parse().expect("target"),
            upstream: upstream_args(keys().storefront_key.clone(), "storefront"),
            cookie_secure: false,
            trusted_proxies: Default::default(),
            session_ttl: Duration::from_secs(3600),
            session_max_lifetime: Duration::from_secs(7 * 24 * 3600),
            hash_concurrency: 2,
            hash_wait: Duration::from_secs(5),
            login_failures_per_email: 5,
            login_failures_per_client: 30,
            registrations_per_client: 10,
            admin_email: None,
            admin_password_file: None,
        },
    )
}

/// storefront with this exact configuration.
pub async fn storefront_with(config: storefront::Config) -> Running {
    let url = config.db.database_url.clone();
    Running::start(url, true, |listeners, stop| {
        storefront::Storefront::run(config, listeners, async {
            let _ = stop.await;
        })
    })
    .await
}

/// order with this exact configuration.
pub async fn order_with(config: order::Config) -> Running {
    let url = config.db.database_url.clone();
    Running::start(url, false, |listeners, stop| {
        order::OrderManagement::run(config, listeners, async {
            let _ = stop.await;
        })
    })
    .await
}
