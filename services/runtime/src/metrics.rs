//! Prometheus metrics, one registry per server (no process-wide global), on
//! an admin HTTP port separate from gRPC (`METRICS_ADDR`, `/metrics`).
//!
//! The gRPC series keep the names and labels go-grpc-prometheus made
//! standard, so existing dashboards work unchanged:
//! `grpc_{server,client}_started_total`, `…_handled_total` (with
//! `grpc_code`), `…_handling_seconds` (histogram), `…_msg_received_total`,
//! `…_msg_sent_total`, labelled `grpc_type`, `grpc_service`, `grpc_method`.
//! They are recorded by the tower layers in [`crate::telemetry`]. Values
//! that are states rather than events (pool sizes, balancer endpoints) are
//! read when Prometheus scrapes, by [collectors](Metrics::add_collector).

use std::sync::{Arc, Mutex};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder as _, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// Latency buckets (seconds): go-grpc-prometheus's, with four below 5 ms,
/// where this shop's calls are (a getProduct takes a fraction of a
/// millisecond), so a p99 can be told from its tenfold.
const LATENCY_BUCKETS: [f64; 15] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Reads a state into gauges when Prometheus scrapes.
type Collector = Box<dyn Fn(&Metrics) + Send + Sync>;

/// One server's metrics registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    collectors: Mutex<Vec<Collector>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect::<Vec<_>>(),
    )
}

impl Metrics {
    /// A registry for `service` (its `shop_build_info` says so).
    pub fn new(service: &str) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let metrics = Metrics {
            inner: Arc::new(Inner {
                recorder,
                collectors: Mutex::new(Vec::new()),
            }),
        };
        metrics.describe_standard();
        metrics
            .gauge(
                "shop_build_info",
                &[("service", service), ("version", env!("CARGO_PKG_VERSION"))],
            )
            .set(1.0);
        metrics
    }

    fn describe_standard(&self) {
        let r = &self.inner.recorder;
        for side in ["server", "client"] {
            let (started, handled, seconds, received, sent) = match side {
                "server" => (
                    "grpc_server_started_total",
                    "grpc_server_handled_total",
                    "grpc_server_handling_seconds",
                    "grpc_server_msg_received_total",
                    "grpc_server_msg_sent_total",
                ),
                _ => (
                    "grpc_client_started_total",
                    "grpc_client_handled_total",
                    "grpc_client_handling_seconds",
                    "grpc_client_msg_received_total",
                    "grpc_client_msg_sent_total",
                ),
            };
            r.describe_counter(
                started.into(),
                None,
                format!("Total number of RPCs started on the {side}.").into(),
            );
            r.describe_counter(handled.into(), None, format!("Total number of RPCs completed on the {side}, regardless of success or failure.").into());
            r.describe_histogram(
                seconds.into(),
                Some(Unit::Seconds),
                format!("Histogram of response latency (seconds) of gRPC calls on the {side}.")
                    .into(),
            );
            r.describe_counter(
                received.into(),
                None,
                format!("Total number of stream messages received by the {side}.").into(),
            );
            r.describe_counter(
                sent.into(),
                None,
                format!("Total number of stream messages sent by the {side}.").into(),
            );
        }
        r.describe_gauge(
            "shop_build_info".into(),
            None,
            "Service and version; always 1.".into(),
        );
        r.describe_gauge(
            "shop_db_pool_connections".into(),
            None,
            "Database connections by state (idle, in_use).".into(),
        );
        r.describe_gauge(
            "shop_db_pool_max_connections".into(),
            None,
            "Most connections the pool may open.".into(),
        );
        r.describe_gauge(
            "shop_db_pool_waiters".into(),
            None,
            "Calls waiting for a database connection.".into(),
        );
        r.describe_histogram(
            "shop_db_pool_acquire_seconds".into(),
            Some(Unit::Seconds),
            "Time to get a database connection from the pool.".into(),
        );
        r.describe_gauge(
            "shop_balancer_endpoints".into(),
            None,
            "Upstream addresses known to the client-side balancer, by state.".into(),
        );
        r.describe_counter(
            "shop_balancer_picks_total".into(),
            None,
            "Calls the balancer handed to each upstream address.".into(),
        );
        r.describe_counter(
            "shop_grpc_server_shed_total".into(),
            None,
            "Calls refused at once with RESOURCE_EXHAUSTED: the server was at --max-in-flight."
                .into(),
        );
        r.describe_counter(
            "shop_order_watch_reads_total".into(),
            None,
            "Reads of watched orders: one per change, however many streams watch it.".into(),
        );
        r.describe_counter(
            "shop_password_hashes_total".into(),
            None,
            "Password hashes (op=hash) and verifications (op=verify) computed.".into(),
        );
        r.describe_counter(
            "shop_password_hashes_refused_total".into(),
            None,
            "Logins and registrations refused because no hashing slot came within --hash-wait."
                .into(),
        );
        r.describe_counter(
            "shop_upstream_retries_total".into(),
            None,
            "Idempotent calls to another service sent again after UNAVAILABLE.".into(),
        );
        r.describe_counter(
            "http_server_requests_total".into(),
            None,
            "HTTP requests served, by route and status.".into(),
        );
        r.describe_histogram(
            "http_server_request_duration_seconds".into(),
            Some(Unit::Seconds),
            "HTTP request latency (seconds), by route.".into(),
        );
    }

    /// The counter `name{labels}`; keep the handle for hot paths.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.inner
            .recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// The gauge `name{labels}`.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.inner
            .recorder
            .register_gauge(&key(name, labels), &METADATA)
    }

    /// The histogram `name{labels}` (latency buckets for `_seconds` names).
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.inner
            .recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// Runs `collect` at every scrape, to set gauges from current state.
    pub fn add_collector(&self, collect: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.inner
            .collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(collect));
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        for collect in self
            .inner
            .collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            collect(self);
        }
        self.inner.recorder.handle().render()
    }

    /// Gauges of a PostgreSQL pool, read at each scrape.
    pub fn watch_pool(&self, db: &crate::pg::Db) {
        let db = db.clone();
        self.add_collector(move |m| {
            let open = db.open() as f64;
            let idle = db.idle() as f64;
            m.gauge("shop_db_pool_connections", &[("state", "idle")])
                .set(idle);
            m.gauge("shop_db_pool_connections", &[("state", "in_use")])
                .set((open - idle).max(0.0));
            m.gauge("shop_db_pool_max_connections", &[])
                .set(f64::from(db.max()));
            m.gauge("shop_db_pool_waiters", &[])
                .set(db.waiters() as f64);
        });
    }

    /// When the service's certificate expires (seconds since the epoch),
    /// read at each scrape: an alert can fire before a rotation that did
    /// not happen matters.
    pub fn watch_tls(&self, tls: &crate::tls::Tls) {
        let tls = tls.clone();
        self.add_collector(move |m| {
            if let Some(not_after) = tls.not_after() {
                m.gauge("shop_tls_certificate_expiry_timestamp_seconds", &[])
                    .set(not_after as f64);
            }
        });
    }

    /// Gauges and counters of a client-side balancer, read at each scrape.
    pub fn watch_balancer(&self, upstream: &str, balanced: &crate::balance::Balanced) {
        let balanced = balanced.clone();
        let upstream = upstream.to_owned();
        self.add_collector(move |m| {
            let stats = balanced.stats();
            for state in crate::balance::EndpointState::ALL {
                let n = stats.iter().filter(|s| s.state == state).count();
                m.gauge(
                    "shop_balancer_endpoints",
                    &[("upstream", &upstream), ("state", state.as_str())],
                )
                .set(n as f64);
            }
            for s in &stats {
                m.counter(
                    "shop_balancer_picks_total",
                    &[("upstream", &upstream), ("endpoint", &s.addr.to_string())],
                )
                .absolute(s.picks);
            }
        });
    }
}

/// `/metrics` (and `/healthz`, for the admin port's own probes).
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_help_types_and_labelled_series() {
        let m = Metrics::new("test");
        m.counter(
            "grpc_server_started_total",
            &[
                ("grpc_type", "unary"),
                ("grpc_service", "s"),
                ("grpc_method", "m"),
            ],
        )
        .increment(2);
        m.histogram(
            "grpc_server_handling_seconds",
            &[
                ("grpc_type", "unary"),
                ("grpc_service", "s"),
                ("grpc_method", "m"),
            ],
        )
        .record(0.02);
        let text = m.render();
        assert!(
            text.contains("# TYPE grpc_server_started_total counter"),
            "{text}"
        );
        assert!(text.contains("grpc_server_started_total{grpc_type=\"unary\",grpc_service=\"s\",grpc_method=\"m\"} 2"), "{text}");
        assert!(
            text.contains("# TYPE grpc_server_handling_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("grpc_server_handling_seconds_bucket{grpc_type=\"unary\",grpc_service=\"s\",grpc_method=\"m\",le=\"0.025\"} 1"), "{text}");
        assert!(text.contains("shop_build_info{service=\"test\""), "{text}");
    }

    #[test]
    fn registries_are_separate() {
        let (a, b) = (Metrics::new("a"), Metrics::new("b"));
        a.counter("x_total", &[]).increment(1);
        assert!(a.render().contains("x_total 1"));
        assert!(!b.render().contains("x_total"));
    }
}
