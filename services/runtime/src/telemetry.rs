//! Logs, traces and the tower layers that observe every RPC.
//!
//! [`init`] installs one global `tracing` subscriber per process:
//! - logs: JSON lines in containers, readable text on a terminal; every line
//!   written inside a span carries that span's `trace_id` and `span_id`;
//! - traces: every span also becomes an OpenTelemetry span, exported over
//!   OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
//!   `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and
//!   `OTEL_TRACES_SAMPLER[_ARG]` variables are honoured). Without an
//!   endpoint, trace ids still flow (from `traceparent` headers to logs and
//!   on to the next service); nothing is exported.
//!
//! [`rpc::RpcLayer`] (servers) and [`client::Observed`] (clients) turn each
//! call into a span with the OpenTelemetry RPC attributes, carry W3C
//! `traceparent` between services, count go-grpc-prometheus metrics and, on
//! servers, write one log line per call. Payloads and metadata (tokens!)
//! are never looked at.

mod call;
pub mod client;
pub mod rpc;

use std::{
    collections::HashMap,
    fmt,
    io::{IsTerminal as _, Write as _},
    sync::Arc,
};

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use prost::Message as _;
use tracing::Subscriber;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::Targets, fmt::MakeWriter, layer::SubscriberExt as _,
    registry::LookupSpan, util::SubscriberInitExt as _,
};

pub(crate) use call::Frames;
pub use call::{ObservedBody, code_name, go_code_name, grpc_status};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Holds the tracer provider; [`shutdown`](Telemetry::shutdown) flushes
/// the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter (on a blocking
    /// thread: the SDK's batch processor blocks while flushing).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: flushing spans failed: {e}");
            }
        })
        .await;
    }
}

/// Target of the span events recording each streamed message.
pub const MESSAGE_TARGET: &str = "grpc_message";

/// Installs the global subscriber and propagator for `service`. Call once,
/// first thing in `main`. Errors if the filter does not parse or the OTLP
/// exporter cannot be built.
pub fn init(args: &crate::config::LogArgs, service: &str) -> anyhow::Result<Telemetry> {
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
    let exporting = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the OTLP exporter: {e}"))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let tracer = provider.tracer(service.to_owned());
    subscriber(tracer, &args.log_level, json, std::io::stdout)?.try_init()?;
    if exporting {
        tracing::info!("exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

/// The subscriber [`init`] installs: spans to OpenTelemetry through
/// `tracer`, log lines filtered by `log_level` to `out`.
fn subscriber<W>(
    tracer: opentelemetry_sdk::trace::SdkTracer,
    log_level: &str,
    json: bool,
    out: W,
) -> anyhow::Result<impl Subscriber + Send + Sync + for<'a> LookupSpan<'a>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Spans of our code and the RPC/message events; not the chatter of
    // libraries below (h2, hyper, sqlx internals). `Targets` rather than
    // `EnvFilter`: it has no span-scoped directives, so entering and
    // leaving a span costs it nothing.
    let trace_filter: Targets = format!(
        "info,{MESSAGE_TARGET}=debug,h2=off,hyper=off,tower=off,sqlx=warn,opentelemetry=off"
    )
    .parse()?;
    // Spans carry what the exporter needs, nothing more: no enter/exit
    // bookkeeping (context activation, busy/idle timing), no thread or
    // source-location attributes. Those cost a clock read and a lock per
    // poll on the hot path.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_context_activation(false)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(trace_filter.clone());
    // The same for logs, unless the filter needs EnvFilter's span directives.
    let logs = LogLayer { json, out };
    let (logs, log_targets) = match log_level.parse::<Targets>() {
        Ok(targets) => (logs.with_filter(targets.clone()).boxed(), Some(targets)),
        Err(_) => {
            let filter = EnvFilter::try_new(log_level)
                .map_err(|e| anyhow::anyhow!("invalid --log-level {log_level:?}: {e}"))?;
            (logs.with_filter(filter).boxed(), None)
        }
    };
    // What either layer could want, decided once per callsite: everything
    // else (h2's and hyper's trace-level spans and events, on every frame)
    // is off before it reaches the registry. Without it the unfiltered
    // `SpanIds` layer made each of them a registry entry and a dispatch:
    // most of a loaded server's CPU. With EnvFilter's span directives
    // nothing can be ruled out per callsite.
    let wanted = log_targets.map(|log_targets| {
        let trace_filter = trace_filter.clone();
        tracing_subscriber::filter::filter_fn(move |meta| {
            trace_filter.would_enable(meta.target(), meta.level())
                || log_targets.would_enable(meta.target(), meta.level())
        })
    });
    Ok(tracing_subscriber::registry()
        .with(wanted)
        .with(SpanIds)
        .with(otel)
        .with(logs))
}

/// Trace and span ids of a span, kept in the span's registry data.
#[derive(Clone, Copy)]
struct TraceIds {
    trace_id: opentelemetry::trace::TraceId,
    span_id: opentelemetry::trace::SpanId,
}

/// Keeps `span`'s OpenTelemetry trace and span ids with the span, so log
/// lines inside it carry them. Call after any `set_parent`.
pub fn record_trace_ids(span: &tracing::Span) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    let otel_span = cx.span();
    let span_context = otel_span.span_context();
    if !span_context.is_valid() {
        return;
    }
    let ids = TraceIds {
        trace_id: span_context.trace_id(),
        span_id: span_context.span_id(),
    };
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span(id)
        {
            data.extensions_mut().insert(ids);
        }
    });
}

thread_local! {
    /// The trace ids of the event being dispatched on this thread, found by
    /// [`SpanIds`] for [`LogLayer`].
    static EVENT_IDS: std::cell::Cell<Option<TraceIds>> = const { std::cell::Cell::new(None) };
}

/// The base layer, without a filter. It sees every span, so it finds the
/// trace ids of each event's span (or its nearest ancestor that has them)
/// for the log layer, whose own view hides the spans its filter disables:
/// with `LOG_LEVEL=warn` the info-level call spans, not their ids. It runs
/// before the layers above it. Being unfiltered matters too: with per-layer
/// filters only, tracing-subscriber 0.3 did not hand events inside spans to
/// the log layer (seen in the e2e trace test; tokio-rs/tracing#2704 is the
/// family of bugs).
struct SpanIds;

impl<S> tracing_subscriber::Layer<S> for SpanIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let ids = ctx.event_span(event).and_then(|span| {
            span.scope()
                .find_map(|span| span.extensions().get::<TraceIds>().copied())
        });
        EVENT_IDS.with(|cell| cell.set(ids));
    }
}

/// Writes one line per event: JSON (timestamp, level, message, the event's
/// fields, target and, inside a traced span, `trace_id` and `span_id`) or
/// readable text. Only events: spans' fields are never formatted, so spans
/// cost nothing here.
struct LogLayer<W> {
    json: bool,
    out: W,
}

impl<S, W> tracing_subscriber::Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let ids = EVENT_IDS.with(std::cell::Cell::get);
        let line = if self.json {
            json_line(event, fields, ids)
        } else {
            text_line(event, fields, ids)
        };
        // One write per line, so lines of concurrent calls never interleave.
        let _ = self.out.make_writer().write_all(line.as_bytes());
    }
}

fn json_line(event: &tracing::Event<'_>, mut fields: EventFields, ids: Option<TraceIds>) -> String {
    let mut object = serde_json::Map::new();
    object.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .into(),
    );
    object.insert("level".into(), event.metadata().level().as_str().into());
    if let Some(message) = fields.message.take() {
        object.insert("message".into(), message.into());
    }
    for (k, v) in fields.fields {
        object.insert(k.to_owned(), v);
    }
    object.insert("target".into(), event.metadata().target().into());
    if let Some(ids) = ids {
        object.insert("trace_id".into(), ids.trace_id.to_string().into());
        object.insert("span_id".into(), ids.span_id.to_string().into());
    }
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

/// Time, level, message, the event's fields and, inside a traced span,
/// `trace_id`.
fn text_line(event: &tracing::Event<'_>, fields: EventFields, ids: Option<TraceIds>) -> String {
    use std::fmt::Write as _;
    let mut line = format!(
        "{} {:>5} {}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        event.metadata().level().as_str(),
        fields.message.unwrap_or_default()
    );
    for (k, v) in fields.fields {
        let _ = match v {
            serde_json::Value::String(text) => write!(line, " {k}={text}"),
            other => write!(line, " {k}={other}"),
        };
    }
    if let Some(ids) = ids {
        let _ = write!(line, " trace_id={}", ids.trace_id);
    }
    line.push('\n');
    line
}

/// An event's message and other fields, in order.
#[derive(Default)]
struct EventFields {
    message: Option<String>,
    fields: Vec<(&'static str, serde_json::Value)>,
}

impl tracing::field::Visit for EventFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.fields.push((field.name(), value.into()));
        }
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.fields.push((field.name(), value.into()));
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.fields.push((field.name(), value.into()));
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.fields.push((field.name(), value.into()));
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.fields.push((field.name(), value.into()));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.fields.push((field.name(), text.into()));
        }
    }
}

/// Reads W3C trace context from HTTP (or gRPC) headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes W3C trace context into HTTP (or gRPC) headers.
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The caller's trace context from incoming headers (`traceparent`).
pub fn extract_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Links `span` to the trace context in `headers` without making it the
/// parent. For requests from outside the shop (browsers): a client may not
/// choose the shop's trace ids, but the trace that sent the request stays
/// reachable from the span.
pub fn link_context(span: &tracing::Span, headers: &http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let remote = extract_context(headers);
    let remote = remote.span().span_context().clone();
    if remote.is_valid() {
        span.add_link(remote);
    }
}

/// Writes `span`'s trace context into outgoing headers.
pub fn inject_context(span: &tracing::Span, headers: &mut http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// The four kinds of gRPC call, as go-grpc-prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Unary => "unary",
            CallKind::ClientStream => "client_stream",
            CallKind::ServerStream => "server_stream",
            CallKind::BidiStream => "bidi_stream",
        }
    }
}

/// Service, method and kind of every method of some contracts, by path
/// (`/ecommerce.ProductInfo/getProduct`), read from encoded descriptor sets.
#[derive(Debug, Default, Clone)]
pub struct Methods {
    by_path: Arc<HashMap<String, (String, String, CallKind)>>,
}

impl Methods {
    /// The methods of `descriptor_sets` plus health and reflection.
    pub fn from_descriptor_sets(descriptor_sets: &[&[u8]]) -> Self {
        let mut by_path = HashMap::new();
        let standard: [&[u8]; 3] = [
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        for set in descriptor_sets.iter().chain(standard.iter()) {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = if package.is_empty() {
                        service.name().to_owned()
                    } else {
                        format!("{package}.{}", service.name())
                    };
                    for method in service.method {
                        let kind = match (method.client_streaming(), method.server_streaming()) {
                            (false, false) => CallKind::Unary,
                            (true, false) => CallKind::ClientStream,
                            (false, true) => CallKind::ServerStream,
                            (true, true) => CallKind::BidiStream,
                        };
                        by_path.insert(
                            format!("/{service_name}/{}", method.name()),
                            (service_name.clone(), method.name().to_owned(), kind),
                        );
                    }
                }
            }
        }
        Methods {
            by_path: Arc::new(by_path),
        }
    }

    /// Service, method and kind of `path`, if known.
    pub fn get(&self, path: &str) -> Option<&(String, String, CallKind)> {
        self.by_path.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_know_their_kind_from_the_descriptors() {
        let methods = Methods::from_descriptor_sets(&[]);
        let (service, method, kind) = methods.get("/grpc.health.v1.Health/Watch").unwrap();
        assert_eq!(
            (service.as_str(), method.as_str(), *kind),
            ("grpc.health.v1.Health", "Watch", CallKind::ServerStream)
        );
        assert_eq!(
            methods.get("/grpc.health.v1.Health/Check").unwrap().2,
            CallKind::Unary
        );
        assert!(methods.get("/nope/Nope").is_none());
    }

    /// Log lines captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn log_lines(log_level: &str, emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let tracer = SdkTracerProvider::builder().build().tracer("test");
        let out = Captured::default();
        let subscriber = subscriber(tracer, log_level, true, out.clone()).unwrap();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_inside_a_call_carry_its_trace_even_when_the_filter_hides_the_call_span() {
        let trace_id = "0af7651916cd43dd8448eb211c80319c";
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            format!("00-{trace_id}-b7ad6b7169203331-01")
                .parse()
                .unwrap(),
        );
        for log_level in ["info", "warn", "warn,[grpc.server]=error"] {
            let lines = log_lines(log_level, || {
                use tracing_opentelemetry::OpenTelemetrySpanExt as _;
                let call = tracing::info_span!("grpc.server");
                let _ = call.set_parent(extract_context(&headers));
                record_trace_ids(&call);
                let _in_call = call.enter();
                let statement = tracing::debug_span!("db.query");
                let _in_statement = statement.enter();
                tracing::info!("fine");
                tracing::warn!(peer = "10.0.0.1:4000", "slow");
            });
            let warned: Vec<_> = lines.iter().filter(|l| l["message"] == "slow").collect();
            assert_eq!(warned.len(), 1, "{log_level}: {lines:?}");
            assert_eq!(warned[0]["trace_id"], trace_id, "{log_level}");
            assert_eq!(warned[0]["peer"], "10.0.0.1:4000");
            assert_eq!(warned[0]["level"], "WARN");
            let fine = lines.iter().filter(|l| l["message"] == "fine").count();
            assert_eq!(fine, usize::from(log_level == "info"), "{log_level}");
        }
    }

    #[test]
    fn a_log_level_that_does_not_parse_is_refused() {
        let tracer = SdkTracerProvider::builder().build().tracer("test");
        let error = subscriber(tracer, "info,sqlx=loud", true, Captured::default())
            .err()
            .expect("refused");
        assert!(error.to_string().contains("invalid --log-level"), "{error}");
    }
}
