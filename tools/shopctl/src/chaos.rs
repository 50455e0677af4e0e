//! `shopctl chaos` (`make chaos`): the shop under load, broken the ways
//! Kubernetes breaks it, then checked across both databases for anything
//! lost or duplicated.
//!
//! The shop: a private PostgreSQL, two productinfo replicas, two order
//! replicas and the storefront, mutual TLS between them, each on a fixed
//! port so a replica started again is where its callers look. The load:
//! `shopctl load`'s usual mix in open loop. The faults, each in a phase of
//! its own (so each failure is charged to its fault):
//!
//! 1. SIGKILL of a productinfo replica, started again a moment later;
//! 2. SIGKILL of an order replica while checkouts are in flight, started again;
//! 3. a fast restart of PostgreSQL;
//! 4. SIGTERM of every service in turn, each started again once it is gone
//!    (a rolling update).
//!
//! Then, once the order service's outbox has drained, it checks:
//!
//! - every held reservation in productinfo belongs to a confirmed or
//!   shipped order with the same lines, and every such order has its
//!   reservation;
//! - per product, stock plus held units changed only by admin adjustments;
//! - every order the load was told was placed exists, and no idempotency
//!   key has two orders;
//! - each fault stayed within its error budget: a killed replica costs at
//!   most the calls in flight on it, draining costs nothing, and the
//!   database restart costs no read (reads are retried within their
//!   deadline by the services).
//!
//! It prints a table and exits non-zero on any violation.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::TcpListener,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use shop_devdb::Cluster;
use shop_runtime::{
    auth::{Role, Signer},
    balance::EndpointState,
    config::parse_duration,
    tls::Tls,
};
use tokio::process::Command;

use crate::{
    bench::{self, Service, Setup, path_str, start},
    certs,
    connect::Bearer,
    load::{self, Fixtures, Mix, Plan, Report},
    local::{absolute, bin_dir},
};

/// Options of `shopctl chaos`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Folder of the service binaries (default: next to shopctl).
    #[arg(long, env = "SHOP_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Folder for the database, logs and the report.
    #[arg(long, default_value = "target/chaos")]
    pub out: PathBuf,

    /// Calls per second of the load (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// How long the load runs around each fault.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub phase: Duration,

    /// How many times every fault is done.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rounds: u32,

    /// One pass of each fault with a few seconds of load each (what `make
    /// test` runs).
    #[arg(long)]
    pub short: bool,
}

/// The faults, in the order they are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillCatalog,
    KillOrder,
    RestartDatabase,
    RollingRestart,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::KillCatalog,
        Fault::KillOrder,
        Fault::RestartDatabase,
        Fault::RollingRestart,
    ];

    fn describe(self) -> &'static str {
        match self {
            Fault::KillCatalog => "SIGKILL one of two productinfo replicas, start it again",
            Fault::KillOrder => "SIGKILL one of two order replicas mid-checkout, start it again",
            Fault::RestartDatabase => "PostgreSQL fast restart",
            Fault::RollingRestart => "SIGTERM (drain) each service in turn, start it again",
        }
    }
}

/// The services by index in the shop's list.
const CATALOG_1: usize = 0;
const ORDER_1: usize = 2;

/// What starting one service again takes.
struct Recipe {
    name: String,
    kind: &'static str,
    bin: PathBuf,
    env: Vec<(&'static str, String)>,
}

/// The running shop and how to start each of its services again.
struct Shop {
    services: Vec<Service>,
    recipes: Vec<Recipe>,
    logs: PathBuf,
    tls: Tls,
}

impl Shop {
    async fn start(&mut self, n: usize) -> anyhow::Result<()> {
        let r = &self.recipes[n];
        let service = start(
            &r.name,
            r.kind,
            &r.bin,
            &self.logs,
            Some(self.tls.clone()),
            r.env.clone(),
        )
        .await?;
        if n < self.services.len() {
            self.services[n] = service;
        } else {
            self.services.push(service);
        }
        Ok(())
    }

    async fn signal(&self, n: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self.services[n]
            .pid()
            .with_context(|| format!("{} is not running", self.recipes[n].name))?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
        Ok(())
    }

    /// Waits (at most 30 s) until service `n` has exited.
    async fn exited(&mut self, n: usize) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(30), self.services[n].child.wait())
            .await
            .with_context(|| format!("{} did not exit", self.recipes[n].name))??;
        Ok(())
    }
}

/// One fault's phase: what the load saw.
struct Phase {
    fault: Fault,
    round: u32,
    report: Report,
}

/// `shopctl chaos`.
pub async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    let args = if args.short {
        ChaosArgs {
            rate: args.rate.min(40.0),
            phase: Duration::from_secs(4),
            rounds: 1,
            ..args
        }
    } else {
        args
    };
    let out = absolute(&args.out)?;
    let bins = bin_dir(args.bin_dir.as_deref())?;
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("logs"))?;
    eprintln!("chaos: starting PostgreSQL in {}", out.join("pg").display());
    let cluster = Arc::new(tokio::task::block_in_place(|| {
        Cluster::persistent(&out.join("pg"))
    })?);
    let result = run(&args, &out, &bins, cluster.clone()).await;
    eprintln!("chaos: stopping PostgreSQL");
    tokio::task::block_in_place(|| drop(cluster));
    let violations = result?;
    if !violations.is_empty() {
        bail!(
            "{} violation(s):\n  {}",
            violations.len(),
            violations.join("\n  ")
        );
    }
    println!("chaos: nothing lost, nothing duplicated, every fault within its budget");
    Ok(())
}

/// A free port on 127.0.0.1 (free now; the service binds it in a moment).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn run(
    args: &ChaosArgs,
    out: &Path,
    bins: &Path,
    cluster: Arc<Cluster>,
) -> anyhow::Result<Vec<String>> {
    let bin = |name: &str| bins.join(name);
    let (productinfo_bin, order_bin, storefront_bin) =
        (bin("productinfo"), bin("order"), bin("storefront"));
    let setup = Setup::prepare(
        &cluster,
        [&productinfo_bin, &order_bin, &storefront_bin],
        out,
    )
    .await?;
    let urls: BTreeMap<&str, String> = [
        ("productinfo", setup.productinfo_db.clone()),
        ("order", setup.order_db.clone()),
        ("storefront", setup.storefront_db.clone()),
    ]
    .into();
    let (people, catalog_trusts, tls_dir) = (&setup.people, &setup.catalog_trusts, &setup.tls_dir);
    let (order_key, storefront_key, admin_password) = (
        &setup.order_key,
        &setup.storefront_key,
        &setup.admin_password,
    );

    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
    let addr = |n: usize| format!("127.0.0.1:{}", ports[n]);
    let catalog = format!("{},{}", addr(0), addr(1));
    let orders = format!("{},{}", addr(2), addr(3));
    let common = |name: &str, n: usize| {
        let mut env = vec![
            ("LISTEN_ADDR", addr(n)),
            // Long enough for callers to see NOT_SERVING before the
            // listener closes: draining costs nothing.
            ("DRAIN_DELAY", "1s".to_owned()),
            ("RESOLVE_INTERVAL", "1s".to_owned()),
        ];
        env.extend(certs::service_env(tls_dir, name, name == "storefront"));
        env
    };
    let mut recipes = Vec::new();
    for (n, name, kind) in [
        (0, "productinfo-1", "productinfo"),
        (1, "productinfo-2", "productinfo"),
        (2, "order-1", "order"),
        (3, "order-2", "order"),
        (4, "storefront", "storefront"),
    ] {
        let mut env = common(kind, n);
        match kind {
            "productinfo" => env.extend([
                ("DATABASE_URL", urls["productinfo"].clone()),
                ("TRUSTED_ISSUERS", catalog_trusts.clone()),
            ]),
            "order" => env.extend([
                ("DATABASE_URL", urls["order"].clone()),
                ("TRUSTED_ISSUERS", people.clone()),
                ("PRODUCTINFO_TARGET", catalog.clone()),
                ("SIGNING_KEY_FILE", path_str(order_key)),
                // The outbox: pending releases retried every second, and a
                // placement cut by a kill counts as abandoned after 5 s.
                ("RELEASE_INTERVAL", "1s".to_owned()),
                ("ABANDONED_AFTER", "5s".to_owned()),
            ]),
            _ => env.extend([
                ("DATABASE_URL", urls["storefront"].clone()),
                ("TRUSTED_ISSUERS", people.clone()),
                ("PRODUCTINFO_TARGET", catalog.clone()),
                ("ORDER_TARGET", orders.clone()),
                ("SIGNING_KEY_FILE", path_str(storefront_key)),
                ("ADMIN_EMAIL", "admin@chaos.local".into()),
                ("ADMIN_PASSWORD_FILE", path_str(admin_password)),
            ]),
        }
        recipes.push(Recipe {
            name: name.to_owned(),
            kind,
            bin: bins.join(kind),
            env,
        });
    }
    let mut shop = Shop {
        services: Vec::new(),
        recipes,
        logs: out.join("logs"),
        tls: certs::client(tls_dir, "bench")?,
    };
    let result = async {
        for n in 0..5 {
            shop.start(n).await?;
        }
        faults(args, &mut shop, &cluster, &urls, storefront_key, tls_dir).await
    }
    .await;
    bench::stop_all(&mut shop.services).await;
    result
}

async fn faults(
    args: &ChaosArgs,
    shop: &mut Shop,
    cluster: &Arc<Cluster>,
    urls: &BTreeMap<&str, String>,
    signing_key: &Path,
    tls_dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let connect = bench::connect_args(&shop.services, signing_key, Some(tls_dir))?;
    let signer = Signer::from_file("storefront", signing_key)?;
    let admin = signer.sign(
        "chaos-admin",
        Role::Admin,
        &["productinfo"],
        Duration::from_secs(3600),
    )?;
    bench::seed(shop.services[0].channel()?, &admin, 20).await?;
    let clients = (0..2)
        .map(|_| connect.clients_with(Bearer::none()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fixtures = Arc::new(
        Fixtures::prepare(&clients[0], &signer, 20, 50, 1_000_000)
            .await?
            .keep_confirmed(),
    );
    let catalog = sqlx::PgPool::connect(&urls["productinfo"]).await?;
    let orders = sqlx::PgPool::connect(&urls["order"]).await?;
    let before = ledger(&catalog).await?;

    let mut phases = Vec::new();
    for round in 1..=args.rounds {
        for fault in Fault::ALL {
            eprintln!("chaos: round {round}: {}", fault.describe());
            let duration = match fault {
                // Five services, each drained and started again.
                Fault::RollingRestart => args.phase.max(Duration::from_secs(25)),
                _ => args.phase,
            };
            let plan = Plan {
                mix: "get=60,list=15,order=15,search=5,process=5"
                    .parse::<Mix>()
                    .map_err(anyhow::Error::msg)?,
                duration,
                warmup: Duration::ZERO,
                concurrency: 16,
                rate: Some(args.rate),
                max_in_flight: 1000,
                progress: false,
                cpu: None,
                // As the shop's own clients do: a read refused while the
                // database restarts (shed, or no ready replica) is tried
                // again after the server's pushback, within its deadline.
                retry_reads: true,
            };
            let load = tokio::spawn({
                let (clients, fixtures) = (clients.clone(), fixtures.clone());
                async move { load::run(clients, fixtures, &plan).await }
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
            do_fault(fault, shop, cluster, args.phase, &clients).await?;
            let report = load.await??;
            phases.push(Phase {
                fault,
                round,
                report,
            });
        }
    }

    eprintln!("chaos: waiting for the order service's outbox to drain");
    let drained = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM reservation_intents")
                .fetch_one(&orders)
                .await?;
            if pending == 0 {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let mut violations = Vec::new();
    if drained.is_err() {
        violations.push("the outbox did not drain within 90 s".to_owned());
    }
    violations.extend(check(&catalog, &orders, &before, &fixtures.confirmed()).await?);
    let table = budget_table(&phases, args.rate, &mut violations);
    println!("{table}");
    std::fs::write(args.out.join("report.md"), &table)?;
    Ok(violations)
}

async fn do_fault(
    fault: Fault,
    shop: &mut Shop,
    cluster: &Arc<Cluster>,
    phase: Duration,
    generator: &[crate::connect::Clients],
) -> anyhow::Result<()> {
    match fault {
        Fault::KillCatalog | Fault::KillOrder => {
            let n = if fault == Fault::KillCatalog {
                CATALOG_1
            } else {
                ORDER_1
            };
            shop.signal(n, "-KILL").await?;
            shop.exited(n).await?;
            tokio::time::sleep(phase / 3).await;
            shop.start(n).await?;
            in_rotation(shop, generator).await?;
        }
        Fault::RestartDatabase => {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || {
                cluster.stop()?;
                cluster.start()
            })
            .await??;
        }
        Fault::RollingRestart => {
            // As a Deployment's rolling update with maxUnavailable 0 and
            // minReadySeconds: the next pod goes only once the new one is
            // in every caller's rotation.
            for n in 0..shop.services.len() {
                shop.signal(n, "-TERM").await?;
                shop.exited(n).await?;
                shop.start(n).await?;
                in_rotation(shop, generator).await?;
            }
        }
    }
    Ok(())
}

/// Waits (at most 20 s) until every caller has every replica in its
/// rotation again: order and the storefront by their `/metrics`, the load
/// generator by its own balancers.
async fn in_rotation(shop: &Shop, generator: &[crate::connect::Clients]) -> anyhow::Result<()> {
    let wanted = [("productinfo", 2), ("order", 2)];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut all = generator.iter().all(|c| {
                [
                    &c.productinfo_channel,
                    &c.order_channel,
                    &c.storefront_channel,
                ]
                .iter()
                .all(|b| b.stats().iter().all(|e| e.state == EndpointState::Ready))
            });
            for caller in &shop.services[ORDER_1..] {
                let metrics = bench::http_get(caller.metrics, "/metrics")
                    .await
                    .unwrap_or_default();
                for (upstream, n) in wanted {
                    let label = format!("upstream=\"{upstream}\"");
                    let ready: f64 = metrics
                        .lines()
                        .filter(|l| {
                            l.starts_with("shop_balancer_endpoints{")
                                && l.contains(&label)
                                && l.contains("state=\"ready\"")
                        })
                        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                        .sum();
                    let calls_it = metrics.contains(&label);
                    all &= !calls_it || ready >= f64::from(n);
                }
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .context("a service started again was not back in every caller's rotation within 20 s")
}

/// Per product: stock plus held units, and the admin adjustments so far.
type Ledger = BTreeMap<String, (i64, i64)>;

async fn ledger(catalog: &sqlx::PgPool) -> anyhow::Result<Ledger> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT p.id::text, \
                p.stock + coalesce((SELECT sum(l.quantity) FROM reservation_lines l \
                                    JOIN reservations r USING (order_id) \
                                    WHERE l.product_id = p.id AND r.state = 'held' AND l.tracked), 0)::bigint, \
                coalesce((SELECT sum(a.delta) FROM stock_adjustments a WHERE a.product_id = p.id), 0)::bigint \
         FROM products p WHERE p.stock IS NOT NULL",
    )
    .fetch_all(catalog)
    .await?;
    Ok(rows.into_iter().map(|(id, t, a)| (id, (t, a))).collect())
}

/// The invariants across both databases; each violation in words.
async fn check(
    catalog: &sqlx::PgPool,
    orders: &sqlx::PgPool,
    before: &Ledger,
    confirmed: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut violations = Vec::new();
    // Held reservations and live orders, line for line.
    let held: BTreeSet<(String, String, i64)> = sqlx::query_as(
        "SELECT r.order_id, l.product_id::text, l.quantity FROM reservations r \
         JOIN reservation_lines l USING (order_id) WHERE r.state = 'held'",
    )
    .fetch_all(catalog)
    .await?
    .into_iter()
    .collect();
    let live: BTreeSet<(String, String, i64)> = sqlx::query_as(
        "SELECT o.id::text, l.product_id::text, sum(l.quantity)::bigint FROM orders o \
         JOIN order_lines l ON l.order_id = o.id \
         WHERE o.status IN ('confirmed', 'shipped') GROUP BY 1, 2",
    )
    .fetch_all(orders)
    .await?
    .into_iter()
    .collect();
    for line in held.difference(&live).take(5) {
        violations.push(format!("held reservation without its order line: {line:?}"));
    }
    for line in live.difference(&held).take(5) {
        violations.push(format!("order line without its reservation: {line:?}"));
    }
    // Stock plus held units moved only by admin adjustments.
    let after = ledger(catalog).await?;
    for (product, (total, adjusted)) in &after {
        let (total0, adjusted0) = before.get(product).copied().unwrap_or((0, 0));
        if total - total0 != adjusted - adjusted0 {
            violations.push(format!(
                "product {product}: stock + held moved by {} but adjustments by {}",
                total - total0,
                adjusted - adjusted0
            ));
        }
    }
    // Every order the load was told about exists; no key made two.
    let ids: Vec<uuid::Uuid> = confirmed.iter().filter_map(|id| id.parse().ok()).collect();
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(orders)
        .await?;
    if found != ids.len() as i64 {
        violations.push(format!(
            "{} of {} orders the load was told were placed are missing",
            ids.len() as i64 - found,
            ids.len()
        ));
    }
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM orders WHERE idempotency_key IS NOT NULL \
         GROUP BY customer, idempotency_key HAVING count(*) > 1) d",
    )
    .fetch_one(orders)
    .await?;
    if twice > 0 {
        violations.push(format!("{twice} idempotency keys with more than one order"));
    }
    eprintln!(
        "chaos: {} held reservations, {} live order lines, {} orders placed by the load, {} products checked",
        held.len(),
        live.len(),
        ids.len(),
        after.len()
    );
    Ok(violations)
}

/// The error budget of each phase as a table; what is over it is added to
/// `violations`.
fn budget_table(phases: &[Phase], rate: f64, violations: &mut Vec<String>) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "| fault | round | calls | failed (by code) | budget | |\n|---|---|---|---|---|---|\n",
    );
    for p in phases {
        let calls: u64 = p.report.rpcs.iter().map(|r| r.calls).sum();
        let failed = |reads_only: bool| -> u64 {
            p.report
                .rpcs
                .iter()
                .filter(|r| {
                    !reads_only || matches!(r.rpc, "getProduct" | "listProducts" | "searchOrders")
                })
                .map(|r| r.errors.values().sum::<u64>())
                .sum()
        };
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        for r in &p.report.rpcs {
            for (code, n) in &r.errors {
                *codes.entry(format!("{} {code}", r.rpc)).or_default() += n;
            }
        }
        // Calls in flight at any moment: the rate times how long a call
        // lasts (its p99), and one more.
        let p99 = p.report.rpcs.iter().map(|r| r.p99_us).max().unwrap_or(0) as f64 / 1e6;
        let in_flight = (rate * p99).ceil() as u64 + 1;
        let (budget, spent, over) = match p.fault {
            Fault::KillCatalog | Fault::KillOrder => (
                format!("≤ {in_flight} (the calls in flight)"),
                failed(false),
                failed(false) > in_flight,
            ),
            Fault::RollingRestart => ("0".to_owned(), failed(false), failed(false) > 0),
            Fault::RestartDatabase => ("0 failed reads".to_owned(), failed(true), failed(true) > 0),
        };
        if over {
            violations.push(format!(
                "{} (round {}): {spent} failed, budget {budget}",
                p.fault.describe(),
                p.round
            ));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {calls} | {} | {budget} | {} |",
            p.fault.describe(),
            p.round,
            if codes.is_empty() {
                "0".to_owned()
            } else {
                codes
                    .iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            if over { "**over**" } else { "met" }
        );
    }
    s
}
