//! `shopctl fault`: switch the fault flags of a local shop (`make up`
//! gives every service `.local/faults.json`; the services read it again
//! every second). The file is an OpenFeature flagd flag file; see
//! `services/runtime/src/fault.rs` for what each flag does.
//!
//! ```text
//! shopctl fault set productinfo getProduct --error-rate 0.3 --code UNAVAILABLE
//! shopctl fault set order '*' --latency 200ms --jitter 100ms
//! shopctl fault set storefront --fail-readiness
//! shopctl fault list
//! shopctl fault clear            # every flag; or: clear productinfo getProduct
//! ```

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use shop_runtime::{config::parse_duration, fault::Faults};

/// Switch fault flags.
#[derive(clap::Args, Debug)]
pub struct FaultArgs {
    /// The flag file the services read.
    #[arg(
        long,
        global = true,
        env = "SHOP_FAULTS_FILE",
        default_value = ".local/faults.json"
    )]
    pub file: PathBuf,

    #[command(subcommand)]
    pub command: FaultCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum FaultCommand {
    /// Switch a fault on (replacing the same kind of fault of the same RPC).
    Set {
        /// productinfo, order or storefront.
        service: String,
        /// The RPC as in the proto (getProduct), or * for all; not for
        /// --fail-readiness.
        rpc: Option<String>,
        /// Share of calls that fail (0 to 1).
        #[arg(long)]
        error_rate: Option<f64>,
        /// The status code they fail with.
        #[arg(long, default_value = "UNAVAILABLE")]
        code: String,
        /// Time added before calls are served.
        #[arg(long, value_parser = parse_duration)]
        latency: Option<Duration>,
        /// Up to this much more, uniformly spread.
        #[arg(long, value_parser = parse_duration, default_value = "0s")]
        jitter: Duration,
        /// Share of calls that wait (0 to 1).
        #[arg(long, default_value_t = 1.0)]
        latency_rate: f64,
        /// Report NOT_SERVING on the readiness health check.
        #[arg(long)]
        fail_readiness: bool,
    },
    /// Switch faults off: one RPC's, one service's, or (no arguments) all.
    Clear {
        service: Option<String>,
        rpc: Option<String>,
    },
    /// The faults each service has on.
    List,
}

/// `shopctl fault`.
pub fn fault(args: &FaultArgs) -> anyhow::Result<()> {
    let mut file = read(&args.file)?;
    let flags = file
        .get_mut("flags")
        .and_then(Value::as_object_mut)
        .context("the flag file has no \"flags\" object")?;
    match &args.command {
        FaultCommand::Set {
            service,
            rpc,
            error_rate,
            code,
            latency,
            jitter,
            latency_rate,
            fail_readiness,
        } => {
            let on = |value: Value| json!({"state": "ENABLED", "defaultVariant": "on", "variants": {"on": value, "off": null}});
            let mut changes = Vec::new();
            if *fail_readiness {
                changes.push((format!("{service}.readiness"), on(json!(true))));
            }
            if let Some(rpc) = rpc {
                if let Some(rate) = error_rate {
                    changes.push((
                        format!("{service}.{rpc}.error"),
                        on(json!({"rate": rate, "code": code})),
                    ));
                }
                if let Some(latency) = latency {
                    changes.push((
                        format!("{service}.{rpc}.latency"),
                        on(json!({
                            "rate": latency_rate,
                            "ms": latency.as_millis() as u64,
                            "jitterMs": jitter.as_millis() as u64,
                        })),
                    ));
                }
            }
            if changes.is_empty() {
                bail!(
                    "nothing to set: give an RPC and --error-rate or --latency, or --fail-readiness"
                );
            }
            for (key, flag) in changes {
                flags.insert(key, flag);
            }
        }
        FaultCommand::Clear { service, rpc } => {
            let prefix = match (service, rpc) {
                (None, _) => String::new(),
                (Some(service), None) => format!("{service}."),
                (Some(service), Some(rpc)) => format!("{service}.{rpc}."),
            };
            flags.retain(|key, _| !key.starts_with(&prefix));
        }
        FaultCommand::List => {}
    }
    let text = serde_json::to_string_pretty(&file)?;
    for service in ["productinfo", "order", "storefront"] {
        let faults = Faults::parse(service, &text).map_err(anyhow::Error::msg)?;
        for line in faults.describe() {
            println!("{service:<12} {line}");
        }
    }
    if !matches!(args.command, FaultCommand::List) {
        write(&args.file, &text)?;
    }
    Ok(())
}

fn read(path: &std::path::Path) -> anyhow::Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a flag file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({"flags": {}})),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces the file whole (a service never reads half of it).
fn write(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
