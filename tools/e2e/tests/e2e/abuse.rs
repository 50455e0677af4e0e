//! Hostile and overloading clients against the real binaries, whose memory
//! is read from `/proc`: each test asserts what the client gets, that
//! others are still served, and that the process stays far inside the
//! chart's 128 MiB memory limit.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use shop_proto::ecommerce::{
    CancelOrderRequest, LoginRequest, Order, OrderLine, OrderStatus, ProductId, RegisterRequest,
    order_management_client::OrderManagementClient, product_info_client::ProductInfoClient,
    storefront_client::StorefrontClient,
};
use shop_testkit::{bearer, binary::Process, customer_token};
use tonic::{Code, transport::Endpoint};

use crate::shop::RealShop;

/// The chart's memory limit is 128 MiB: a test fails well before that.
const MEMORY_BOUND_KIB: u64 = 96 * 1024;
/// Most of one Argon2 block (19 MiB), the memory a hash takes.
const ARGON2_BLOCK_KIB: u64 = 16 * 1024;

/// The most memory the process has held (`VmHWM`), in KiB.
fn high_water_kib(process: &Process) -> u64 {
    status_kib(process, "VmHWM:")
}

fn resident_kib(process: &Process) -> u64 {
    let kib = status_kib(process, "VmRSS:");
    eprintln!("resident: {} MiB", kib / 1024);
    kib
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(process: &Process, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

fn assert_memory_bounded(name: &str, process: &Process) {
    let kib = high_water_kib(process);
    assert!(
        kib < MEMORY_BOUND_KIB,
        "{name} reached {} MiB resident",
        kib / 1024
    );
    eprintln!("{name}: at most {} MiB resident", kib / 1024);
}

async fn channel(process: &Process) -> tonic::transport::Channel {
    Endpoint::from_shared(format!("http://{}", process.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_at_once_over_ten_connections_are_served_or_shed_in_bounded_memory() {
    let shop = RealShop::start(&[]).await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let mut calls = Vec::new();
    for _ in 0..10 {
        let client = ProductInfoClient::with_interceptor(
            channel(&shop.productinfo).await,
            bearer(&customer_token()),
        );
        for _ in 0..100 {
            let (mut client, id) = (client.clone(), mug.clone());
            calls.push(tokio::spawn(async move {
                client.get_product(ProductId { value: id }).await.map(drop)
            }));
        }
    }

    let mut served = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => served += 1,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }

    assert!(served > 0, "some were served");
    ProductInfoClient::with_interceptor(
        channel(&shop.productinfo).await,
        bearer(&customer_token()),
    )
    .get_product(ProductId { value: mug })
    .await
    .expect("a new client is served right after");
    assert_memory_bounded("productinfo", &shop.productinfo);
    shop.stop().await;
}

/// Opens `streams` server streams of searchProducts on one connection
/// that grants a gigabyte of flow control, then stops reading its socket.
/// The returned future is the connection, never polled again: dropping it
/// closes the socket.
async fn open_and_never_read(
    process: &Process,
    streams: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), h2::Error>> + Send>> {
    let tcp = tokio::net::TcpStream::connect(&process.addr).await.unwrap();
    let (mut send, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 30)
        .initial_connection_window_size(1 << 30)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let mut connection: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
        Box::pin(connection);
    let token = format!("Bearer {}", customer_token());
    let mut responses = Vec::new();
    for _ in 0..streams {
        let request = http::Request::post(format!(
            "http://{}/ecommerce.ProductInfo/searchProducts",
            process.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", token.as_str())
        .body(())
        .unwrap();
        send = tokio::select! {
            ready = send.ready() => ready.unwrap(),
            _ = &mut connection => panic!("the connection ended while opening streams"),
        };
        let (response, mut body) = send.send_request(request, false).unwrap();
        // An empty SearchProductsRequest: everything.
        body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .unwrap();
        responses.push(response);
    }
    // Long enough to send every request and let the answers start.
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut connection).await;
    std::mem::forget(responses);
    connection
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_whose_clients_never_read_hold_bounded_memory_and_others_are_served() {
    let shop = RealShop::start(&[]).await;
    let description = "a long description ".repeat(100);
    let admin = ProductInfoClient::with_interceptor(
        channel(&shop.productinfo).await,
        bearer(&shop_testkit::admin_token()),
    );
    // Eight at a time: within the server's in-flight limit.
    let added: Vec<String> = futures::stream::iter(0..300)
        .map(|i| {
            let mut admin = admin.clone();
            let product = shop_proto::ecommerce::Product {
                description: description.clone(),
                ..shop_testkit::product(&format!("Product {i}"), 100, 1)
            };
            async move { admin.add_product(product).await.unwrap().into_inner().value }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let any = added[0].clone();

    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(open_and_never_read(&shop.productinfo, 100).await);
    }

    ProductInfoClient::with_interceptor(
        channel(&shop.productinfo).await,
        bearer(&customer_token()),
    )
    .get_product(ProductId { value: any })
    .await
    .expect("others are served while 500 streams wait for their readers");
    assert_memory_bounded("productinfo", &shop.productinfo);
    drop(stalled);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watches_of_one_order_hear_its_change_from_one_read_in_bounded_memory() {
    let shop = RealShop::start(&[
        ("WATCH_MAX_PER_CALLER", "1000"),
        ("WATCH_MAX_TOTAL", "1000"),
    ])
    .await;
    let mug = shop.add_product("Mug", 100, 10).await;
    let channel = channel(&shop.order).await;
    let mut orders =
        OrderManagementClient::with_interceptor(channel.clone(), bearer(&customer_token()));
    let id = orders
        .add_order(Order {
            lines: vec![OrderLine {
                product_id: mug,
                quantity: 1,
                ..Default::default()
            }],
            destination: "Home".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let metrics = shop.order.addrs.metrics.unwrap();
    let reads_before = shop_testkit::metric(metrics, "shop_order_watch_reads_total").await;

    // Ten connections of a hundred watches each (one connection takes 100 streams).
    let mut watches = Vec::new();
    for _ in 0..10 {
        let client = OrderManagementClient::with_interceptor(
            Endpoint::from_shared(format!("http://{}", shop.order.addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
            bearer(&customer_token()),
        );
        for _ in 0..100 {
            let mut watch = client
                .clone()
                .watch_order(id.clone())
                .await
                .unwrap()
                .into_inner();
            let first = watch.message().await.unwrap().unwrap();
            assert_eq!(first.status, OrderStatus::Confirmed as i32);
            watches.push(watch);
        }
    }
    let refused = orders.watch_order(id.clone()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "the 1,001st: {refused:?}"
    );

    orders
        .cancel_order(CancelOrderRequest {
            order_id: id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    for watch in &mut watches {
        let next = tokio::time::timeout(Duration::from_secs(20), watch.message())
            .await
            .expect("every watcher hears the change")
            .unwrap()
            .unwrap();
        assert_eq!(next.status, OrderStatus::Cancelled as i32);
    }

    let reads = shop_testkit::metric(metrics, "shop_order_watch_reads_total").await - reads_before;
    assert_eq!(reads, 1.0, "one read of the order for the thousand streams");
    assert_memory_bounded("order", &shop.order);
    drop(watches);
    shop.stop().await;
}

/// What a flood of sign-ups and sign-ins may answer: done, refused as
/// wrong, or refused for now (busy, too many); never an error or silence.
fn answered(status: u16) -> bool {
    matches!(status, 303 | 401 | 429 | 503)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sign_ups_and_two_hundred_sign_ins_at_once_hash_in_bounded_memory() {
    // The per-client limits are lifted, as for an attacker coming from many
    // addresses: every request reaches password hashing.
    let shop = RealShop::start(&[
        ("REGISTRATIONS_PER_CLIENT", "100000"),
        ("LOGIN_FAILURES_PER_CLIENT", "100000"),
        ("LOGIN_FAILURES_PER_EMAIL", "100000"),
    ])
    .await;
    let channel = channel(&shop.storefront).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..100 {
        let web = shop.web.clone();
        calls.spawn(async move {
            let visitor = shop_testkit::web::Web::new(&web);
            let form = [
                ("name", "Flood"),
                ("email", &format!("flood{i}@example.com")),
                ("password", "a long enough password"),
                ("next", "/"),
            ];
            visitor.submit("/register", "/register", &form).await.status
        });
        let web = shop.web.clone();
        calls.spawn(async move {
            let visitor = shop_testkit::web::Web::new(&web);
            let email = format!("nobody{i}@example.com");
            visitor.login(&email, "a wrong password").await.status
        });
        let mut client = StorefrontClient::new(channel.clone());
        calls.spawn(async move {
            let registered = client
                .register(RegisterRequest {
                    email: format!("grpc{i}@example.com"),
                    password: "a long enough password".into(),
                    name: String::new(),
                })
                .await;
            match registered {
                Ok(_) => 303,
                Err(s) if s.code() == Code::ResourceExhausted => 503,
                Err(s) => panic!("register: {s:?}"),
            }
        });
        let mut client = StorefrontClient::new(channel.clone());
        calls.spawn(async move {
            let login = client
                .login(LoginRequest {
                    email: format!("nobody{i}@example.com"),
                    password: "a wrong password".into(),
                })
                .await;
            match login {
                Err(s) if s.code() == Code::Unauthenticated => 401,
                Err(s) if s.code() == Code::ResourceExhausted => 503,
                other => panic!("login: {other:?}"),
            }
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = calls.join_next().await {
        statuses.push(status.unwrap());
    }

    assert_eq!(statuses.len(), 400);
    assert!(statuses.iter().all(|s| answered(*s)), "{statuses:?}");
    assert!(statuses.contains(&303), "some got through");
    assert_memory_bounded("storefront", &shop.storefront);
    let visitor = shop_testkit::web::Web::new(&shop.web);
    let login = visitor
        .login(crate::shop::ADMIN_EMAIL, crate::shop::ADMIN_PASSWORD)
        .await;
    assert_eq!(
        login.status, 303,
        "a normal login right after: {}",
        login.body
    );
    // Nobody logging in: the hashing thread of that login gives its Argon2
    // block back (the rest of the burst's memory may stay with the allocator).
    let after_login = resident_kib(&shop.storefront);
    shop_testkit::eventually(
        "the storefront's hashing memory goes back",
        Duration::from_secs(20),
        || async { resident_kib(&shop.storefront) + ARGON2_BLOCK_KIB <= after_login },
    )
    .await;
    shop.stop().await;
}
