//! `/metrics` of each service: the go-grpc-prometheus series move by exactly
//! the calls made, with the right `grpc_code`, for unary and streaming
//! calls, on servers and clients; and every page passes `promtool check
//! metrics`.

use std::collections::BTreeMap;

use shop_proto::ecommerce::{
    Order, OrderLine, ProductId, SearchProductsRequest,
    order_management_client::OrderManagementClient, product_info_client::ProductInfoClient,
};
use shop_testkit::{admin_token, bearer, customer_token};
use tonic::transport::Endpoint;

use crate::shop::{RealShop, scrape};

const MUG_NAME: &str = "Metric mug";

/// The value of the series `name{labels}` (labels in any order), 0 if absent.
fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, number)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let have: BTreeMap<&str, &str> = label_text
            .split("\",")
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        if have == wanted {
            return number.parse().unwrap();
        }
    }
    0.0
}

fn grpc(
    kind: &'static str,
    service: &'static str,
    method: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("grpc_type", kind),
        ("grpc_service", service),
        ("grpc_method", method),
    ]
}

fn with_code(
    mut labels: Vec<(&'static str, &'static str)>,
    code: &'static str,
) -> Vec<(&'static str, &'static str)> {
    labels.push(("grpc_code", code));
    labels
}

fn promtool_check(page: &str) {
    use std::io::Write as _;
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "/usr/bin/promtool".into());
    assert!(
        std::path::Path::new(&promtool).exists(),
        "promtool not found at {promtool}: run `make tools` (installs Debian's prometheus package)"
    );
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_metrics_count_every_call_with_its_code_on_servers_and_clients() {
    let shop = RealShop::start(&[]).await;
    let mug = shop.add_product(MUG_NAME, 500, 100).await;
    shop.add_product("Metric tea", 300, 100).await;
    let catalog_channel = Endpoint::from_shared(format!("http://{}", shop.productinfo.addr))
        .unwrap()
        .connect_lazy();
    let order_channel = Endpoint::from_shared(format!("http://{}", shop.order.addr))
        .unwrap()
        .connect_lazy();
    let mut catalog =
        ProductInfoClient::with_interceptor(catalog_channel, bearer(&customer_token()));
    let mut customer =
        OrderManagementClient::with_interceptor(order_channel.clone(), bearer(&customer_token()));
    let mut admin = OrderManagementClient::with_interceptor(order_channel, bearer(&admin_token()));

    let [p_port, o_port, _] = shop.metrics;
    let (p0, o0) = (scrape(p_port).await, scrape(o_port).await);

    for _ in 0..3 {
        catalog
            .get_product(ProductId { value: mug.clone() })
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let missing = catalog
            .get_product(ProductId {
                value: "01a20000-0000-7000-8000-000000000000".into(),
            })
            .await;
        assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
    }
    let streamed = catalog
        .search_products(SearchProductsRequest {
            query: "metric".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let streamed: Vec<_> = futures::StreamExt::collect::<Vec<_>>(streamed).await;
    assert_eq!(streamed.len(), 2);
    let mut ids = Vec::new();
    for i in 0..2 {
        // One by product id (the reservation finds it), one as the book
        // orders, by name (looked up with getProducts first).
        let order = if i == 0 {
            Order {
                lines: vec![OrderLine {
                    product_id: mug.clone(),
                    quantity: 1,
                    ..Default::default()
                }],
                destination: format!("Metric street {i}"),
                ..Default::default()
            }
        } else {
            Order {
                items: vec![MUG_NAME.to_owned()],
                destination: format!("Metric street {i}"),
                ..Default::default()
            }
        };
        ids.push(customer.add_order(order).await.unwrap().into_inner());
    }
    let updates = ids.iter().map(|id| Order {
        id: id.clone(),
        description: "gift".into(),
        ..Default::default()
    });
    admin
        .update_orders(futures::stream::iter(updates.collect::<Vec<_>>()))
        .await
        .unwrap();
    let shipments: Vec<_> = futures::StreamExt::collect::<Vec<_>>(
        admin
            .process_orders(futures::stream::iter(ids.clone()))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let (p1, o1) = (scrape(p_port).await, scrape(o_port).await);
    let delta = |before: &str, after: &str, name: &str, labels: &[(&str, &str)]| {
        value(after, name, labels) - value(before, name, labels)
    };

    // productinfo, server side: unary OK and NotFound, server streaming.
    let get = grpc("unary", "ecommerce.ProductInfo", "getProduct");
    assert_eq!(delta(&p0, &p1, "grpc_server_started_total", &get), 5.0);
    assert_eq!(
        delta(
            &p0,
            &p1,
            "grpc_server_handled_total",
            &with_code(get.clone(), "OK")
        ),
        3.0
    );
    assert_eq!(
        delta(
            &p0,
            &p1,
            "grpc_server_handled_total",
            &with_code(get.clone(), "NotFound")
        ),
        2.0
    );
    assert_eq!(
        delta(&p0, &p1, "grpc_server_handling_seconds_count", &get),
        5.0
    );
    let search = grpc("server_stream", "ecommerce.ProductInfo", "searchProducts");
    assert_eq!(
        delta(
            &p0,
            &p1,
            "grpc_server_handled_total",
            &with_code(search.clone(), "OK")
        ),
        1.0
    );
    assert_eq!(
        delta(&p0, &p1, "grpc_server_msg_sent_total", &search),
        2.0,
        "one message per product"
    );
    assert_eq!(
        delta(&p0, &p1, "grpc_server_msg_received_total", &search),
        1.0
    );
    let reserve = grpc("unary", "ecommerce.ProductInfo", "reserveStock");
    assert_eq!(
        delta(
            &p0,
            &p1,
            "grpc_server_handled_total",
            &with_code(reserve.clone(), "OK")
        ),
        2.0
    );

    // order, client side: what it asked productinfo.
    assert_eq!(
        delta(
            &o0,
            &o1,
            "grpc_client_handled_total",
            &with_code(reserve.clone(), "OK")
        ),
        2.0
    );
    assert_eq!(
        delta(
            &o0,
            &o1,
            "grpc_client_started_total",
            &grpc("unary", "ecommerce.ProductInfo", "getProducts")
        ),
        1.0
    );

    // order, server side: client streaming and bidirectional streaming.
    let update = grpc("client_stream", "ecommerce.OrderManagement", "updateOrders");
    assert_eq!(
        delta(&o0, &o1, "grpc_server_msg_received_total", &update),
        2.0
    );
    assert_eq!(delta(&o0, &o1, "grpc_server_msg_sent_total", &update), 1.0);
    assert_eq!(
        delta(
            &o0,
            &o1,
            "grpc_server_handled_total",
            &with_code(update, "OK")
        ),
        1.0
    );
    let process = grpc("bidi_stream", "ecommerce.OrderManagement", "processOrders");
    assert_eq!(
        delta(&o0, &o1, "grpc_server_msg_received_total", &process),
        2.0
    );
    assert_eq!(
        delta(&o0, &o1, "grpc_server_msg_sent_total", &process),
        shipments.len() as f64
    );

    // Pools and the balancer report too; every page is valid exposition.
    assert!(
        value(
            &o1,
            "shop_balancer_endpoints",
            &[("upstream", "productinfo"), ("state", "ready")]
        ) >= 1.0
    );
    assert!(value(&p1, "shop_db_pool_max_connections", &[]) >= 1.0);
    assert!(value(&p1, "shop_db_pool_acquire_seconds_count", &[]) > 0.0);
    for page in [&p1, &o1, &scrape(shop.metrics[2]).await] {
        promtool_check(page);
    }
    let web = scrape(shop.metrics[2]).await;
    assert!(
        web.contains("# TYPE http_server_requests_total counter")
            || value(
                &web,
                "shop_build_info",
                &[
                    ("service", "storefront"),
                    ("version", env!("CARGO_PKG_VERSION"))
                ]
            ) == 1.0
    );
    shop.stop().await;
}
