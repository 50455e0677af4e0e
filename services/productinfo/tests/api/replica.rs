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

/// Pauses `standby`'s replay and waits until it has stopped (a pause is
/// only requested at first).
async fn pause(standby: &mut sqlx::PgConnection) {
    standby
        .execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
                .fetch_one(&mut *standby)
                .await
                .unwrap();
            if state == "paused" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "replay did not pause");
}

/// Connections productinfo holds to `server`.
async fn connections(server: &Cluster) -> i64 {
    let mut admin = server.admin().await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'productinfo'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

/// Whether the replica answers the service's monitor.
async fn up(app: &TestApp) -> bool {
    metric(app, "shop_db_replica_up").await == 1.0
}

/// Whether reading the description of `id` runs on the replica and says `says`.
async fn read_on_replica(app: &TestApp, id: &str, says: &str) -> bool {
    let before = replica_reads(app).await;
    description(app, id, None).await == says && replica_reads(app).await > before
}

async fn replica_reads(app: &TestApp) -> f64 {
    metric(app, "shop_db_reads_total{server=\"replica\"}").await
}

/// The product `id`, read as a customer, after position `after` if given.
async fn product(app: &TestApp, id: &str, after: Option<&str>) -> Product {
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
}

async fn description(app: &TestApp, id: &str, after: Option<&str>) -> String {
    product(app, id, after).await.description
}

/// Three more of `id` in stock (a write, on the primary); the position
/// its response reports.
async fn deliver_three(app: &TestApp, id: &str) -> String {
    let adjusted = app
        .admin()
        .adjust_stock(AdjustStockRequest {
            product_id: id.into(),
            delta: 3,
            reason: "delivery".into(),
        })
        .await
        .expect("adjustStock, whatever the replica does");
    position(adjusted.metadata())
}

/// The position a write's response reports.
fn position(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get("shop-lsn")
        .expect("a write reports its position")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A private primary (the shared cluster carries every other test's
/// writes) with the catalog's database; its URL.
async fn primary() -> (Arc<Cluster>, String) {
    let primary = Arc::new(
        tokio::task::spawn_blocking(Cluster::temporary)
            .await
            .unwrap()
            .expect("a private primary"),
    );
    let url = primary.ensure_database("productinfo").await.unwrap();
    (primary, url)
}

/// A streaming replica of `primary` in `<its folder>-<name>`.
async fn standby(primary: &Arc<Cluster>, name: &'static str) -> Cluster {
    let source = primary.clone();
    tokio::task::spawn_blocking(move || source.standby(name))
        .await
        .unwrap()
        .expect("a streaming replica from pg_basebackup")
}

#[tokio::test]
async fn catalog_reads_use_a_close_replica_and_fall_back_to_the_primary() {
    shop_testkit::init_logs();
    let (primary, url) = primary().await;
    let replica = standby(&primary, "replica").await;
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
    let written = position(added.metadata());
    assert!(written.parse::<Lsn>().unwrap() > Lsn(0));
    let id = added.into_inner().value;
    // Read back at once: on the primary, or the replica if it has it.
    assert_eq!(description(&app, &id, None).await, "All about Lamp.");

    // Once the replica has replayed the write, reads that send its
    // position run there (and so does any read, from then on).
    eventually(
        "the replica serves reads after the write",
        PATIENCE,
        || async {
            let before = replica_reads(&app).await;
            description(&app, &id, Some(&written)).await == "All about Lamp."
                && replica_reads(&app).await > before
        },
    )
    .await;

    // Replay paused: a change made on the primary is not on the replica,
    // and reads (within the allowed lag) show the replica's older state.
    let mut standby = replica.admin().await.unwrap();
    pause(&mut standby).await;
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
    let position = deliver_three(&app, &id).await;
    assert_eq!(
        description(&app, &id, Some(&position)).await,
        "Brighter.",
        "a read after the caller's own write sees it"
    );

    // Past the allowed lag, everyone reads on the primary.
    eventually("the lagging replica is skipped", PATIENCE, || async {
        description(&app, &id, None).await == "Brighter."
    })
    .await;
    let before = replica_reads(&app).await;
    assert_eq!(description(&app, &id, None).await, "Brighter.");
    assert_eq!(
        replica_reads(&app).await,
        before,
        "not on the lagging replica"
    );
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
    eventually("the caught-up replica serves again", PATIENCE, || {
        read_on_replica(&app, &id, "Brighter.")
    })
    .await;

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
    assert!(!up(&app).await, "a dead replica is not used");

    // And comes back.
    let starting = replica.clone();
    tokio::task::spawn_blocking(move || starting.start())
        .await
        .unwrap()
        .expect("restart the replica");
    eventually("the restarted replica serves again", PATIENCE, || {
        read_on_replica(&app, &id, "Brighter.")
    })
    .await;
    assert!(up(&app).await);
    drop(app);
}

/// One address in front of two standbys, each new connection to the next,
/// as CloudNativePG's `<cluster>-ro` Service spreads them.
struct RoundRobin {
    addr: std::net::SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    async fn start(backends: [u16; 2]) -> RoundRobin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let mut next = 0;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = backends[next % 2];
                next += 1;
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        RoundRobin { addr, accept }
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn stock(app: &TestApp, id: &str, after: Option<&str>) -> i64 {
    product(app, id, after)
        .await
        .stock
        .expect("a product that tracks stock")
}

/// Sixteen reads at once (so the pool holds connections to both standbys):
/// the stock each saw.
async fn many_stocks(app: &TestApp, id: &str, after: Option<&str>) -> Vec<i64> {
    futures::future::join_all((0..16).map(|_| stock(app, id, after))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_over_two_replicas_is_checked_connection_by_connection() {
    shop_testkit::init_logs();
    let (primary, url) = primary().await;
    let (a, b) = (
        standby(&primary, "replica-a").await,
        standby(&primary, "replica-b").await,
    );
    let ro = RoundRobin::start([a.port(), b.port()]).await;
    let mut cfg = config(url.clone());
    cfg.service.database_read_url = Some(url.replace(
        &format!("127.0.0.1:{}/", primary.port()),
        &format!("{}/", ro.addr),
    ));
    cfg.service.database_read_max_lag = MAX_LAG;
    let app = TestApp::spawn_with(cfg).await;
    let id = app
        .admin()
        .add_product(shop_testkit::product("Lamp", 1999, 5))
        .await
        .expect("addProduct")
        .into_inner()
        .value;
    eventually("the replicas serve reads", PATIENCE, || async {
        let before = replica_reads(&app).await;
        many_stocks(&app, &id, None).await;
        replica_reads(&app).await > before
    })
    .await;

    // Standby B, once it has the product, stops replaying; A goes on.
    let mut b_db = sqlx::PgConnection::connect(&b.url_like(&url, &primary))
        .await
        .unwrap();
    let stock_on_b = async |b_db: &mut sqlx::PgConnection| -> Option<i64> {
        sqlx::query_scalar("SELECT stock FROM products WHERE id = $1::uuid")
            .bind(&id)
            .fetch_optional(b_db)
            .await
            .unwrap()
    };
    let waited = tokio::time::timeout(PATIENCE, async {
        while stock_on_b(&mut b_db).await.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "standby B never had the product");
    let mut paused = b.admin().await.unwrap();
    pause(&mut paused).await;
    let position = deliver_three(&app, &id).await;
    let on_b = stock_on_b(&mut b_db).await;
    assert_eq!(on_b, Some(5), "standby B does not have the write");
    // Whichever standby a connection reaches, a read after the write sees it.
    for _ in 0..3 {
        assert_eq!(many_stocks(&app, &id, Some(&position)).await, vec![8; 16]);
    }
    assert!(
        connections(&a).await > 0 && connections(&b).await > 0,
        "the service reads through connections to both standbys"
    );

    // Once B is further behind than allowed, no read comes from it, while
    // A still serves reads.
    tokio::time::sleep(MAX_LAG + Duration::from_millis(500)).await;
    eventually("standby A serves a read", PATIENCE, || async {
        let before = replica_reads(&app).await;
        assert_eq!(
            many_stocks(&app, &id, None).await,
            vec![8; 16],
            "no stale read"
        );
        replica_reads(&app).await > before
    })
    .await;
    paused
        .execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
}
