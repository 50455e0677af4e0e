//! The common shape of every service's `main`: logs first, then the
//! command, and one clear line on stderr (plus a log record) when it fails.

use std::{future::Future, process::ExitCode};

use crate::config::LogArgs;

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
