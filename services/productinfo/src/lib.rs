//! The catalog service of the shop: `ecommerce.ProductInfo` on its own
//! PostgreSQL database.
//!
//! [`run`] is the whole server; `main.rs` only parses arguments and calls
//! [`main`]. Tests call [`run`] with a listener on port 0 and a oneshot as
//! the shutdown signal, so they exercise exactly what production runs.

pub mod config;
mod db;
mod error;
mod grpc;
mod product;
mod reservation;

use std::{future::Future, process::ExitCode, sync::Arc, time::Duration};

use shop_proto::ecommerce::product_info_server::{ProductInfoServer, SERVICE_NAME};
use shop_runtime::{
    auth::{AuthInterceptor, TrustedIssuers, Verifier},
    pg, server,
};
use sqlx::{migrate::Migrator, postgres::PgConnectOptions};
use tokio::net::TcpListener;
use tonic::{
    codec::CompressionEncoding, service::Routes, service::interceptor::InterceptedService,
};

pub use config::{Cli, Command, Config};
pub use db::GET_PRODUCT_SQL;
pub use grpc::ProductInfoService;

/// The name this service answers to in token audiences and logs.
pub const NAME: &str = "productinfo";

/// The catalog's schema migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How long `migrate` waits for the database to become reachable.
const MIGRATE_WAIT: Duration = Duration::from_secs(60);

/// Applies pending migrations, waiting up to a minute for the database.
pub async fn migrate(options: &PgConnectOptions) -> anyhow::Result<()> {
    pg::migrate(options, &MIGRATOR, MIGRATE_WAIT).await
}

/// What `main.rs` runs: logs, then serve, migrate or check the configuration.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(config) => {
            let log = config.log.clone();
            shop_runtime::cli::run(NAME, &log, async move {
                let listener = TcpListener::bind(config.server.listen).await.map_err(|e| {
                    anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen)
                })?;
                run(*config, listener, server::shutdown_signal()).await
            })
            .await
        }
        Command::Migrate { db, log } => {
            shop_runtime::cli::run(NAME, &log, async move {
                migrate(&pg::connect_options(&db, NAME)?).await?;
                tracing::info!("migrations applied");
                Ok(())
            })
            .await
        }
        Command::CheckConfig(config) => {
            shop_runtime::cli::run(NAME, &config.log, async {
                check_config(&config)?;
                println!("{NAME}: configuration OK");
                Ok(())
            })
            .await
        }
    }
}

/// Everything `run` would refuse, found without contacting anything.
pub fn check_config(config: &Config) -> anyhow::Result<()> {
    pg::connect_options(&config.db, NAME)?;
    let issuers = TrustedIssuers::load(&config.auth.trusted_issuers)?;
    if issuers.is_empty() {
        anyhow::bail!("--trusted-issuers is empty: no token could ever be accepted");
    }
    if !product::is_known_currency(&config.default_currency) {
        anyhow::bail!(
            "--default-currency {:?} is not an ISO 4217 currency code",
            config.default_currency
        );
    }
    Ok(())
}

/// Serves the catalog on `listener` until `shutdown` completes, then drains
/// gracefully (see [`shop_runtime::server`]).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    check_config(&config)?;
    let options = pg::connect_options(&config.db, NAME)?;
    if config.migrate {
        migrate(&options).await?;
    }
    let server = server::Server::new(NAME, &[shop_proto::FILE_DESCRIPTOR_SET]);
    let db = pg::Db::new(pg::pool(&config.db, options.clone()), Some(&server.metrics));
    let verifier = Arc::new(Verifier::new(
        NAME,
        TrustedIssuers::load(&config.auth.trusted_issuers)?,
    ));
    let checker = pg::spawn_health_check(
        options,
        &MIGRATOR,
        server.health.clone(),
        vec![String::new(), SERVICE_NAME.to_owned()],
        config.db.db_health_interval,
    );

    let service = ProductInfoServer::new(ProductInfoService::new(
        db.clone(),
        &config.default_currency,
        config.reserve_callers.clone(),
    ))
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip);
    let routes = server.routes(Routes::new(InterceptedService::new(
        service,
        AuthInterceptor::new(verifier),
    )))?;

    if let Some(path) = &config.addr_file {
        std::fs::write(path, listener.local_addr()?.to_string())?;
    }
    let result = server
        .serve(listener, routes, (&config.server).into(), shutdown)
        .await;
    checker.abort();
    db.close().await;
    result
}
