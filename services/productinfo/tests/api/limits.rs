//! What a hostile or overloading client gets from the catalog, and that
//! everyone else is still served: oversized messages, more calls than the
//! server takes, statements that run too long, callers that give up
//! mid-query, pings and resets in floods.

use std::time::Duration;

use bytes::Bytes;
use shop_proto::ecommerce::{AdjustStockRequest, Product, ProductId};
use sqlx::Connection as _;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{TestApp, config};

/// A product row held by the test in an open transaction, so calls
/// touching it wait inside the database; released by closing the session.
struct RowLock(sqlx::PgConnection);

async fn hold_row(app: &TestApp, id: &str) -> RowLock {
    let mut conn = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT 1 FROM products WHERE id = $1::uuid FOR UPDATE")
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    RowLock(conn)
}

impl RowLock {
    async fn release(self) {
        self.0.close().await.unwrap();
    }
}

/// Statements of `app`'s database waiting on a lock.
async fn lock_waiters(app: &TestApp) -> i64 {
    let mut conn = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

fn restock(id: &str) -> AdjustStockRequest {
    AdjustStockRequest {
        product_id: id.into(),
        delta: 1,
        reason: "restock".into(),
    }
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted_and_the_server_carries_on() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 1).await;

    let huge = app
        .admin()
        .add_product(Product {
            name: "Huge".into(),
            description: "x".repeat(4 * 1024 * 1024 + 1),
            price: 1.0,
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_eq!(huge.code(), Code::ResourceExhausted, "{huge:?}");
    assert!(
        huge.message().contains("over this server's limit"),
        "{huge:?}"
    );
    app.customer()
        .get_product(ProductId { value: id })
        .await
        .expect("others are served");
}

#[tokio::test]
async fn calls_past_the_in_flight_limit_are_refused_at_once_and_health_stays_serving() {
    let mut cfg = config(shop_testkit::fresh_database("productinfo").await);
    cfg.limits.max_in_flight = 2;
    let app = TestApp::spawn_with(cfg).await;
    let id = app.add_product("Mug", 500, 1).await;
    let lock = hold_row(&app, &id).await;
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let mut admin = app.admin();
            let request = restock(&id);
            tokio::spawn(async move { admin.adjust_stock(request).await })
        })
        .collect();
    shop_testkit::eventually(
        "both calls wait in the database",
        Duration::from_secs(10),
        || {
            let app = &app;
            async move { lock_waiters(app).await == 2 }
        },
    )
    .await;

    let refused = app
        .customer()
        .get_product(ProductId { value: id.clone() })
        .await
        .unwrap_err();
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Not overloaded for long: the shortest wait, plus jitter.
    let hint = shop_runtime::pushback::of(&refused).expect("a retry hint");
    assert!(
        (Duration::from_millis(100)..Duration::from_millis(150)).contains(&hint),
        "{hint:?}"
    );
    assert_eq!(
        health.status,
        ServingStatus::Serving as i32,
        "busy, not sick"
    );
    lock.release().await;
    for call in waiting {
        call.await.unwrap().expect("the admitted calls complete");
    }
    app.customer()
        .get_product(ProductId { value: id })
        .await
        .expect("served again once the load is gone");
}

#[tokio::test]
async fn a_statement_past_its_timeout_fails_unavailable_while_others_are_served() {
    let mut cfg = config(shop_testkit::fresh_database("productinfo").await);
    cfg.db.db_statement_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(cfg).await;
    let id = app.add_product("Mug", 500, 1).await;
    let other = app.add_product("Tea", 300, 1).await;
    let _lock = hold_row(&app, &id).await;

    let slow = {
        let mut admin = app.admin();
        let request = restock(&id);
        tokio::spawn(async move { admin.adjust_stock(request).await })
    };
    shop_testkit::eventually(
        "the call waits in the database",
        Duration::from_secs(10),
        || {
            let app = &app;
            async move { lock_waiters(app).await == 1 }
        },
    )
    .await;
    app.customer()
        .get_product(ProductId { value: other })
        .await
        .expect("others are served meanwhile");

    let status = slow.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        !status.message().contains("canceling"),
        "no internals: {status:?}"
    );
}

#[tokio::test]
async fn a_caller_whose_deadline_passes_cancels_its_statement() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 1).await;
    let _lock = hold_row(&app, &id).await;

    let mut hurried = tonic::Request::new(restock(&id));
    hurried.set_timeout(Duration::from_millis(500));
    let status = app.admin().adjust_stock(hurried).await.unwrap_err();

    // The client's own timer or the server's answer, whichever came first.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    // The row is still held, yet the statement no longer waits for it: the
    // server cancelled it when the call was dropped (the tests' statement
    // timeout is far longer).
    shop_testkit::eventually(
        "the statement is cancelled",
        Duration::from_secs(10),
        || {
            let app = &app;
            async move { lock_waiters(app).await == 0 }
        },
    )
    .await;
}

#[tokio::test]
async fn adjusting_stock_by_the_smallest_i64_is_invalid_argument() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 1).await;

    let status = app
        .admin()
        .adjust_stock(AdjustStockRequest {
            delta: i64::MIN,
            ..restock(&id)
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(shop_runtime::error::violated_fields(&status), ["delta"]);
}

/// A raw HTTP/2 connection to `app`, driven in the background; its end.
async fn raw_h2(
    app: &TestApp,
) -> (
    h2::client::SendRequest<Bytes>,
    h2::client::Connection<tokio::net::TcpStream>,
) {
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    h2::client::handshake(tcp).await.unwrap()
}

#[tokio::test]
async fn a_client_that_pings_too_often_is_told_goaway_and_others_are_served() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 1).await;
    let (_send, mut connection) = raw_h2(&app).await;
    let mut pings = connection.ping_pong().expect("ping_pong");

    let ended = tokio::spawn(connection);
    let mut answered = 0;
    for _ in 0..10 {
        if pings.ping(h2::Ping::opaque()).await.is_err() {
            break;
        }
        answered += 1;
    }

    let error = ended.await.unwrap().expect_err("the connection ends");
    assert!(error.is_go_away(), "{error:?}");
    assert_eq!(
        error.reason(),
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{error:?}"
    );
    assert!(answered < 10, "not every ping was answered");
    app.customer()
        .get_product(ProductId { value: id })
        .await
        .expect("others are served");
}

#[tokio::test]
async fn a_reset_flood_ends_the_flooding_connection_and_others_are_served() {
    let app = TestApp::spawn().await;
    let id = app.add_product("Mug", 500, 1).await;
    let (mut send, connection) = raw_h2(&app).await;
    let ended = tokio::spawn(connection);

    let mut sent = 0;
    for _ in 0..20_000 {
        let Ok(ready) = send.clone().ready().await else {
            break;
        };
        send = ready;
        let request = http::Request::post(format!(
            "http://{}/ecommerce.ProductInfo/getProduct",
            app.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
        let Ok((_, mut stream)) = send.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }

    let error = tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the flooding connection is ended")
        .unwrap()
        .expect_err("with an error");
    // GOAWAY (ENHANCE_YOUR_CALM), or the socket the server then closed
    // under the client's writes.
    assert!(
        error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || error.is_io(),
        "{error:?} after {sent} resets"
    );
    app.customer()
        .get_product(ProductId { value: id })
        .await
        .expect("others are served");
}
