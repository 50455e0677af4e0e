//! The UI-facing service of the shop: the web shop for browsers (HTTP) and
//! `ecommerce.Storefront` for scripts (gRPC), over its own PostgreSQL
//! database of accounts, sessions and carts. It reaches productinfo and
//! order only over gRPC, through round-robin clients.
//!
//! [`run`] is the whole server; `main.rs` only parses arguments and calls
//! [`main`]. Tests call [`run`] with listeners on port 0.

mod accounts;
mod cart;
mod checkout;
pub mod config;
mod db;
mod error;
mod grpc;
mod upstream;
mod web;

use std::{future::Future, net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use shop_proto::ecommerce::storefront_server::{SERVICE_NAME, StorefrontServer};
use shop_runtime::{
    auth::{AuthInterceptor, Signer, Verifier},
    health::HealthRegistry,
    pg, server,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::{
    codec::CompressionEncoding, service::Routes, service::interceptor::InterceptedService,
};

pub use config::{Cli, Command, Config};

/// The name this service answers to in token audiences and logs.
pub const NAME: &str = "storefront";

/// The storefront's schema migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How often expired sessions and old login failures are removed.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(600);

/// What `main.rs` runs: logs, then serve, migrate or check the configuration.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(config) => {
            let log = config.log.clone();
            shop_runtime::cli::run(NAME, &log, async move {
                let grpc = shop_runtime::cli::listen(config.server.listen).await?;
                let http = shop_runtime::cli::listen(config.http_listen).await?;
                run(*config, grpc, http, server::shutdown_signal()).await
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

/// The first admin's password, from its file.
fn admin_password(config: &Config) -> anyhow::Result<Option<(String, String)>> {
    match (&config.admin_email, &config.admin_password_file) {
        (Some(email), Some(file)) => {
            let password = std::fs::read_to_string(file).map_err(|e| {
                anyhow::anyhow!("cannot read --admin-password-file {}: {e}", file.display())
            })?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            if password.chars().count() < accounts::MIN_PASSWORD {
                anyhow::bail!(
                    "the admin password in {} is shorter than {} characters",
                    file.display(),
                    accounts::MIN_PASSWORD
                );
            }
            Ok(Some((email.clone(), password)))
        }
        _ => Ok(None),
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
    admin_password(config)?;
    Ok(())
}

/// Serves the web shop on `http` and the gRPC API on `grpc` until
/// `shutdown` completes, then drains both.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    check_config(&config)?;
    let options = pg::connect_options(&config.db, NAME)?;
    if config.migrate {
        pg::migrate(&options, &MIGRATOR).await?;
    }
    let server = server::Server::new(NAME, &[shop_proto::FILE_DESCRIPTOR_SET]);
    let pool = pg::Db::new(pg::pool(&config.db, options.clone()), Some(&server.metrics));
    if let Some((email, password)) = admin_password(&config)? {
        // Needs the schema: retried by the caller's restart policy if the
        // database is not migrated yet.
        accounts::ensure_admin(&pool, &email, &password)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the first admin: {e}"))?;
    }
    let verifier = Arc::new(Verifier::new(NAME, config.auth.issuers()?));
    let upstreams = upstream::Upstreams::new(&config.upstream, &server.metrics)?;
    let health = server.health.clone();
    let checker = pg::spawn_health_check(
        options,
        &MIGRATOR,
        health.clone(),
        vec![String::new(), SERVICE_NAME.to_owned()],
        config.db.db_health_interval,
    );
    let cleaner = spawn_cleanup(pool.clone(), health.clone());

    let service = StorefrontServer::new(grpc::StorefrontService::new(
        pool.clone(),
        upstreams.clone(),
        Signer::from_file(
            config.upstream.token_issuer.clone(),
            &config.upstream.signing_key_file,
        )?,
    ))
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip);
    let routes = server.routes(Routes::new(InterceptedService::new(
        service,
        AuthInterceptor::allowing_anonymous(verifier),
    )))?;

    let app = web::router(web::AppState {
        inner: Arc::new(web::Inner {
            pool: pool.clone(),
            metrics: server.metrics.clone(),
            upstreams,
            health: health.clone(),
            cookie_secure: config.cookie_secure,
            session_ttl: config.session_ttl,
            trust_forwarded_for: config.trust_forwarded_for,
        }),
    });
    if let Some(path) = &config.http_addr_file {
        std::fs::write(path, http.local_addr()?.to_string())?;
    }
    tracing::info!(addr = %http.local_addr()?, "web shop listening");

    // One shutdown signal for both servers: the gRPC side turns health
    // NOT_SERVING and drains; the web side stops accepting and lets requests
    // (and live status streams, which end at shutdown) finish.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut web_stop = stop_rx.clone();
    let grace = config.server.shutdown_grace;
    let web = tokio::spawn(async move {
        let serving = axum::serve(
            http,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = web_stop.wait_for(|stop| *stop).await;
        });
        serving.await
    });
    let mut grpc_stop = stop_rx;
    let result = server.serve(grpc, routes, (&config.server).into(), async move {
        let _ = grpc_stop.wait_for(|stop| *stop).await;
    });
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let (result, ()) = tokio::join!(result, signal);
    match tokio::time::timeout(grace, web).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "web server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "web server task failed"),
        Err(_) => tracing::warn!("web requests still running after the grace period were cut"),
    }
    checker.abort();
    cleaner.abort();
    pool.close().await;
    result
}

fn spawn_cleanup(
    pool: shop_runtime::pg::Db,
    health: HealthRegistry,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(CLEANUP_INTERVAL) => {}
                () = health.on_shutdown() => return,
            }
            match db::delete_expired(&pool, accounts::FAILURE_WINDOW).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "expired sessions removed"),
                Err(e) => tracing::warn!(error = %e, "session cleanup failed"),
            }
        }
    })
}
