//! The common shape of every service's `main`: logs first, then the
//! command, and one clear line on stderr (plus a log record) when it fails.

use std::{future::Future, process::ExitCode};

use crate::config::LogArgs;

/// Installs logging per `log`, runs `command`, and turns its outcome into
/// the process exit code (0 success, 1 failure, 2 unusable log settings).
pub async fn run(
    name: &str,
    log: &LogArgs,
    command: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    if let Err(e) = crate::telemetry::init(log) {
        eprintln!("{name}: {e:#}");
        return ExitCode::from(2);
    }
    match command.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
