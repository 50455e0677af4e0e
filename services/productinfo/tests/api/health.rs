//! Health tells the truth: SERVING only while the database answers, and
//! NOT_SERVING as soon as shutdown starts, while calls in flight still finish
//! and new ones are served until the drain delay ends.

use std::time::Duration;

use shop_devdb::Cluster;
use shop_proto::ecommerce::{
    AdjustStockRequest, ProductId, product_info_client::ProductInfoClient,
};
use sqlx::Connection as _;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{TestApp, bearer, config, customer_token};

#[tokio::test]
async fn health_follows_the_database_down_and_back_up() {
    let cluster = Cluster::temporary().unwrap();
    let url = cluster.ensure_database("productinfo").await.unwrap();
    let mut cfg = config(url);
    cfg.db.db_acquire_timeout = Duration::from_millis(500);
    let app = TestApp::spawn_with(cfg).await;
    let id = app.add_product("Mug", 500, 1).await;

    cluster.stop().unwrap();
    app.wait_for(ServingStatus::NotServing).await;
    let down = app
        .customer()
        .get_product(ProductId { value: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(
        !down.message().contains("postgres"),
        "no internals: {down:?}"
    );

    cluster.start().unwrap();
    app.wait_for(ServingStatus::Serving).await;
    // Connections broken by the restart may fail once each; the catalog
    // answers again right after.
    let mut answered = false;
    for _ in 0..10 {
        if app
            .customer()
            .get_product(ProductId { value: id.clone() })
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
    }
    assert!(
        answered,
        "the catalog answers again after the database returns"
    );
}

#[tokio::test]
async fn shutdown_turns_health_not_serving_at_once_and_lets_a_call_in_flight_finish() {
    let mut app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 1).await;
    let product_id: uuid::Uuid = id.parse().unwrap();

    // Hold the product row so the admin's adjustment waits inside the server.
    let mut blocker = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let mut lock = blocker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM products WHERE id = $1 FOR UPDATE")
        .bind(product_id)
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut admin = app.admin();
    let in_flight = tokio::spawn(async move {
        admin
            .adjust_stock(AdjustStockRequest {
                product_id: id,
                delta: 4,
                reason: "restock".into(),
            })
            .await
    });
    let mut observer = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
            )
            .fetch_one(&mut observer)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the adjustment reaches the database and waits for the row lock");

    let mut watch = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    app.begin_shutdown();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32,
        "watchers hear NOT_SERVING as soon as shutdown starts"
    );
    assert!(
        watch.message().await.unwrap().is_none(),
        "then the watch ends"
    );
    assert!(!in_flight.is_finished(), "the call is still waiting");

    lock.commit().await.unwrap();
    let adjusted = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert_eq!(adjusted.into_inner().stock, Some(5));
    let addr = app.addr;
    app.stop().await.expect("clean stop");

    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn calls_and_scrapes_arriving_during_the_drain_delay_are_served() {
    let drain_delay = Duration::from_secs(5);
    let mut cfg = config(shop_testkit::fresh_database("productinfo").await);
    cfg.server.drain_delay = drain_delay;
    let app = TestApp::spawn_with(cfg).await;
    let id = app.add_product("Mug", 500, 1).await;

    shop_testkit::drain::served_while_draining(app.running, drain_delay, "/", |channel| async {
        let mut client = ProductInfoClient::with_interceptor(channel, bearer(&customer_token()));
        let product = client.get_product(ProductId { value: id }).await?;
        assert_eq!(product.into_inner().name, "Mug");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_fails_no_read_whose_deadline_outlasts_it() {
    let cluster = Cluster::temporary().unwrap();
    let url = cluster.ensure_database("productinfo").await.unwrap();
    let app = TestApp::spawn_with(config(url)).await;
    let id = app.add_product("Mug", 500, 1).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (mut client, id, stop) = (app.customer(), id.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut request = tonic::Request::new(ProductId { value: id.clone() });
                    request.set_timeout(Duration::from_secs(10));
                    client
                        .get_product(request)
                        .await
                        .unwrap_or_else(|e| panic!("read {done} failed: {e:?}"));
                    done += 1;
                }
                done
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A fast restart (as a rolling upgrade of the database does).
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap();
        cluster.start().unwrap();
        cluster
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    for reader in readers {
        assert!(reader.await.unwrap() > 0, "every reader kept reading");
    }
    drop(cluster);
}
