//! The pool against a real PostgreSQL: connections kept and handed over,
//! statements bounded, cancelled calls' statements cancelled, waiting calls
//! that leave nothing behind.

use std::time::Duration;

use sqlx::{Connection as _, Executor as _};

use super::*;
use crate::pg::{DbError, connect_options};

fn args(url: String, max: u32) -> DbArgs {
    DbArgs {
        database_url: url,
        database_password_file: None,
        db_max_connections: max,
        db_acquire_timeout: Duration::from_secs(5),
        db_health_interval: Duration::from_secs(1),
        db_statement_timeout: Duration::from_secs(1),
        db_lock_timeout: Duration::from_secs(1),
        db_idle_in_transaction_timeout: Duration::from_secs(10),
    }
}

async fn db(cluster: &shop_devdb::Cluster, max: u32) -> (Db, String) {
    let url = cluster.fresh_database("pool").await.unwrap();
    let args = args(url.clone(), max);
    (
        Db::new(&args, connect_options(&args, "test").unwrap(), None),
        url,
    )
}

async fn backend_pid(conn: &mut DbConn) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut **conn)
        .await
}

/// Waits (checking every 20 ms, up to 10 s) until `check` says yes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: not within 10 s");
}

/// Sessions of the database running `pg_sleep`.
async fn sleeping(url: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_reused_and_survive_a_killed_backend() {
    let cluster = shop_devdb::Cluster::temporary().unwrap();
    let (db, url) = db(&cluster, 4).await;

    // Kept: the same backend serves the next call.
    let first = backend_pid(&mut db.acquire().await.unwrap()).await.unwrap();
    let again = backend_pid(&mut db.acquire().await.unwrap()).await.unwrap();
    assert_eq!(first, again);
    assert_eq!((db.open(), db.idle()), (1, 1));

    // A transaction left open is rolled back before the connection is used again.
    {
        let mut conn = db.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        tx.execute("CREATE TABLE t (x int)").await.unwrap();
    }
    let mut conn = db.acquire().await.unwrap();
    assert!(!conn.is_in_transaction());
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(tables, 0, "the open transaction was rolled back");
    let kept_pid = conn.pid();
    drop(conn);

    // Its backend killed while kept: one call fails UNAVAILABLE, the next
    // works on a new connection.
    let mut other = PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(kept_pid)
        .execute(&mut other)
        .await
        .unwrap();
    let mut results = Vec::new();
    for _ in 0..3 {
        let mut conn = db.acquire().await.unwrap();
        // As the services do: every error is sorted into a DbError.
        let result = backend_pid(&mut conn).await.map_err(DbError::from);
        drop(conn);
        if let Err(e) = &result {
            assert!(e.is_unavailable(), "{e:?}");
        }
        results.push(result);
    }
    let failed: Vec<&DbError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.len() <= 1, "{failed:?}");
    let last = results.last().unwrap().as_ref().unwrap();
    assert_ne!(*last, kept_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_call_gets_the_connection_a_finishing_call_gives_back() {
    let cluster = shop_devdb::Cluster::temporary().unwrap();
    let (db, _) = db(&cluster, 1).await;
    let held = db.acquire().await.unwrap();
    let held_pid = held.pid();
    let waiting = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut conn = db.acquire().await?;
            backend_pid(&mut conn).await
        })
    };
    while db.waiters() == 0 {
        tokio::task::yield_now().await;
    }

    drop(held);

    assert_eq!(
        waiting.await.unwrap().unwrap(),
        held_pid,
        "the same connection"
    );
    db.close().await;
    assert!(matches!(db.acquire().await, Err(sqlx::Error::PoolClosed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_stop_waiting_leave_nothing_behind_and_no_more_than_max_open() {
    let cluster = shop_devdb::Cluster::temporary().unwrap();
    let (db, _) = db(&cluster, 2).await;
    let held = [db.acquire().await.unwrap(), db.acquire().await.unwrap()];

    // A thousand calls wait, then go away (their callers' deadlines passed).
    let waiting: Vec<_> = (0..1000)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.acquire().await.map(drop) })
        })
        .collect();
    while db.waiters() < 1000 {
        tokio::task::yield_now().await;
    }
    for call in &waiting {
        call.abort();
    }
    for call in waiting {
        let _ = call.await;
    }

    assert_eq!(db.waiters(), 0, "no waiter is left behind");
    drop(held);
    let mut conn = db.acquire().await.unwrap();
    backend_pid(&mut conn).await.unwrap();
    assert_eq!(db.open(), 2, "never more than the two allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_its_timeout_fails_unavailable_and_the_connection_is_reused() {
    let cluster = shop_devdb::Cluster::temporary().unwrap();
    let (db, _) = db(&cluster, 1).await;
    let mut conn = db.acquire().await.unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(timeout, "1s");
    let pid = conn.pid();

    let slow = sqlx::query("SELECT pg_sleep(10)")
        .execute(&mut *conn)
        .await
        .map_err(DbError::from)
        .unwrap_err();

    assert!(slow.is_unavailable(), "{slow:?}");
    drop(conn);
    let mut again = db.acquire().await.unwrap();
    assert_eq!(backend_pid(&mut again).await.unwrap(), pid, "still usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_dropped_mid_query_cancels_its_statement() {
    let cluster = shop_devdb::Cluster::temporary().unwrap();
    let url = cluster.fresh_database("pool").await.unwrap();
    let mut patient = args(url.clone(), 1);
    patient.db_statement_timeout = Duration::from_secs(60);
    let db = Db::new(&patient, connect_options(&patient, "test").unwrap(), None);

    let mut call = Box::pin({
        let db = db.clone();
        async move {
            let mut conn = db.acquire().await.unwrap();
            sqlx::query("SELECT pg_sleep(30)").execute(&mut *conn).await
        }
    });
    tokio::select! {
        _ = &mut call => panic!("the sleep ended by itself"),
        () = eventually("the sleep runs", || async { sleeping(&url).await == 1 }) => {}
    }

    // The server drops an unfinished call this way (its client went away).
    while_cancelling(|| drop(call));

    eventually("the sleep is cancelled", || async {
        sleeping(&url).await == 0
    })
    .await;
    let started = Instant::now();
    let mut next = db.acquire().await.unwrap();
    backend_pid(&mut next).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the next call did not wait for the 30 s sleep"
    );
}

#[tokio::test]
async fn a_socket_folder_in_any_form_psql_takes_reaches_the_server() {
    let cluster = shop_devdb::Cluster::temporary().unwrap();
    let url = cluster.fresh_database("sockets").await.unwrap();
    // postgres://name:password@127.0.0.1:port/name
    let (userinfo, rest) = url
        .trim_start_matches("postgres://")
        .split_once('@')
        .unwrap();
    let (user, password) = userinfo.split_once(':').unwrap();
    let database = rest.rsplit_once('/').unwrap().1;
    let folder = cluster.root().join("sock").display().to_string();
    let port = cluster.port();
    for form in [
        format!("postgresql://{userinfo}@/{database}?host={folder}&port={port}"),
        format!("postgresql://{userinfo}@:{port}/{database}?host={folder}"),
        format!(
            "postgresql://{userinfo}@{}:{port}/{database}",
            folder.replace('/', "%2F")
        ),
        format!("host={folder} port={port} dbname={database} user={user} password='{password}'"),
    ] {
        let args = args(form.clone(), 1);
        let options = connect_options(&args, "test").unwrap_or_else(|e| panic!("{form}: {e:#}"));
        let mut conn = PgConnection::connect_with(&options)
            .await
            .unwrap_or_else(|e| panic!("{form}: {e}"));
        let over_socket: bool = sqlx::query_scalar("SELECT inet_server_addr() IS NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(over_socket, "{form} connects over the Unix socket");
    }
}

/// A server that accepts connections and never answers (or an address that
/// drops packets) fails a call's connect at its acquire timeout, not the
/// operating system's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_within_the_acquire_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let url = format!("postgres://nobody@{addr}/none");
    let args = DbArgs {
        db_acquire_timeout: Duration::from_millis(300),
        ..args(url, 2)
    };
    let db = Db::new(&args, connect_options(&args, "test").unwrap(), None);
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(10), db.acquire())
        .await
        .expect("the connect gave up within the acquire timeout")
        .unwrap_err();
    assert!(matches!(error, sqlx::Error::PoolTimedOut), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(DbError::from(error).is_unavailable());
    held.abort();
}
