//! The order service of the shop: `ecommerce.OrderManagement` on its own
//! PostgreSQL database, calling the catalog (productinfo) through
//! client-side round-robin with its own service token.
//!
//! [`run`] is the whole server; `main.rs` only parses arguments and calls
//! [`main`]. Tests call [`run`] with a listener on port 0 and a oneshot as
//! the shutdown signal.

mod catalog;
pub mod config;
mod db;
mod error;
mod grpc;
mod order;
mod release;
mod watch;

use std::{future::Future, process::ExitCode, sync::Arc};

use shop_proto::ecommerce::order_management_server::{OrderManagementServer, SERVICE_NAME};
use shop_runtime::{
    auth::{AuthInterceptor, Signer, Verifier},
    pg, server,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::{
    codec::CompressionEncoding, service::Routes, service::interceptor::InterceptedService,
};

pub use config::{Cli, Command, Config};

/// The name this service answers to in token audiences and logs.
pub const NAME: &str = "order";

/// The order service's schema migrations, embedded in the binary.
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
    Signer::from_file(
        config.upstream.token_issuer.clone(),
        &config.upstream.signing_key_file,
    )?;
    Ok(())
}

/// Serves orders on `listener` until `shutdown` completes, then drains
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
    let signer = Signer::from_file(
        config.upstream.token_issuer.clone(),
        &config.upstream.signing_key_file,
    )?;
    let catalog = catalog::Catalog::new(
        config.upstream.productinfo_target.clone(),
        signer,
        config.upstream.upstream_timeout,
        config.upstream.resolve_interval,
        &server.metrics,
    );

    let health = server.health.clone();
    let checker = pg::spawn_health_check(
        options.clone(),
        &MIGRATOR,
        health.clone(),
        vec![String::new(), SERVICE_NAME.to_owned()],
        config.db.db_health_interval,
    );
    let watchers = watch::Watchers::default();
    let listener_task = watchers.spawn_listener(options);
    let releaser = release::spawn(
        db.clone(),
        catalog.clone(),
        health.clone(),
        config.release_interval,
        config.abandoned_after,
    );

    let service = OrderManagementServer::new(grpc::OrderService::new(
        db.clone(),
        catalog,
        watchers,
        health,
        config.shipment_batch_size as usize,
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
    listener_task.abort();
    let _ = releaser.await;
    db.close().await;
    result
}
