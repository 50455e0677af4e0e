//! The drain every service goes through on SIGTERM, checked the same way
//! for each: after NOT_SERVING and until the drain delay ends, new
//! connections to every listener (gRPC, `/metrics`, the web shop) are still
//! served; afterwards every listener refuses.

use std::{future::Future, time::Duration};

use tokio::time::Instant;
use tonic::{Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{services::Running, web::Web};

/// Shuts `running` down and checks the drain: `call` (a business call, on a
/// connection opened after NOT_SERVING), `/metrics`, and `web_path` on the
/// web shop (if it has one) all succeed within `drain_delay`, then every
/// listener is closed.
pub async fn served_while_draining<F, Fut>(
    mut running: Running,
    drain_delay: Duration,
    web_path: &str,
    call: F,
) where
    F: FnOnce(Channel) -> Fut,
    Fut: Future<Output = Result<(), Status>>,
{
    let mut watch = HealthClient::new(running.channel.clone())
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch health")
        .into_inner();
    let first = watch.message().await.expect("health").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    running.begin_shutdown();
    let not_serving = watch.message().await.expect("health").expect("a status");
    assert_eq!(not_serving.status, ServingStatus::NotServing as i32);
    let draining_since = Instant::now();

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("a new gRPC connection is accepted during the drain delay");
    call(channel)
        .await
        .expect("a gRPC call on it is served during the drain delay");
    let metrics = Web::new(&format!("http://{}", running.metrics_addr))
        .get("/metrics")
        .await;
    assert_eq!(metrics.status, 200, "/metrics during the drain delay");
    if let Some(web) = running.http_addr {
        let page = Web::new(&format!("http://{web}")).get(web_path).await;
        assert_eq!(
            page.status, 200,
            "{web_path} during the drain delay: {}",
            page.body
        );
    }
    assert!(
        draining_since.elapsed() < drain_delay,
        "the checks took {:?}, longer than the drain delay: they prove nothing",
        draining_since.elapsed()
    );

    let addrs = [
        Some(running.addr),
        Some(running.metrics_addr),
        running.http_addr,
    ];
    running.stop().await.expect("a clean stop");
    for addr in addrs.into_iter().flatten() {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts after the stop"
        );
    }
}
