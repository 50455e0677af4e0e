//! One checkout through the web shop is one trace: the browser's request,
//! the storefront, the order service, the catalog and the SQL below it,
//! linked parent to child, collected by an OTLP receiver playing the
//! OpenTelemetry Collector.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use shop_testkit::web::Web;
use tonic::{Request, Response, Status};

use crate::shop::RealShop;

/// Every span received, with the `service.name` of its resource.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attr(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).unwrap();
    hex(&bytes)
}

// Multi-threaded: the receiver runs in this process while blocking calls wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_is_one_trace_across_the_three_services_down_to_sql() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let shop = RealShop::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    let mug = shop.add_product("Trace mug", 1250, 10).await;

    // A visitor registers and fills a cart; then the traced click.
    let browser = Web::new(&shop.web);
    browser.get("/").await;
    browser.register("trace@example.com").await;
    browser
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    let form = browser.get("/checkout").await;
    let key_marker = "name=\"idempotency_key\" value=\"";
    let at = form.body.find(key_marker).unwrap() + key_marker.len();
    let key = form.body[at..at + 36].to_owned();
    let browser_trace = random_hex(16);
    let click_span = random_hex(8);
    browser.set_header(
        "traceparent",
        &format!("00-{browser_trace}-{click_span}-01"),
    );
    let placed = browser
        .post(
            "/checkout",
            &[
                ("_csrf", &form.csrf()),
                ("destination", "Trace Street 1"),
                ("idempotency_key", &key),
            ],
        )
        .await;
    assert_eq!(placed.status, 303, "{}", placed.body);

    // The page request starts the shop's own trace (a visitor does not
    // choose its ids); its log line tells which.
    let page_line = shop
        .storefront
        .log_lines()
        .into_iter()
        .find(|l| {
            l["message"] == "http" && l["http.route"] == "/checkout" && l["http.method"] == "POST"
        })
        .expect("the storefront logged the checkout request");
    let trace_id = page_line["trace_id"]
        .as_str()
        .expect("a trace id")
        .to_owned();
    assert_ne!(
        trace_id, browser_trace,
        "the browser's trace id is not the shop's"
    );

    // Logs carry the trace id: the order service's lines for this checkout.
    let order_lines: Vec<serde_json::Value> = shop
        .order
        .log_lines()
        .into_iter()
        .filter(|l| l["trace_id"] == trace_id.as_str())
        .collect();
    assert!(
        order_lines
            .iter()
            .any(|l| l["message"] == "order confirmed"),
        "the order service logged the checkout with its trace id: {order_lines:?}"
    );
    assert!(order_lines.iter().any(
        |l| l["message"] == "rpc" && l["grpc.method"] == "/ecommerce.OrderManagement/addOrder"
    ));
    shop.stop().await;

    let spans: Vec<(String, Span)> = receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) == trace_id)
        .cloned()
        .collect();
    let services: std::collections::BTreeSet<&str> =
        spans.iter().map(|(svc, _)| svc.as_str()).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        ["order", "productinfo", "storefront"],
        "one trace across the three services"
    );
    let by_id: HashMap<String, &(String, Span)> =
        spans.iter().map(|e| (hex(&e.1.span_id), e)).collect();
    let find = |service: &str, name: &str, kind: SpanKind| -> &Span {
        &spans
            .iter()
            .find(|(svc, s)| svc == service && s.name == name && s.kind == kind as i32)
            .unwrap_or_else(|| {
                let all: Vec<_> = spans
                    .iter()
                    .map(|(svc, s)| format!("{svc}: {} ({})", s.name, s.kind))
                    .collect();
                panic!("no {kind:?} span {name:?} in {service}; have {all:#?}")
            })
            .1
    };
    let parent_of = |span: &Span| hex(&span.parent_span_id);

    // The browser's click → the storefront's page request.
    let page = find("storefront", "POST /checkout", SpanKind::Server);
    assert!(
        page.parent_span_id.is_empty(),
        "the page request is the root of the shop's trace"
    );
    let links: Vec<(String, String)> = page
        .links
        .iter()
        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
        .collect();
    assert_eq!(
        links,
        [(browser_trace.clone(), click_span.clone())],
        "the page request links to the browser's click"
    );
    assert_eq!(
        int_attr(&page.attributes, "http.response.status_code"),
        Some(303)
    );

    // storefront → order.
    let add_client = find(
        "storefront",
        "ecommerce.OrderManagement/addOrder",
        SpanKind::Client,
    );
    let add_server = find(
        "order",
        "ecommerce.OrderManagement/addOrder",
        SpanKind::Server,
    );
    assert_eq!(parent_of(add_server), hex(&add_client.span_id));
    assert!(
        by_id.contains_key(&parent_of(add_client)),
        "the client call sits inside the page's spans"
    );
    assert_eq!(
        int_attr(&add_server.attributes, "rpc.grpc.status_code"),
        Some(0)
    );
    assert_eq!(
        string_attr(&add_server.attributes, "rpc.system").as_deref(),
        Some("grpc")
    );
    assert_eq!(
        string_attr(&add_server.attributes, "rpc.service").as_deref(),
        Some("ecommerce.OrderManagement")
    );
    assert_eq!(
        string_attr(&add_server.attributes, "rpc.method").as_deref(),
        Some("addOrder")
    );
    // Its messages as span events: one request in, one response out.
    let messages: Vec<String> = add_server
        .events
        .iter()
        .filter(|e| e.name == "message")
        .filter_map(|e| string_attr(&e.attributes, "message.type"))
        .collect();
    assert_eq!(messages, ["RECEIVED", "SENT"], "{:#?}", add_server.events);

    // order → productinfo: the cart's lines are by id, so the reservation
    // is the one call (no lookup first).
    {
        let method = "reserveStock";
        let name = format!("ecommerce.ProductInfo/{method}");
        let client = find("order", &name, SpanKind::Client);
        let server = find("productinfo", &name, SpanKind::Server);
        assert_eq!(parent_of(server), hex(&client.span_id), "{method}");
        assert_eq!(
            int_attr(&server.attributes, "rpc.grpc.status_code"),
            Some(0),
            "{method}"
        );
        assert_eq!(
            int_attr(&client.attributes, "rpc.grpc.status_code"),
            Some(0),
            "{method}"
        );
    }

    // productinfo → SQL.
    let reserve_server = find(
        "productinfo",
        "ecommerce.ProductInfo/reserveStock",
        SpanKind::Server,
    );
    let sql = spans
        .iter()
        .find(|(svc, s)| svc == "productinfo" && s.name == "reserve")
        .map(|(_, s)| s)
        .expect("the reservation's database span");
    assert_eq!(parent_of(sql), hex(&reserve_server.span_id));
    assert_eq!(
        string_attr(&sql.attributes, "db.system").as_deref(),
        Some("postgresql")
    );
}
