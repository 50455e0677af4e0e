//! Faults on purpose: a switchboard of flags that make a service fail a
//! share of an RPC's calls, answer them late, or report itself not ready,
//! changed while it runs, so a learner can watch retries, balancing,
//! tracing and alerts react (the OpenTelemetry demo's feature flags are the
//! model).
//!
//! The flags live in a JSON file in the shape of OpenFeature's flagd flag
//! files (`--faults-file`, a mounted ConfigMap in Kubernetes, `shopctl
//! fault` locally), read again every second; every change is logged. Off
//! by default: no file, no flag, or a flag whose state is `DISABLED` or
//! whose default variant is `null` or `false` changes nothing.
//!
//! ```json
//! {"flags": {
//!   "productinfo.getProduct.error":   {"state": "ENABLED", "defaultVariant": "on",
//!       "variants": {"on": {"rate": 0.5, "code": "UNAVAILABLE"}, "off": null}},
//!   "order.*.latency":                {"state": "ENABLED", "defaultVariant": "on",
//!       "variants": {"on": {"rate": 1.0, "ms": 200, "jitterMs": 100}}},
//!   "storefront.readiness":           {"state": "ENABLED", "defaultVariant": "on",
//!       "variants": {"on": true, "off": false}}
//! }}
//! ```
//!
//! Keys are `<service>.<rpc>.error`, `<service>.<rpc>.latency` (`<rpc>` as
//! in the proto, or `*` for every business RPC; health and reflection are
//! never touched) and `<service>.readiness`. A faulted call is counted in
//! `shop_faults_injected_total{method, kind}` and its `grpc.server` span
//! carries `shop.fault`.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Duration,
};

use serde::Deserialize;
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

use crate::{health::HealthRegistry, metrics::Metrics};

/// An error share: `rate` of the calls fail with `code`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFault {
    pub rate: f64,
    #[serde(deserialize_with = "code")]
    pub code: Code,
}

/// Added latency: `rate` of the calls wait `ms` plus up to `jitter_ms`
/// more (uniform) before they are served.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LatencyFault {
    pub rate: f64,
    pub ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
}

/// The faults of one service, as the file says now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// By RPC name (`*`: every business RPC).
    errors: HashMap<String, ErrorFault>,
    latencies: HashMap<String, LatencyFault>,
    /// Report NOT_SERVING whatever the dependencies say.
    pub fail_readiness: bool,
}

/// One flag of a flagd flag file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flag {
    #[serde(default = "enabled")]
    state: String,
    variants: HashMap<String, serde_json::Value>,
    default_variant: String,
}

fn enabled() -> String {
    "ENABLED".into()
}

#[derive(Debug, Deserialize)]
struct FlagFile {
    #[serde(default)]
    flags: HashMap<String, Flag>,
}

fn code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
    let name = String::deserialize(d)?;
    code_from_name(&name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown gRPC status code {name:?} (UNAVAILABLE, INTERNAL, ...)"
        ))
    })
}

/// The code named `name` as gRPC writes it (`UNAVAILABLE`).
pub fn code_from_name(name: &str) -> Option<Code> {
    (1..=16)
        .map(Code::from_i32)
        .find(|c| crate::telemetry::code_name(*c) == name)
}

impl Faults {
    /// The faults `text` (a flag file) sets for `service`; flags of other
    /// services are ignored. An error names the flag and what is wrong.
    pub fn parse(service: &str, text: &str) -> Result<Faults, String> {
        let file: FlagFile =
            serde_json::from_str(text).map_err(|e| format!("not a flag file: {e}"))?;
        let mut faults = Faults::default();
        for (key, flag) in file.flags {
            let Some(rest) = key.strip_prefix(service).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let value = flag
                .variants
                .get(&flag.default_variant)
                .ok_or_else(|| format!("{key}: no variant {:?}", flag.default_variant))?;
            if flag.state != "ENABLED"
                || value.is_null()
                || value == &serde_json::Value::Bool(false)
            {
                continue;
            }
            let bad = |e: serde_json::Error| format!("{key}: {e}");
            let rate_ok = |rate: f64| {
                (0.0..=1.0)
                    .contains(&rate)
                    .then_some(())
                    .ok_or_else(|| format!("{key}: rate must be between 0 and 1"))
            };
            match rest.rsplit_once('.') {
                Some((rpc, "error")) => {
                    let fault: ErrorFault = serde_json::from_value(value.clone()).map_err(bad)?;
                    rate_ok(fault.rate)?;
                    faults.errors.insert(rpc.to_owned(), fault);
                }
                Some((rpc, "latency")) => {
                    let fault: LatencyFault = serde_json::from_value(value.clone()).map_err(bad)?;
                    rate_ok(fault.rate)?;
                    faults.latencies.insert(rpc.to_owned(), fault);
                }
                None if rest == "readiness" => {
                    faults.fail_readiness = value == &serde_json::Value::Bool(true)
                }
                _ => {
                    return Err(format!(
                        "{key}: expected <service>.<rpc>.error, <service>.<rpc>.latency or <service>.readiness"
                    ));
                }
            }
        }
        Ok(faults)
    }

    fn error(&self, rpc: &str) -> Option<&ErrorFault> {
        self.errors.get(rpc).or_else(|| self.errors.get("*"))
    }

    fn latency(&self, rpc: &str) -> Option<&LatencyFault> {
        self.latencies.get(rpc).or_else(|| self.latencies.get("*"))
    }

    /// One line per active fault, for logs and `shopctl fault list`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .errors
            .iter()
            .map(|(rpc, f)| {
                format!(
                    "{rpc}: {:.0}% fail {}",
                    f.rate * 100.0,
                    crate::telemetry::code_name(f.code)
                )
            })
            .chain(self.latencies.iter().map(|(rpc, f)| {
                format!(
                    "{rpc}: {:.0}% wait {}–{} ms",
                    f.rate * 100.0,
                    f.ms,
                    f.ms + f.jitter_ms
                )
            }))
            .collect();
        if self.fail_readiness {
            lines.push("readiness: NOT_SERVING".into());
        }
        lines.sort();
        lines
    }
}

/// The switchboard of one service: the faults in force, shared by the
/// layer and the watcher.
#[derive(Clone, Debug, Default)]
pub struct Switchboard {
    current: Arc<RwLock<Arc<Faults>>>,
}

impl Switchboard {
    fn get(&self) -> Arc<Faults> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `faults` in force.
    pub fn set(&self, faults: Faults) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(faults);
    }

    /// Reads `file` every second for `service`'s flags, putting each change
    /// in force and logging it; holds `health` NOT_SERVING while readiness
    /// is failed. A file that cannot be read or parsed is logged once and
    /// the faults in force kept (a missing file is no faults).
    pub async fn watch(self, service: &'static str, file: PathBuf, health: HealthRegistry) {
        let mut last_text: Option<String> = None;
        loop {
            let text = match tokio::fs::read_to_string(&file).await {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => r#"{"flags": {}}"#.to_owned(),
                Err(e) => format!("unreadable: {e}"),
            };
            if last_text.as_deref() != Some(text.as_str()) {
                match Faults::parse(service, &text) {
                    Ok(faults) => {
                        if *self.get() != faults {
                            let active = faults.describe();
                            if active.is_empty() {
                                tracing::info!(file = %file.display(), "faults: none");
                            } else {
                                tracing::warn!(file = %file.display(), faults = ?active, "faults in force");
                            }
                            health.hold_not_serving(faults.fail_readiness);
                            self.set(faults);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "fault flags unusable; keeping the faults in force")
                    }
                }
                last_text = Some(text);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Injects the switchboard's faults into the calls of the server it wraps.
#[derive(Clone, Debug)]
pub struct FaultLayer {
    board: Switchboard,
    metrics: Metrics,
}

impl FaultLayer {
    pub fn new(board: Switchboard, metrics: &Metrics) -> Self {
        Self {
            board,
            metrics: metrics.clone(),
        }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> FaultService<S> {
        FaultService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`FaultLayer`].
#[derive(Clone, Debug)]
pub struct FaultService<S> {
    inner: S,
    layer: FaultLayer,
}

/// Health and reflection are never faulted: probes and tools must work.
fn plumbing(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

impl<S> Service<http::Request<Body>> for FaultService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let faults = self.layer.board.get();
        if faults.errors.is_empty() && faults.latencies.is_empty() || plumbing(request.uri().path())
        {
            return futures::future::Either::Left(self.inner.call(request));
        }
        let path = request.uri().path().to_owned();
        let rpc = path.rsplit('/').next().unwrap_or_default().to_owned();
        let error = faults
            .error(&rpc)
            .filter(|f| fastrand::f64() < f.rate)
            .cloned();
        let delay = faults
            .latency(&rpc)
            .filter(|f| fastrand::f64() < f.rate)
            .map(|f| Duration::from_millis(f.ms + fastrand::u64(0..=f.jitter_ms)));
        let span = tracing::Span::current();
        let counted = |kind: &'static str| {
            span.record("shop.fault", kind);
            self.layer
                .metrics
                .counter(
                    "shop_faults_injected_total",
                    &[("method", &path), ("kind", kind)],
                )
                .increment(1);
        };
        if delay.is_some() {
            counted("latency");
        }
        if error.is_some() {
            counted("error");
        }
        // The ready inner service is taken for this call; a clone waits for
        // the next (tower's usual pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        futures::future::Either::Right(Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if let Some(error) = error {
                return Ok(Status::new(
                    error.code,
                    format!(
                        "fault injected: the flag {rpc}.error fails {:.0}% of calls",
                        error.rate * 100.0
                    ),
                )
                .into_http());
            }
            inner.call(request).await
        }))
    }
}

#[cfg(test)]
mod tests;
