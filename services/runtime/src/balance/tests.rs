//! The balancer against real tonic servers (health service only), each behind
//! a TCP proxy the test can cut to simulate a crashed replica. Calls are
//! counted on the servers, not by the balancer.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{net::TcpListener, task::JoinHandle};
use tonic::{Code, service::Routes};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::*;
use crate::health::HealthRegistry;

const SERVICE: &str = "svc";

/// Counts `Health/Check` calls reaching one server.
#[derive(Clone)]
struct Count<S> {
    inner: S,
    checks: Arc<AtomicU64>,
}

impl<S, B> tower::Service<http::Request<B>> for Count<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        if request.uri().path() == "/grpc.health.v1.Health/Check" {
            self.checks.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.call(request)
    }
}

/// A health-only server behind a proxy.
struct Replica {
    health: HealthRegistry,
    checks: Arc<AtomicU64>,
    proxy: Proxy,
}

impl Replica {
    async fn start() -> Replica {
        let health = HealthRegistry::new();
        health.set("", ServingStatus::Serving);
        health.set(SERVICE, ServingStatus::Serving);
        let checks = Arc::new(AtomicU64::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counter = checks.clone();
        let routes = Routes::new(health.service());
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(tower::layer::layer_fn(move |inner| Count {
                    inner,
                    checks: counter.clone(),
                }))
                .add_routes(routes)
                .serve_with_incoming(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                ),
        );
        Replica {
            health,
            checks,
            proxy: Proxy::start(addr).await,
        }
    }

    fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

/// A TCP proxy whose `kill` drops every connection and stops listening, as a
/// crashed process would.
struct Proxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(task);
            }
        });
        Proxy {
            addr,
            accept,
            connections,
        }
    }

    fn kill(&self) {
        self.accept.abort();
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

fn config() -> BalanceConfig {
    BalanceConfig {
        refresh: Duration::from_millis(200),
        min_refresh: Duration::from_millis(50),
        ..BalanceConfig::new("test", SERVICE)
    }
}

fn static_target(replicas: &[&Replica]) -> Target {
    Target::Static(replicas.iter().map(|r| r.proxy.addr.to_string()).collect())
}

async fn check(balanced: &Balanced) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: SERVICE.into(),
    });
    request.set_timeout(Duration::from_secs(5));
    HealthClient::new(balanced.clone())
        .check(request)
        .await
        .map(|_| ())
}

async fn wait_ready(balanced: &Balanced, ready: usize) {
    assert!(
        balanced
            .wait_until(Duration::from_secs(10), |stats| stats
                .iter()
                .filter(|s| s.state == EndpointState::Ready)
                .count()
                == ready)
            .await,
        "expected {ready} ready addresses, have {:?}",
        balanced.stats()
    );
}

async fn replicas() -> [Replica; 3] {
    [
        Replica::start().await,
        Replica::start().await,
        Replica::start().await,
    ]
}

/// Three replicas, and a channel to them that sees all three ready.
async fn three_ready() -> ([Replica; 3], Balanced) {
    let replicas = replicas().await;
    let [a, b, c] = &replicas;
    let balanced = Balanced::new(static_target(&[a, b, c]), config());
    wait_ready(&balanced, 3).await;
    (replicas, balanced)
}

#[test]
fn targets_parse_from_their_three_forms() {
    assert_eq!(
        "dns:///productinfo-headless:50051".parse::<Target>(),
        Ok(Target::Dns {
            host: "productinfo-headless".into(),
            port: 50051
        })
    );
    assert_eq!(
        "127.0.0.1:1, 127.0.0.1:2".parse::<Target>(),
        Ok(Target::Static(vec![
            "127.0.0.1:1".into(),
            "127.0.0.1:2".into()
        ]))
    );
    assert_eq!(
        "file:///etc/shop/productinfo".parse::<Target>(),
        Ok(Target::File("/etc/shop/productinfo".into()))
    );
    assert!("dns:///no-port".parse::<Target>().is_err());
    assert!("just-a-name".parse::<Target>().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_rotate_strictly_over_three_ready_replicas() {
    let ([a, b, c], balanced) = three_ready().await;

    let calls = (0..3000).map(|_| check(&balanced));
    let results = futures::future::join_all(calls).await;

    assert!(results.iter().all(Result::is_ok));
    assert_eq!((a.checks(), b.checks(), c.checks()), (1000, 1000, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_killed_replica_is_detected_no_call_fails_and_the_others_share_its_load() {
    let ([a, b, c], balanced) = three_ready().await;
    for _ in 0..300 {
        check(&balanced).await.expect("before the kill");
    }
    assert_eq!((a.checks(), b.checks(), c.checks()), (100, 100, 100));

    b.proxy.kill();
    // A call racing the crash on its broken connection may fail (it was
    // written to the wire: retrying it could run it twice); the health
    // watch notices the crash at once.
    wait_ready(&balanced, 2).await;
    for i in 0..600 {
        check(&balanced)
            .await
            .unwrap_or_else(|e| panic!("call {i} after the kill was detected failed: {e:?}"));
    }

    assert_eq!(b.checks(), 100, "the dead replica got nothing more");
    assert_eq!(a.checks() + c.checks(), 200 + 600);
    assert!(
        a.checks().abs_diff(c.checks()) <= 2,
        "{} vs {}",
        a.checks(),
        c.checks()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_picked_for_an_unreachable_address_goes_to_the_next_one() {
    let live = Replica::start().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let balanced = Balanced::new(
        Target::Static(vec![live.proxy.addr.to_string(), dead.to_string()]),
        config(),
    );
    wait_ready(&balanced, 1).await;
    // Pretend the dead address looks ready (as it would for a moment after
    // a crash): its health no longer watched, in the rotation.
    balanced.pretend(dead, EndpointState::Ready);
    wait_ready(&balanced, 2).await;

    for i in 0..4 {
        check(&balanced)
            .await
            .unwrap_or_else(|e| panic!("call {i} failed: {e:?}"));
    }

    assert_eq!(live.checks(), 4, "every call ended on the live replica");
    let stats = balanced.stats();
    let dead_stats = stats.iter().find(|s| s.addr == dead).unwrap();
    assert_eq!(dead_stats.picks, 1, "picked once, then out of the rotation");
    assert_eq!(dead_stats.state, EndpointState::NotReady);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_serving_replica_gets_nothing_until_it_serves_again() {
    let ([a, b, c], balanced) = three_ready().await;

    b.health.set(SERVICE, ServingStatus::NotServing);
    wait_ready(&balanced, 2).await;
    for _ in 0..300 {
        check(&balanced).await.unwrap();
    }
    assert_eq!((a.checks(), b.checks(), c.checks()), (150, 0, 150));

    b.health.set(SERVICE, ServingStatus::Serving);
    wait_ready(&balanced, 3).await;
    for _ in 0..300 {
        check(&balanced).await.unwrap();
    }
    assert_eq!((a.checks(), b.checks(), c.checks()), (250, 100, 250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_added_to_resolution_gets_traffic_after_the_next_refresh() {
    let [a, b, c] = replicas().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("addresses");
    std::fs::write(&file, format!("{}\n{}\n", a.proxy.addr, b.proxy.addr)).unwrap();
    let balanced = Balanced::new(Target::File(file.clone()), config());
    wait_ready(&balanced, 2).await;

    std::fs::write(
        &file,
        format!("{}\n{}\n{}\n", a.proxy.addr, b.proxy.addr, c.proxy.addr),
    )
    .unwrap();
    wait_ready(&balanced, 3).await;
    for _ in 0..300 {
        check(&balanced).await.unwrap();
    }
    assert_eq!((a.checks(), b.checks(), c.checks()), (100, 100, 100));

    std::fs::write(&file, format!("{}\n", c.proxy.addr)).unwrap();
    assert!(
        balanced
            .wait_until(Duration::from_secs(10), |s| s.len() == 1)
            .await
    );
    for _ in 0..30 {
        check(&balanced).await.unwrap();
    }
    assert_eq!((a.checks(), b.checks(), c.checks()), (100, 100, 130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_before_the_first_resolution_waits_for_it() {
    let a = Replica::start().await;
    for _ in 0..20 {
        // No wait_ready: the first call races the resolver every time.
        let balanced = Balanced::new(static_target(&[&a]), config());
        check(&balanced).await.unwrap();
    }
    assert_eq!(a.checks(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_resolved_calls_fail_unavailable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("addresses");
    std::fs::write(&file, "").unwrap();
    let balanced = Balanced::new(Target::File(file), config());
    assert!(
        balanced
            .wait_until(Duration::from_secs(5), |s| s.is_empty())
            .await
    );

    let started = std::time::Instant::now();
    let status = check(&balanced).await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("no ready test address"),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "failed fast, not at the 5 s deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_replica_down_calls_fail_unavailable_within_their_deadline() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let balanced = Balanced::new(Target::Static(vec![dead.to_string()]), config());

    let mut request = tonic::Request::new(HealthCheckRequest {
        service: SERVICE.into(),
    });
    request.set_timeout(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let status = HealthClient::new(balanced.clone())
        .check(request)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
