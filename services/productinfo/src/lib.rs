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

use std::{future::Future, process::ExitCode, sync::Arc};

use shop_proto::ecommerce::product_info_server::{ProductInfoServer, SERVICE_NAME};
use shop_runtime::{
    auth::{AuthInterceptor, Verifier},
    pg, server,
};
use sqlx::migrate::Migrator;
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

/// What `main.rs` runs: logs, then serve, migrate or check the configuration.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(config) => {
            let log = config.log.clone();
            shop_runtime::cli::run(NAME, &log, async move {
                let listener = shop_runtime::cli::listen(config.server.listen).await?;
                run(*config, listener, server::shutdown_signal()).await
            })
            .await
        }
        Command::Migrate { db, log } => {
            shop_runtime::cli::migrate(NAME, &db, &log, &MIGRATOR).await
        }
        Command::CheckConfig(config) => {
            shop_runtime::cli::check_config(NAME, &config.log, || check_config(&config)).await
        }
    }
}

/// Everything `run` would refuse, found without contacting anything.
pub fn check_config(config: &Config) -> anyhow::Result<()> {
    pg::connect_options(&config.db, NAME)?;
    config.auth.issuers()?;
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
        pg::migrate(&options, &MIGRATOR).await?;
    }
    let server = server::Server::new(NAME, &[shop_proto::FILE_DESCRIPTOR_SET]);
    let db = pg::Db::new(pg::pool(&config.db, options.clone()), Some(&server.metrics));
    let verifier = Arc::new(Verifier::new(NAME, config.auth.issuers()?));
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

    let result = server
        .serve(listener, routes, (&config.server).into(), shutdown)
        .await;
    checker.abort();
    db.close().await;
    result
}
