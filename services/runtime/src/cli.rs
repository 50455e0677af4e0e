//! The common shape of every service's `main`: logs first, then the
//! command, and one clear line on stderr (plus a log record) when it fails.

use std::{future::Future, net::SocketAddr, process::ExitCode};

use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

use crate::config::{DbArgs, LogArgs};

/// Installs logging and tracing per `log` for service `name`, runs
/// `command`, flushes traces, and turns the outcome into the process exit
/// code (0 success, 1 failure, 2 unusable log settings).
pub async fn run(
    name: &str,
    log: &LogArgs,
    command: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let telemetry = match crate::telemetry::init(log, name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match command.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Spans still buffered are exported before the process ends.
    telemetry.shutdown().await;
    code
}

/// The `migrate` command of service `name`: applies `migrator` to the
/// database of `db` (waiting up to a minute for it) and exits.
pub async fn migrate(name: &str, db: &DbArgs, log: &LogArgs, migrator: &Migrator) -> ExitCode {
    run(name, log, async move {
        crate::pg::migrate(&crate::pg::connect_options(db, name)?, migrator).await?;
        tracing::info!("migrations applied");
        Ok(())
    })
    .await
}

/// The `check-config` command of service `name`: runs `check` (which
/// contacts nothing) and says the configuration is OK if it passes.
pub async fn check_config(
    name: &str,
    log: &LogArgs,
    check: impl FnOnce() -> anyhow::Result<()>,
) -> ExitCode {
    run(name, log, async {
        check()?;
        println!("{name}: configuration OK");
        Ok(())
    })
    .await
}

/// Listens on `addr`, or says which address could not be had.
pub async fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
