//! Fault flags: a flag file changed while productinfo runs makes it fail
//! or slow down an RPC, or report itself not ready, and says so; clearing
//! the flags puts everything back.

use std::time::{Duration, Instant};

use serde_json::json;
use shop_proto::ecommerce::{ListProductsRequest, ProductId};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{TestApp, config};

/// Writes a flag file switching on `flags` (key, value of the "on" variant).
fn switch(file: &std::path::Path, flags: &[(&str, serde_json::Value)]) {
    let flags: serde_json::Map<String, serde_json::Value> = flags
        .iter()
        .map(|(key, value)| {
            (
                (*key).to_owned(),
                json!({"state": "ENABLED", "defaultVariant": "on", "variants": {"on": value}}),
            )
        })
        .collect();
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, json!({ "flags": flags }).to_string()).unwrap();
    std::fs::rename(tmp, file).unwrap();
}

/// Calls `probe` until it says yes, for at most 10 s (the service reads
/// the file every second).
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe().await {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn fault_flags_fail_slow_down_and_unready_the_service_while_they_are_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faults.json");
    let mut config = config(shop_testkit::fresh_database("productinfo").await);
    config.server.faults_file = Some(file.clone());
    let app = TestApp::spawn_with(config).await;
    let id = app.add_product("Mug", 500, 5).await;
    let get = || {
        let mut client = app.customer();
        let id = id.clone();
        async move { client.get_product(ProductId { value: id }).await }
    };
    let readiness = || {
        let mut health = HealthClient::new(app.channel.clone());
        async move {
            health
                .check(HealthCheckRequest {
                    service: "ecommerce.ProductInfo".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    get().await.unwrap();

    // Every getProduct fails; other RPCs are served.
    switch(
        &file,
        &[(
            "productinfo.getProduct.error",
            json!({"rate": 1.0, "code": "UNAVAILABLE"}),
        )],
    );
    eventually("getProduct failing", || async { get().await.is_err() }).await;
    let failed = get().await.unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable);
    assert!(failed.message().contains("fault injected"), "{failed:?}");
    app.customer()
        .list_products(ListProductsRequest::default())
        .await
        .unwrap();
    let metrics = shop_testkit::web::Web::new(&format!("http://{}", app.metrics_addr))
        .get("/metrics")
        .await
        .body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("shop_faults_injected_total")
                && l.contains("getProduct")
                && l.contains("kind=\"error\"")),
        "{metrics}"
    );

    // Every call waits 300 ms more; none fails.
    switch(
        &file,
        &[("productinfo.*.latency", json!({"rate": 1.0, "ms": 300}))],
    );
    eventually("getProduct slowed down", || async {
        let began = Instant::now();
        get().await.is_ok() && began.elapsed() >= Duration::from_millis(300)
    })
    .await;

    // Not ready: readiness NOT_SERVING, liveness and calls still served.
    switch(&file, &[("productinfo.readiness", json!(true))]);
    eventually("NOT_SERVING", || async {
        readiness().await == ServingStatus::NotServing as i32
    })
    .await;
    let liveness = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(liveness, ServingStatus::Serving as i32);
    get().await.unwrap();

    // Cleared: ready again, calls fast and fine.
    switch(&file, &[]);
    eventually("SERVING again", || async {
        readiness().await == ServingStatus::Serving as i32
    })
    .await;
    let began = Instant::now();
    get().await.unwrap();
    assert!(began.elapsed() < Duration::from_millis(300));
}
