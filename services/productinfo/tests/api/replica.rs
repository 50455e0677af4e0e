//! Catalog reads on a streaming replica (`--database-read-url`): a real hot
//! standby made with `pg_basebackup` from a private cluster of this test's
//! own, as `make up` makes one. Reads go to the replica while it is close,
//! writes to the primary; a caller that sends back a write's position
//! reads its write; a replica that lags or dies is skipped, and taken back
//! when it recovers. No call fails along the way.

use std::{sync::Arc, time::Duration};

use shop_devdb::Cluster;
use shop_proto::ecommerce::{AdjustStockRequest, ListProductsRequest, Product, ProductId};
use shop_runtime::pg::{Lsn, replica::READ_AFTER_HEADER};
use shop_testkit::eventually;
use sqlx::{Connection as _, Executor as _};
use tonic::Request;

use crate::helpers::{TestApp, config};

// Long enough that a loaded machine reads the paused replica inside it.
const MAX_LAG: Duration = Duration::from_secs(3);
const PATIENCE: Duration = Duration::from_secs(30);

async fn metric(app: &TestApp, name: &str) -> f64 {
    shop_testkit::metric(app.metrics_addr, name).await
}

async fn usable(app: &TestApp) -> bool {
    metric(app, "shop_db_replica_usable").await == 1.0
}

async fn replica_reads(app: &TestApp) -> f64 {
    metric(app, "shop_db_reads_total{server=\"replica\"}").await
}

async fn description(app: &TestApp, id: &str, after: Option<&str>) -> String {
    let mut request = Request::new(ProductId { value: id.into() });
    if let Some(lsn) = after {
        request
            .metadata_mut()
            .insert(READ_AFTER_HEADER, lsn.parse().unwrap());
    }
    app.customer()
        .get_product(request)
        .await
        .expect("getProduct never fails over a replica")
        .into_inner()
        .description
}

#[tokio::test]
async fn catalog_reads_use_a_close_replica_and_fall_back_to_the_primary() {
    shop_testkit::init_logs();
    let primary = Arc::new(
        tokio::task::spawn_blocking(Cluster::temporary)
            .await
            .unwrap()
            .expect("a private primary"),
    );
    let url = primary.ensure_database("productinfo").await.unwrap();
    let source = primary.clone();
    let replica = tokio::task::spawn_blocking(move || source.replica())
        .await
        .unwrap()
        .expect("a streaming replica from pg_basebackup");
    let mut cfg = config(url.clone());
    cfg.service.database_read_url = Some(replica.url_like(&url, &primary));
    cfg.service.database_read_max_lag = MAX_LAG;
    let app = TestApp::spawn_with(cfg).await;

    // A write goes to the primary and says where its WAL was.
    let added = app
        .admin()
        .add_product(shop_testkit::product("Lamp", 1999, 5))
        .await
        .expect("addProduct");
    let written: Lsn = added
        .metadata()
        .get("shop-lsn")
        .expect("a write reports its position")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(written > Lsn(0));
    let id = added.into_inner().value;
    // Read back at once: on the primary, or the replica if it has it.
    assert_eq!(description(&app, &id, None).await, "All about Lamp.");

    eventually("the replica serves reads", PATIENCE, || async {
        usable(&app).await
    })
    .await;
    let before = replica_reads(&app).await;
    assert_eq!(description(&app, &id, None).await, "All about Lamp.");
    assert!(replica_reads(&app).await > before, "read on the replica");

    // Replay paused: a change made on the primary is not on the replica,
    // and reads (within the allowed lag) show the replica's older state.
    let mut standby = replica.admin().await.unwrap();
    standby
        .execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let mut owner = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE products SET description = 'Brighter.' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&mut owner)
        .await
        .unwrap();
    assert_eq!(
        description(&app, &id, None).await,
        "All about Lamp.",
        "served by the paused replica"
    );

    // Writes still work (they are the primary's), and whoever made one
    // reads it by sending back its position: from the primary now.
    let adjusted = app
        .admin()
        .adjust_stock(AdjustStockRequest {
            product_id: id.clone(),
            delta: 3,
            reason: "delivery".into(),
        })
        .await
        .expect("adjustStock while the replica is paused");
    let position = adjusted
        .metadata()
        .get("shop-lsn")
        .expect("a write reports its position")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        description(&app, &id, Some(&position)).await,
        "Brighter.",
        "a read after the caller's own write sees it"
    );

    // Past the allowed lag, everyone reads on the primary.
    eventually("the lagging replica is skipped", PATIENCE, || async {
        !usable(&app).await
    })
    .await;
    assert_eq!(description(&app, &id, None).await, "Brighter.");
    let listed = app
        .customer()
        .list_products(ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(listed[0].stock, Some(8), "listings on the primary too");

    // Caught up: back on the replica.
    standby
        .execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    standby.close().await.unwrap();
    eventually("the caught-up replica serves again", PATIENCE, || async {
        usable(&app).await
    })
    .await;
    let before = replica_reads(&app).await;
    assert_eq!(description(&app, &id, None).await, "Brighter.");
    assert!(replica_reads(&app).await > before, "read on the replica");

    // The replica dies: not one read fails; they run on the primary.
    let replica = Arc::new(replica);
    let stopping = replica.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap()
        .expect("stop the replica");
    for _ in 0..5 {
        assert_eq!(description(&app, &id, None).await, "Brighter.");
        let search: Vec<Product> = {
            use futures::TryStreamExt as _;
            app.customer()
                .search_products(shop_proto::ecommerce::SearchProductsRequest {
                    query: "Lamp".into(),
                    ..Default::default()
                })
                .await
                .expect("search while the replica is down")
                .into_inner()
                .try_collect()
                .await
                .expect("search stream while the replica is down")
        };
        assert_eq!(search.len(), 1);
    }
    assert!(!usable(&app).await, "a dead replica is not used");

    // And comes back.
    let starting = replica.clone();
    tokio::task::spawn_blocking(move || starting.start())
        .await
        .unwrap()
        .expect("restart the replica");
    eventually("the restarted replica serves again", PATIENCE, || async {
        usable(&app).await
    })
    .await;
    assert_eq!(description(&app, &id, None).await, "Brighter.");
    drop(app);
}
