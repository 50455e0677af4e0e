//! `shopctl bench` (what `make bench` runs): how fast the shop is, measured
//! on this machine in one run, next to the physical limit of the same work.
//!
//! 1. A fresh PostgreSQL cluster in `<out>/pg` (default settings, durable),
//!    the three databases and roles, migrations applied by each binary's
//!    `migrate` command.
//! 2. Each service started from the binaries in `--bin-dir` (release builds
//!    from `make bench`); the time from spawning it to its health check
//!    answering SERVING is its start-up time.
//! 3. A catalog of `--products` products with ample stock, added through the
//!    API; resident memory of each service, idle.
//! 4. The ceiling: `pgbench` running getProduct's own SELECT on the same rows
//!    (prepared statements, `--concurrency` clients, one script per product).
//! 5. `getProduct` at maximum throughput (`--concurrency` callers, closed loop),
//!    then at half that rate on a fixed schedule (open loop) for latency;
//!    `addOrder` at maximum throughput, with durable commits and again with
//!    `synchronous_commit=off` (what durability costs). During each, the
//!    share of calls each productinfo replica served (from its own
//!    `/metrics`) and the peak resident memory of every service; for the
//!    maximum-throughput runs, the CPU time per call of every process
//!    (replicas, order, storefront, PostgreSQL's server and backends, the
//!    generator), from `/proc` over the measured window.
//! 6. A hostile client per service (getProduct, getOrder, getCart): 100
//!    calls open at once on one connection, then 1,000 over ten, each
//!    started again the moment it ends; the service's peak resident memory
//!    and how many calls it answered or refused.
//! 7. Overload: 2,000 closed-loop getProduct callers (ten times what the
//!    catalog admits) backing off as the refusals ask, between two light
//!    runs of two callers; the admitted calls' p99 in the service (its own
//!    histogram) against the light run's, the calls shed
//!    (`shop_grpc_server_shed_total`), peak memory, and the light run again
//!    right after (recovery). The generator runs at the lowest CPU priority
//!    from here on, so the services get the cores first, as they would on
//!    machines of their own.
//! 8. `<out>/report.json` and `<out>/report.md`, each target marked met or
//!    missed by how much.
//!
//! Everything shares this machine's cores: generator, services and
//! database. Absolute numbers drift between machines and runs; compare only
//! figures from one run.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use shop_devdb::Cluster;
use shop_proto::ecommerce::{
    CartItemRequest, GetCartRequest, Money, Order, OrderLine, Product, ProductId, RegisterRequest,
    order_management_client::OrderManagementClient, product_info_client::ProductInfoClient,
    storefront_client::StorefrontClient,
};
use shop_runtime::{
    auth::{Role, Signer, ensure_keypair},
    config::parse_duration,
    service::Addrs,
    tls::Tls,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    process::{Child, Command},
    time::Instant,
};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

mod hostile;
mod scale;

use crate::{certs, cpu};

use crate::{
    connect::{Bearer, ConnectArgs},
    load::{self, Fixtures, Mix, Op, Plan, Report},
    local::{absolute, bin_dir},
};

/// Options of `shopctl bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Folder of the service binaries (default: next to shopctl).
    #[arg(long, env = "SHOP_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Folder for the database, logs and the report.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,

    /// How long each measurement runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Calls before each measurement starts (connections, caches).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Callers at once for the maximum-throughput runs, and pgbench's clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,

    /// Products in the catalog (at most 100: pgbench takes one script each).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub products: u16,

    /// Catalog and order sizes of the scale section, grown to in turn
    /// (generated rows straight in the databases); 0 skips it.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub scale: Vec<u64>,

    /// Also sample every process's CPU with `perf record` during the
    /// getProduct and addOrder maximum-throughput runs; the hottest
    /// functions per process go to `<out>/profile-<run>.txt`.
    #[arg(long)]
    pub profile: bool,
}

/// The targets of the shop's performance (see the README).
const TARGET_RATIO: f64 = 0.3;
const TARGET_P99_US: u64 = 2_000;
const TARGET_RSS_KB: u64 = 15 * 1024;
const TARGET_START_MS: f64 = 100.0;
const TARGET_SPREAD: f64 = 0.02;
/// addOrder calls/s with 16 callers (commits not waiting for the disk).
const TARGET_ORDERS: f64 = 2_500.0;
/// CPU per addOrder, every process together (µs).
const TARGET_ORDER_CPU_US: f64 = 800.0;
/// CPU per getProduct in productinfo (µs).
const TARGET_GET_CPU_US: f64 = 60.0;
/// Search p99 at the largest size of the scale section (ms).
const TARGET_SEARCH_P99_MS: f64 = 20.0;
/// Most any timed call of the scale section may grow from its smallest
/// size to its largest.
const TARGET_SCALE_GROWTH: f64 = 3.0;
/// Peak resident memory of any service under the throughput runs.
const TARGET_PEAK_RSS_KB: u64 = 32 * 1024;
/// Resident memory with 100 calls open on one connection, and with 1,000
/// over ten connections (a tenth of the chart's 128 MiB limit, and half).
const TARGET_STREAMS_KB: [(usize, usize, u64); 2] = [(100, 1, 48 * 1024), (1000, 10, 64 * 1024)];
/// Callers of the overload run, and connections they share (at most 100
/// calls at once per connection: MAX_CONCURRENT_STREAMS).
const OVERLOAD_CALLERS: usize = 2000;
const OVERLOAD_CONNECTIONS: usize = 20;
/// Callers of the light runs around it.
const LIGHT_CALLERS: usize = 2;
/// Admitted calls' p99 under overload, at most this many times the light run's.
const TARGET_OVERLOAD_P99: f64 = 3.0;

/// A running service of the benchmark.
pub(crate) struct Service {
    pub(crate) name: String,
    /// productinfo, order or storefront: the name its certificate proves.
    kind: &'static str,
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) metrics: SocketAddr,
    start_ms: f64,
    /// The bench's client TLS, when the service speaks TLS.
    tls: Option<Tls>,
}

impl Service {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A new connection (made on the first call) to the service.
    pub(crate) fn channel(&self) -> anyhow::Result<Channel> {
        shop_runtime::tls::connect::channel(
            &self.addr.to_string(),
            self.tls.as_ref().map(|tls| (tls, self.kind)),
            Duration::from_secs(5),
        )
        .map_err(anyhow::Error::msg)
    }
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gb: f64,
    os: String,
    postgres: String,
    date: String,
    revision: String,
}

#[derive(Debug, Serialize)]
struct ServiceFigures {
    name: String,
    start_to_serving_ms: f64,
    rss_idle_kb: u64,
    /// Of it, memory of the process's own (heap, stacks), not pages of its
    /// binary and libraries (file-backed, shared by every replica on a node).
    rss_idle_anon_kb: u64,
    rss_peak_under_load_kb: u64,
}

#[derive(Debug, Serialize)]
struct Target {
    name: String,
    goal: String,
    measured: String,
    met: bool,
    /// How far from the goal, when missed ("1.8x too slow", "+3.1 MB").
    miss: Option<String>,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    machine: Machine,
    settings: BTreeMap<String, String>,
    pgbench_tps: f64,
    get_product_max: Report,
    get_product_ratio_to_pgbench: f64,
    get_product_half_rate: Report,
    /// addOrder with durable commits (PostgreSQL's defaults).
    add_order_max: Report,
    /// addOrder with `synchronous_commit=off`.
    add_order_fast: Report,
    /// Share of getProduct calls each productinfo replica served.
    spread_get_product: Vec<(String, f64)>,
    /// Share of reserveStock calls (order -> productinfo) each replica served.
    spread_add_order: Vec<(String, f64)>,
    services: Vec<ServiceFigures>,
    /// Each service with many calls open at once.
    streams: Vec<hostile::StreamFigures>,
    overload: Overload,
    targets: Vec<Target>,
    /// The same shop in plaintext: what mutual TLS costs.
    plaintext: Option<Plaintext>,
    /// Catalog and order search as the tables grow.
    scale: Option<scale::Scale>,
}

/// getProduct and addOrder (synchronous_commit=off) at their maximum
/// throughput, every hop in plaintext.
#[derive(Debug, Serialize)]
struct Plaintext {
    get_product: Report,
    add_order: Report,
    /// Each service's resident memory idle, and of it anonymous, as
    /// [`ServiceFigures`] (same order).
    rss_idle_kb: Vec<(u64, u64)>,
}

/// getProduct with ten times more callers than the catalog admits.
#[derive(Debug, Serialize)]
struct Overload {
    callers: usize,
    connections: usize,
    /// Two callers, before.
    light: Report,
    loaded: Report,
    /// Two callers, right after.
    recovery: Report,
    /// The p99 of light, loaded and recovery as the replicas measured it
    /// (`grpc_server_handling_seconds`, interpolated within its bucket):
    /// the time an admitted call spends in the service. The generator's
    /// figures add its own time, and it shares the machine's cores.
    server_p99_us: [f64; 3],
    /// Calls the replicas refused (`shop_grpc_server_shed_total`).
    shed: f64,
    /// The larger of the two replicas' peaks.
    rss_peak_kb: u64,
}

/// The highest resident memory of some processes, sampled every 20 ms from
/// [`PeakRss::start`] to [`PeakRss::stop`].
struct PeakRss {
    pids: Vec<Option<u32>>,
    peaks: Arc<Mutex<Vec<u64>>>,
    sampler: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn start(pids: Vec<Option<u32>>) -> Self {
        let peaks = Arc::new(Mutex::new(vec![0u64; pids.len()]));
        let sampler = {
            let (pids, peaks) = (pids.clone(), peaks.clone());
            tokio::spawn(async move {
                loop {
                    sample(&pids, &peaks);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self {
            pids,
            peaks,
            sampler,
        }
    }

    /// The peaks, in the order of the pids given to [`PeakRss::start`].
    fn stop(self) -> Vec<u64> {
        self.sampler.abort();
        sample(&self.pids, &self.peaks);
        self.peaks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn sample(pids: &[Option<u32>], peaks: &Mutex<Vec<u64>>) {
    let mut peaks = peaks.lock().unwrap_or_else(|p| p.into_inner());
    for (peak, pid) in peaks.iter_mut().zip(pids) {
        *peak = (*peak).max(pid.and_then(rss_kb).unwrap_or(0));
    }
}

/// Runs the benchmark and writes the report.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let out = absolute(&args.out)?;
    let bin_dir = bin_dir(args.bin_dir.as_deref())?;
    let bin = |name: &str| -> anyhow::Result<PathBuf> {
        let path = bin_dir.join(name);
        if !path.is_file() {
            bail!(
                "{} not found: `make bench` builds the release binaries first",
                path.display()
            );
        }
        Ok(path)
    };
    let (productinfo_bin, order_bin, storefront_bin) =
        (bin("productinfo")?, bin("order")?, bin("storefront")?);
    let _ = std::fs::remove_dir_all(&out);
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs)?;

    eprintln!("bench: starting PostgreSQL in {}", out.join("pg").display());
    let pg_dir = out.join("pg");
    let cluster = tokio::task::block_in_place(|| Cluster::persistent(&pg_dir))?;
    let result = run(
        &args,
        &out,
        &cluster,
        [&productinfo_bin, &order_bin, &storefront_bin],
    )
    .await;
    eprintln!("bench: stopping PostgreSQL");
    tokio::task::block_in_place(|| drop(cluster));
    let report = result?;

    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let markdown = render(&report);
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("{markdown}");
    println!(
        "Written: {} and {}",
        out.join("report.json").display(),
        out.join("report.md").display()
    );
    Ok(())
}

async fn run(
    args: &BenchArgs,
    out: &Path,
    cluster: &Cluster,
    [productinfo_bin, order_bin, storefront_bin]: [&PathBuf; 3],
) -> anyhow::Result<BenchReport> {
    let Setup {
        productinfo_db,
        order_db,
        storefront_db,
        storefront_key,
        order_key,
        people,
        catalog_trusts,
        admin_password,
        tls_dir,
    } = Setup::prepare(cluster, [productinfo_bin, order_bin, storefront_bin], out).await?;
    let shop = Shop {
        bins: [productinfo_bin, order_bin, storefront_bin],
        dbs: [&productinfo_db, &order_db, &storefront_db],
        keys: [&storefront_key, &order_key],
        catalog_trusts: &catalog_trusts,
        people: &people,
        admin_password: &admin_password,
        logs: &out.join("logs"),
    };

    let mut services: Vec<Service> = Vec::new();
    let started = shop.start(&mut services, Some(&tls_dir), "").await;
    let result = match started {
        Ok(()) => tokio::select! {
            result = measure(args, cluster, &services, &productinfo_db, &storefront_key, &tls_dir) => result,
            () = shop_runtime::server::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
        },
        Err(e) => Err(e),
    };
    stop_all(&mut services).await;
    let mut report = result?;

    // The same shop in plaintext, to show what TLS costs.
    // Then the scale section, on the same shop: it grows the tables, so it
    // comes last.
    let started = shop.start(&mut services, None, "plaintext-").await;
    let result = match started {
        Ok(()) => tokio::select! {
            result = async {
                let compared = plaintext(args, cluster, &services, &storefront_key).await?;
                let sizes: Vec<u64> = args.scale.iter().copied().filter(|n| *n > 0).collect();
                let scaled = if sizes.is_empty() {
                    None
                } else {
                    let signer = Signer::from_file("storefront", &storefront_key)?;
                    let admin = Bearer::new(&signer.sign(
                        "bench-admin",
                        Role::Admin,
                        &["productinfo", "order"],
                        Duration::from_secs(3600),
                    )?)?;
                    Some(
                        scale::run(
                            &sizes,
                            &productinfo_db,
                            &order_db,
                            ProductInfoClient::with_interceptor(services[0].channel()?, admin.clone()),
                            OrderManagementClient::with_interceptor(services[2].channel()?, admin),
                            args.concurrency,
                            args.duration,
                        )
                        .await?,
                    )
                };
                anyhow::Ok((compared, scaled))
            } => result,
            () = shop_runtime::server::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
        },
        Err(e) => Err(e),
    };
    stop_all(&mut services).await;
    let ((get_product, add_order, rss_idle_kb), scaled) = result?;
    report.plaintext = Some(Plaintext {
        get_product,
        add_order,
        rss_idle_kb,
    });
    if let Some(scaled) = &scaled {
        report.targets.extend(scale_targets(scaled));
    }
    report.scale = scaled;
    Ok(report)
}

/// What a shop of the benchmark or of `make chaos` needs before it starts:
/// its databases migrated, the issuers' keys and what each service trusts,
/// the first admin's password, and a CA with a certificate per service
/// (and `bench`, the load generator's) for mutual TLS.
pub(crate) struct Setup {
    pub(crate) productinfo_db: String,
    pub(crate) order_db: String,
    pub(crate) storefront_db: String,
    pub(crate) storefront_key: PathBuf,
    pub(crate) order_key: PathBuf,
    /// TRUSTED_ISSUERS of order and the storefront: people's tokens.
    pub(crate) people: String,
    /// TRUSTED_ISSUERS of productinfo.
    pub(crate) catalog_trusts: String,
    pub(crate) admin_password: PathBuf,
    pub(crate) tls_dir: PathBuf,
}

impl Setup {
    /// Databases on `cluster` migrated by `bins` (productinfo, order,
    /// storefront), keys, password and certificates in `out`.
    pub(crate) async fn prepare(
        cluster: &Cluster,
        bins: [&PathBuf; 3],
        out: &Path,
    ) -> anyhow::Result<Setup> {
        let mut urls = Vec::new();
        for (name, bin) in ["productinfo", "order", "storefront"].into_iter().zip(bins) {
            let url = cluster.ensure_database(name).await?;
            let status = Command::new(bin)
                .arg("migrate")
                .env("DATABASE_URL", &url)
                .env("LOG_FORMAT", "text")
                .stdout(Stdio::null())
                .status()
                .await?;
            if !status.success() {
                bail!("{} migrate failed ({status})", bin.display());
            }
            urls.push(url);
        }
        let keys = out.join("keys");
        let (storefront_key, storefront_pub) = ensure_keypair(&keys, "storefront")?;
        let (order_key, order_pub) = ensure_keypair(&keys, "order")?;
        let admin_password = out.join("admin.password");
        std::fs::write(&admin_password, "bench-admin-password")?;
        // Mutual TLS between every process, as the chart runs the shop.
        let tls_dir = out.join("tls");
        certs::local(&tls_dir, &["productinfo", "order", "storefront", "bench"])?;
        let [productinfo_db, order_db, storefront_db]: [String; 3] = urls
            .try_into()
            .map_err(|_| anyhow::anyhow!("three databases"))?;
        Ok(Setup {
            productinfo_db,
            order_db,
            storefront_db,
            people: format!("storefront:customer+admin={}", storefront_pub.display()),
            catalog_trusts: format!(
                "storefront:customer+admin+service={},order:service={}",
                storefront_pub.display(),
                order_pub.display()
            ),
            storefront_key,
            order_key,
            admin_password,
            tls_dir,
        })
    }
}

/// What starting the benchmark's shop takes.
struct Shop<'a> {
    bins: [&'a PathBuf; 3],
    dbs: [&'a String; 3],
    /// The storefront's and the order service's signing keys.
    keys: [&'a PathBuf; 2],
    catalog_trusts: &'a str,
    people: &'a str,
    admin_password: &'a Path,
    logs: &'a Path,
}

impl Shop<'_> {
    /// Starts two productinfo replicas, order and the storefront into
    /// `services` (logs named with `prefix`): with mutual TLS from the
    /// certificates in `tls`, or plaintext.
    async fn start(
        &self,
        services: &mut Vec<Service>,
        tls: Option<&Path>,
        prefix: &str,
    ) -> anyhow::Result<()> {
        let [productinfo_bin, order_bin, storefront_bin] = self.bins;
        let [productinfo_db, order_db, storefront_db] = self.dbs;
        let [storefront_key, order_key] = self.keys;
        let with_tls = |name: &str, mut env: Vec<(&'static str, String)>| {
            if let Some(dir) = tls {
                env.extend(certs::service_env(dir, name, name == "storefront"));
            }
            env
        };
        let client = tls.map(|dir| certs::client(dir, "bench")).transpose()?;
        let start = |name: String, bin: &'static str, env| {
            let client = client.clone();
            let (path, logs) = (
                match bin {
                    "productinfo" => productinfo_bin,
                    "order" => order_bin,
                    _ => storefront_bin,
                },
                self.logs,
            );
            async move { start(&name, bin, path, logs, client, env).await }
        };
        for replica in 1..=2 {
            let env = with_tls(
                "productinfo",
                vec![
                    ("DATABASE_URL", productinfo_db.clone()),
                    ("TRUSTED_ISSUERS", self.catalog_trusts.to_owned()),
                ],
            );
            services
                .push(start(format!("{prefix}productinfo-{replica}"), "productinfo", env).await?);
        }
        let catalog = format!("{},{}", services[0].addr, services[1].addr);
        let env = with_tls(
            "order",
            vec![
                ("DATABASE_URL", order_db.clone()),
                ("TRUSTED_ISSUERS", self.people.to_owned()),
                ("PRODUCTINFO_TARGET", catalog.clone()),
                ("SIGNING_KEY_FILE", path_str(order_key)),
            ],
        );
        services.push(start(format!("{prefix}order"), "order", env).await?);
        let order_addr = services[2].addr.to_string();
        let env = with_tls(
            "storefront",
            vec![
                ("DATABASE_URL", storefront_db.clone()),
                ("TRUSTED_ISSUERS", self.people.to_owned()),
                ("PRODUCTINFO_TARGET", catalog),
                ("ORDER_TARGET", order_addr),
                ("SIGNING_KEY_FILE", path_str(storefront_key)),
                ("ADMIN_EMAIL", "admin@bench.local".into()),
                ("ADMIN_PASSWORD_FILE", path_str(self.admin_password)),
            ],
        );
        services.push(start(format!("{prefix}storefront"), "storefront", env).await?);
        Ok(())
    }
}

/// How `shopctl load` reaches `services`: TLS with the bench's own client
/// certificate from `tls`, or plaintext.
pub(crate) fn connect_args(
    services: &[Service],
    signing_key: &Path,
    tls: Option<&Path>,
) -> anyhow::Result<ConnectArgs> {
    // Every replica of each kind, in the order they were started.
    let target = |kind: &str| {
        services
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
            .parse()
            .map_err(anyhow::Error::msg)
    };
    let tls_dir = tls.unwrap_or(Path::new("/nonexistent"));
    Ok(ConnectArgs {
        productinfo: target("productinfo")?,
        order: target("order")?,
        storefront: target("storefront")?,
        token: None,
        role: Role::Admin,
        subject: "bench".into(),
        key: signing_key.to_owned(),
        issuer: "storefront".into(),
        timeout: Duration::from_secs(10),
        tls_ca: tls_dir.join("ca.pem"),
        tls_cert: tls_dir.join("bench.pem"),
        tls_key: tls_dir.join("bench-key.pem"),
        plaintext: tls.is_none(),
    })
}

/// getProduct and addOrder (commits not waiting for the disk) at their
/// maximum throughput on the plaintext shop, CPU per call included.
async fn plaintext(
    args: &BenchArgs,
    cluster: &Cluster,
    services: &[Service],
    signing_key: &Path,
) -> anyhow::Result<(Report, Report, Vec<(u64, u64)>)> {
    // Idle: started and left alone for 3 s (the mTLS shop was measured
    // after seeding its catalog too, which this one already has).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = idle_rss(services);
    let signer = Signer::from_file("storefront", signing_key)?;
    let connect = connect_args(services, signing_key, None)?;
    let processes = processes(cluster, services);
    let plan = |mix: &str| -> anyhow::Result<Plan> {
        Ok(Plan {
            mix: mix.parse::<Mix>().map_err(anyhow::Error::msg)?,
            duration: args.duration,
            warmup: args.warmup,
            concurrency: args.concurrency,
            rate: None,
            max_in_flight: 10_000,
            progress: true,
            cpu: Some(processes.clone()),
            retry_reads: false,
        })
    };
    let run_load =
        |plan: Plan, restock: i64| load_run(&connect, &signer, args.products, plan, restock, 1);
    eprintln!("bench: plaintext getProduct, maximum throughput");
    let get = run_load(plan("get=1")?, 0).await?;
    eprint!("{}", load::render(&get));
    eprintln!("bench: plaintext addOrder, maximum throughput, synchronous_commit=off");
    cluster.set_setting("synchronous_commit", "off").await?;
    let order = run_load(plan("order=1")?, 1_000_000_000).await;
    cluster.set_setting("synchronous_commit", "on").await?;
    let order = order?;
    eprint!("{}", load::render(&order));
    Ok((get, order, idle))
}

/// One load run of `plan` over `connections` connections, with fixtures
/// made for it: the catalog's first `products` products (their stock
/// raised by `restock`) and 200 customers.
async fn load_run(
    connect: &ConnectArgs,
    signer: &Signer,
    products: u16,
    plan: Plan,
    restock: i64,
    connections: usize,
) -> anyhow::Result<Report> {
    let clients = (0..connections)
        .map(|_| connect.clients_with(Bearer::none()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fixtures =
        Fixtures::prepare(&clients[0], signer, usize::from(products), 200, restock).await?;
    load::run(clients, Arc::new(fixtures), &plan).await
}

/// The processes whose CPU is counted per call: the replicas together,
/// order, storefront, PostgreSQL (server and backends), the generator.
fn processes(cluster: &Cluster, services: &[Service]) -> cpu::Processes {
    cpu::Processes::new(
        vec![
            (
                "productinfo".into(),
                services[..2].iter().filter_map(Service::pid).collect(),
            ),
            ("order".into(), services[2].pid().into_iter().collect()),
            ("storefront".into(), services[3].pid().into_iter().collect()),
        ],
        cluster.server_pid(),
    )
}

async fn measure(
    args: &BenchArgs,
    cluster: &Cluster,
    services: &[Service],
    productinfo_db: &str,
    signing_key: &Path,
    tls_dir: &Path,
) -> anyhow::Result<BenchReport> {
    let signer = Signer::from_file("storefront", signing_key)?;
    let admin = signer.sign(
        "bench-admin",
        Role::Admin,
        &["productinfo"],
        Duration::from_secs(3600),
    )?;
    let ids = seed(services[0].channel()?, &admin, args.products).await?;
    // Idle: started, seeded, nothing calling, and settled: the storefront's
    // hashing threads give back the memory of the admin's start-up hash
    // after 2 s without a hash.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = idle_rss(services);

    eprintln!(
        "bench: pgbench, {} clients, {:?}",
        args.concurrency, args.duration
    );
    let pgbench_tps = pgbench(productinfo_db, &ids, args.concurrency, args.duration).await?;
    eprintln!("bench: pgbench {pgbench_tps:.0} tps");

    let connect = connect_args(services, signing_key, Some(tls_dir))?;
    let peaks = PeakRss::start(services.iter().map(Service::pid).collect());
    let plan = |mix: &str, rate: Option<f64>| -> anyhow::Result<Plan> {
        Ok(Plan {
            mix: mix.parse::<Mix>().map_err(anyhow::Error::msg)?,
            duration: args.duration,
            warmup: args.warmup,
            concurrency: args.concurrency,
            rate,
            max_in_flight: 10_000,
            progress: true,
            cpu: None,
            retry_reads: false,
        })
    };
    let processes = processes(cluster, services);
    let with_cpu = |plan: Plan| Plan {
        cpu: Some(processes.clone()),
        ..plan
    };
    let run_load = |plan: Plan, restock: i64, connections: usize| {
        load_run(&connect, &signer, args.products, plan, restock, connections)
    };
    let replicas = &services[..2];

    eprintln!("bench: getProduct, maximum throughput");
    let before = handled(replicas, "getProduct").await?;
    let get_max = profiled(
        args,
        "getProduct",
        run_load(with_cpu(plan("get=1", None)?), 0, 1),
    )
    .await?;
    let spread_get = shares(&before, &handled(replicas, "getProduct").await?, replicas);
    let max_rate = get_max.rpc(Op::Get).map_or(0.0, |r| r.throughput);
    eprint!("{}", load::render(&get_max));

    eprintln!("bench: getProduct at half of it, {:.0}/s", max_rate / 2.0);
    let get_half = run_load(plan("get=1", Some((max_rate / 2.0).max(1.0)))?, 0, 1).await?;
    eprint!("{}", load::render(&get_half));

    eprintln!("bench: addOrder, maximum throughput, durable commits");
    let before = handled(replicas, "reserveStock").await?;
    let order_max = run_load(with_cpu(plan("order=1", None)?), 1_000_000_000, 1).await?;
    let spread_order = shares(&before, &handled(replicas, "reserveStock").await?, replicas);
    eprint!("{}", load::render(&order_max));
    // The same with commits that do not wait for the disk: what durability
    // costs. (A crash may lose the last moments' commits; the database
    // stays consistent.)
    eprintln!("bench: addOrder, maximum throughput, synchronous_commit=off");
    cluster.set_setting("synchronous_commit", "off").await?;
    let order_fast = profiled(
        args,
        "addOrder",
        run_load(with_cpu(plan("order=1", None)?), 1_000_000_000, 1),
    )
    .await;
    cluster.set_setting("synchronous_commit", "on").await?;
    let order_fast = order_fast?;
    eprint!("{}", load::render(&order_fast));
    let peaks = peaks.stop();

    let streams = hostile_clients(args, services, &signer, &ids).await?;

    // A run of getProduct, and its p99 as the replicas measured it.
    let served = |plan: Plan, connections: usize| {
        let run_load = &run_load;
        async move {
            let before = handling(replicas, "getProduct").await?;
            let report = run_load(plan, 0, connections).await?;
            let after = handling(replicas, "getProduct").await?;
            eprint!("{}", load::render(&report));
            anyhow::Ok((report, quantile(&before, &after, 0.99) * 1e6))
        }
    };
    // From here the generator yields the cores to the services and the
    // database, as it would on machines of its own: 2,000 callers would
    // otherwise take the CPU the replicas' admitted calls need, and their
    // latency would be the generator's.
    yield_cpu().await;
    eprintln!("bench: getProduct, {LIGHT_CALLERS} callers");
    let light_plan = Plan {
        concurrency: LIGHT_CALLERS,
        ..plan("get=1", None)?
    };
    let (light, light_server_p99) = served(light_plan.clone(), 1).await?;
    eprintln!("bench: getProduct, {OVERLOAD_CALLERS} callers (overload)");
    let shed_before = metric_sum(replicas, "shop_grpc_server_shed_total").await?;
    let replica_peaks = PeakRss::start(replicas.iter().map(Service::pid).collect());
    let overload_plan = Plan {
        concurrency: OVERLOAD_CALLERS,
        ..plan("get=1", None)?
    };
    let (loaded, loaded_server_p99) = served(overload_plan, OVERLOAD_CONNECTIONS).await?;
    let overload_rss = replica_peaks.stop().into_iter().max().unwrap_or(0);
    let shed = metric_sum(replicas, "shop_grpc_server_shed_total").await? - shed_before;
    eprintln!("bench: getProduct, {LIGHT_CALLERS} callers, right after");
    let recovery_plan = Plan {
        warmup: Duration::ZERO,
        ..light_plan
    };
    let (recovery, recovery_server_p99) = served(recovery_plan, 1).await?;
    let overload = Overload {
        callers: OVERLOAD_CALLERS,
        connections: OVERLOAD_CONNECTIONS,
        server_p99_us: [light_server_p99, loaded_server_p99, recovery_server_p99],
        light,
        loaded,
        recovery,
        shed,
        rss_peak_kb: overload_rss,
    };

    let figures: Vec<ServiceFigures> = services
        .iter()
        .zip(idle.iter().zip(&peaks))
        .map(|(s, ((idle, anon), peak))| ServiceFigures {
            name: s.name.clone(),
            start_to_serving_ms: s.start_ms,
            rss_idle_kb: *idle,
            rss_idle_anon_kb: *anon,
            rss_peak_under_load_kb: *peak,
        })
        .collect();
    let ratio = if pgbench_tps > 0.0 {
        max_rate / pgbench_tps
    } else {
        0.0
    };
    let half_p99 = get_half.rpc(Op::Get).map_or(u64::MAX, |r| r.p99_us);
    let mut targets = targets(
        ratio,
        half_p99,
        &figures,
        &spread_get,
        &spread_order,
        &get_half,
    );
    targets.extend(stream_targets(&streams));
    targets.extend(overload_targets(&overload));
    targets.extend(cpu_targets(&get_max, &order_max, &order_fast, &figures));

    let mut settings = BTreeMap::new();
    settings.insert("duration".into(), format!("{:?}", args.duration));
    settings.insert("warmup".into(), format!("{:?}", args.warmup));
    settings.insert("concurrency".into(), args.concurrency.to_string());
    settings.insert("products".into(), args.products.to_string());
    settings.insert("productinfo replicas".into(), "2".into());
    settings.insert(
        "DB_MAX_CONNECTIONS".into(),
        "8 per service (default)".into(),
    );
    settings.insert("LOG_LEVEL".into(), "info (default), to files".into());
    settings.insert(
        "transport".into(),
        "mutual TLS on every hop (the default); plaintext for comparison".into(),
    );
    Ok(BenchReport {
        machine: machine().await,
        settings,
        pgbench_tps,
        get_product_ratio_to_pgbench: ratio,
        get_product_max: get_max,
        get_product_half_rate: get_half,
        add_order_max: order_max,
        add_order_fast: order_fast,
        spread_get_product: spread_get,
        spread_add_order: spread_order,
        services: figures,
        streams,
        overload,
        targets,
        plaintext: None,
        scale: None,
    })
}

/// One hostile client per service and size (see [`hostile::streams`]):
/// productinfo's getProduct, order's getOrder of a placed order, the
/// storefront's getCart of a registered shopper with one product in the cart.
async fn hostile_clients(
    args: &BenchArgs,
    services: &[Service],
    signer: &Signer,
    ids: &[String],
) -> anyhow::Result<Vec<hostile::StreamFigures>> {
    let customer = Bearer::new(&signer.sign(
        "bench-customer",
        Role::Customer,
        &["productinfo", "order"],
        Duration::from_secs(3600),
    )?)?;
    let product = ids.first().context("no products")?.clone();
    let order_id =
        OrderManagementClient::with_interceptor(services[2].channel()?, customer.clone())
            .add_order(Order {
                lines: vec![OrderLine {
                    product_id: product.clone(),
                    quantity: 1,
                    ..Default::default()
                }],
                destination: "Bench Street 1".into(),
                ..Default::default()
            })
            .await
            .context("addOrder")?
            .into_inner();
    let mut storefront = StorefrontClient::new(services[3].channel()?);
    let session = storefront
        .register(RegisterRequest {
            email: "shopper@bench.local".into(),
            password: "bench-shopper-password".into(),
            name: "Bench Shopper".into(),
        })
        .await
        .context("register")?
        .into_inner();
    let shopper = Bearer::new(&session.token)?;
    StorefrontClient::with_interceptor(services[3].channel()?, shopper.clone())
        .add_to_cart(CartItemRequest {
            product_id: product.clone(),
            quantity: 1,
        })
        .await
        .context("addToCart")?;

    let get_product: hostile::Call = {
        let customer = customer.clone();
        Arc::new(move |channel| {
            let (customer, product) = (customer.clone(), product.clone());
            Box::pin(async move {
                ProductInfoClient::with_interceptor(channel, customer)
                    .get_product(ProductId { value: product })
                    .await
                    .map(drop)
            })
        })
    };
    let get_order: hostile::Call = Arc::new(move |channel| {
        let (customer, id) = (customer.clone(), order_id.clone());
        Box::pin(async move {
            OrderManagementClient::with_interceptor(channel, customer)
                .get_order(id)
                .await
                .map(drop)
        })
    });
    let get_cart: hostile::Call = Arc::new(move |channel| {
        let shopper = shopper.clone();
        Box::pin(async move {
            StorefrontClient::with_interceptor(channel, shopper)
                .get_cart(GetCartRequest {})
                .await
                .map(drop)
        })
    });
    let targets = [
        (&services[0], "getProduct", get_product),
        (&services[2], "getOrder", get_order),
        (&services[3], "getCart", get_cart),
    ];
    let mut figures = Vec::new();
    for (service, rpc, call) in targets {
        let target = hostile::Target {
            name: &service.name,
            dial: &|| service.channel(),
            pid: service.pid(),
            rpc,
            call,
        };
        for (streams, connections, _) in TARGET_STREAMS_KB {
            eprintln!(
                "bench: {} {rpc}, {streams} calls open on {connections} connection(s)",
                service.name
            );
            let f = hostile::streams(&target, streams, connections, args.duration).await?;
            eprintln!(
                "bench: peak {:.1} MB; {} answered, {} refused, failed: {:?}",
                f.rss_peak_kb as f64 / 1024.0,
                f.ok,
                f.refused,
                f.failed
            );
            figures.push(f);
        }
    }
    Ok(figures)
}

fn stream_targets(streams: &[hostile::StreamFigures]) -> Vec<Target> {
    streams
        .iter()
        .map(|f| {
            let goal_kb = TARGET_STREAMS_KB
                .iter()
                .find(|(n, c, _)| (*n, *c) == (f.streams, f.connections))
                .map_or(0, |t| t.2);
            let failed: u64 = f.failed.values().sum();
            let met = f.rss_peak_kb > 0 && f.rss_peak_kb <= goal_kb && failed == 0;
            Target {
                name: format!(
                    "{} resident memory, {} {} calls open on {} connection(s)",
                    f.service, f.streams, f.rpc, f.connections
                ),
                goal: format!("<= {} MB, no failures but refusals", goal_kb / 1024),
                measured: format!("{:.1} MB, {failed} failed", f.rss_peak_kb as f64 / 1024.0,),
                met,
                miss: (!met).then(|| {
                    format!(
                        "+{:.1} MB, {failed} failed",
                        f.rss_peak_kb.saturating_sub(goal_kb) as f64 / 1024.0,
                    )
                }),
            }
        })
        .collect()
}

fn overload_targets(o: &Overload) -> Vec<Target> {
    // Failures other than the refusals the overload is meant to get.
    let failures = |r: &Report| {
        r.rpc(Op::Get).map_or(0, |r| {
            r.errors
                .iter()
                .filter(|(code, _)| code.as_str() != "RESOURCE_EXHAUSTED")
                .map(|(_, n)| n)
                .sum::<u64>()
        })
    };
    let [light, loaded, recovery] = o.server_p99_us;
    let bound = light * TARGET_OVERLOAD_P99;
    let ms = |us: f64| us / 1000.0;
    let mut targets = Vec::new();
    for (name, report, measured) in [
        (
            format!(
                "getProduct p99 of admitted calls in the service, {} callers",
                o.callers
            ),
            &o.loaded,
            loaded,
        ),
        (
            format!(
                "getProduct p99 in the service, {LIGHT_CALLERS} callers right after the overload"
            ),
            &o.recovery,
            recovery,
        ),
    ] {
        let failed = failures(report);
        let met = light > 0.0 && measured <= bound && failed == 0;
        targets.push(Target {
            name,
            goal: format!(
                "<= {TARGET_OVERLOAD_P99}x the light run's {:.2} ms, no failures but refusals",
                ms(light)
            ),
            measured: format!("{:.2} ms, {failed} failed", ms(measured)),
            met,
            miss: (!met).then(|| format!("{:.1}x, {failed} failed", measured / light.max(1.0))),
        });
    }
    let goal_kb = TARGET_STREAMS_KB[1].2;
    targets.push(Target {
        name: format!("productinfo resident memory, {} callers", o.callers),
        goal: format!("<= {} MB", goal_kb / 1024),
        measured: format!("{:.1} MB", o.rss_peak_kb as f64 / 1024.0),
        met: o.rss_peak_kb > 0 && o.rss_peak_kb <= goal_kb,
        miss: (o.rss_peak_kb > goal_kb)
            .then(|| format!("+{:.1} MB", (o.rss_peak_kb - goal_kb) as f64 / 1024.0)),
    });
    targets
}

/// Lowers every thread of this process to the lowest CPU priority (nice
/// 19); threads started later inherit it.
async fn yield_cpu() {
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|t| Some(t.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let lowered = Command::new("renice")
        .args(["-n", "19", "-p"])
        .args(&threads)
        .stdout(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !lowered {
        eprintln!(
            "bench: could not lower the generator's priority (renice); the overload figures include its CPU"
        );
    }
}

/// `method`'s handling-time histogram summed over `replicas`: each bucket's
/// upper bound (seconds) and the calls at most that long, by bound.
async fn handling(replicas: &[Service], method: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let needle = format!("grpc_method=\"{method}\"");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for r in replicas {
        let page = http_get(r.metrics, "/metrics").await?;
        for line in page.lines().filter(|l| {
            l.starts_with("grpc_server_handling_seconds_bucket{") && l.contains(&needle)
        }) {
            let le = line
                .split("le=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(|le| {
                    if le == "+Inf" {
                        Ok(f64::INFINITY)
                    } else {
                        le.parse()
                    }
                });
            let count = line.rsplit(' ').next().map(str::parse::<f64>);
            if let (Some(Ok(le)), Some(Ok(count))) = (le, count) {
                match buckets.iter_mut().find(|(bound, _)| *bound == le) {
                    Some((_, total)) => *total += count,
                    None => buckets.push((le, count)),
                }
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(buckets)
}

/// The `q` quantile (seconds) of the calls counted between two readings of a
/// histogram, interpolated linearly within its bucket as Prometheus's
/// `histogram_quantile` does; 0 without calls.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let earlier = before.iter().find(|(b, _)| b == le).map_or(0.0, |b| b.1);
            (*le, n - earlier)
        })
        .collect();
    let total = counts.last().map_or(0.0, |c| c.1);
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in &counts {
        if n >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let within = (rank - lower.1) / (n - lower.1).max(f64::MIN_POSITIVE);
            return lower.0 + (le - lower.0) * within;
        }
        lower = (le, n);
    }
    lower.0
}

/// The sum over `replicas` of a counter without labels, from their `/metrics`.
async fn metric_sum(replicas: &[Service], name: &str) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for r in replicas {
        let page = http_get(r.metrics, "/metrics").await?;
        sum += page
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    Ok(sum)
}

fn targets(
    ratio: f64,
    half_p99_us: u64,
    services: &[ServiceFigures],
    spread_get: &[(String, f64)],
    spread_order: &[(String, f64)],
    half: &Report,
) -> Vec<Target> {
    let mut targets = Vec::new();
    targets.push(Target {
        name: "getProduct throughput / pgbench ceiling".into(),
        goal: format!(">= {TARGET_RATIO}"),
        measured: format!("{ratio:.3}"),
        met: ratio >= TARGET_RATIO,
        miss: (ratio < TARGET_RATIO)
            .then(|| format!("{:.2}x below", TARGET_RATIO / ratio.max(1e-9))),
    });
    let half_errors = half.errors;
    targets.push(Target {
        name: "getProduct p99 at half the maximum rate".into(),
        goal: format!("<= {:.1} ms, no errors", TARGET_P99_US as f64 / 1000.0),
        measured: format!(
            "{:.2} ms, {half_errors} errors",
            half_p99_us as f64 / 1000.0
        ),
        met: half_p99_us <= TARGET_P99_US && half_errors == 0,
        miss: (half_p99_us > TARGET_P99_US)
            .then(|| format!("+{:.2} ms", (half_p99_us - TARGET_P99_US) as f64 / 1000.0)),
    });
    for s in services {
        targets.push(Target {
            name: format!("{} resident memory, idle", s.name),
            goal: format!("<= {} MB", TARGET_RSS_KB / 1024),
            measured: format!("{:.1} MB", s.rss_idle_kb as f64 / 1024.0),
            met: s.rss_idle_kb > 0 && s.rss_idle_kb <= TARGET_RSS_KB,
            miss: (s.rss_idle_kb > TARGET_RSS_KB)
                .then(|| format!("+{:.1} MB", (s.rss_idle_kb - TARGET_RSS_KB) as f64 / 1024.0)),
        });
        targets.push(Target {
            name: format!("{} start to SERVING", s.name),
            goal: format!("<= {TARGET_START_MS:.0} ms"),
            measured: format!("{:.1} ms", s.start_to_serving_ms),
            met: s.start_to_serving_ms <= TARGET_START_MS,
            miss: (s.start_to_serving_ms > TARGET_START_MS)
                .then(|| format!("+{:.1} ms", s.start_to_serving_ms - TARGET_START_MS)),
        });
    }
    for (what, spread) in [
        ("getProduct (shopctl -> productinfo)", spread_get),
        ("reserveStock (order -> productinfo)", spread_order),
    ] {
        let worst = spread
            .iter()
            .map(|(_, share)| (share - 0.5).abs())
            .fold(0.0, f64::max);
        let measured = spread
            .iter()
            .map(|(name, share)| format!("{name} {:.1}%", share * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        let met = spread.len() == 2 && worst <= TARGET_SPREAD;
        targets.push(Target {
            name: format!("round-robin spread, {what}"),
            goal: format!("50% ± {:.0}%", TARGET_SPREAD * 100.0),
            measured,
            met,
            miss: (!met).then(|| format!("{:.1} points off 50%", worst * 100.0)),
        });
    }
    targets
}

/// Runs `run`; with `--profile`, under `perf record` of every process on
/// the machine (flat: release builds have no frame pointers), then writes
/// the hottest functions by process to `<out>/profile-<name>.txt`.
async fn profiled<T>(
    args: &BenchArgs,
    name: &str,
    run: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    if !args.profile {
        return run.await;
    }
    let data = args.out.join(format!("profile-{name}.perf.data"));
    let mut perf = Command::new("perf")
        .args(["record", "-a", "-F", "499", "-q", "-o"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("perf record (Debian: apt-get install linux-perf)")?;
    let result = run.await;
    if let Some(pid) = perf.id() {
        // perf writes its data when interrupted.
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await;
    }
    perf.wait().await?;
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "comm,dso,symbol",
        ])
        .args(["--percent-limit", "0.3", "-i"])
        .arg(&data)
        .output()
        .await?;
    std::fs::write(args.out.join(format!("profile-{name}.txt")), &report.stdout)?;
    eprintln!(
        "bench: profile of {name} in {}",
        args.out.join(format!("profile-{name}.txt")).display()
    );
    result
}

/// The per-call cost targets: addOrder's rate and CPU, getProduct's CPU in
/// productinfo, and the services' peak memory under the throughput runs.
/// Searches at the largest size, and how every timed call grew from the
/// smallest size to the largest (p50s: a p99 of 100 calls is one call).
fn scale_targets(scaled: &scale::Scale) -> Vec<Target> {
    let (Some(first), Some(last)) = (scaled.steps.first(), scaled.steps.last()) else {
        return Vec::new();
    };
    let mut targets = Vec::new();
    for (what, timing) in [
        ("catalog search that finds products", &last.search_hit),
        ("catalog search that finds nothing", &last.search_miss),
        ("searchOrders of everyone's orders", &last.search_orders),
    ] {
        let ms = timing.p99_us as f64 / 1000.0;
        targets.push(Target {
            name: format!(
                "{what}, p99 at {} products and {} orders",
                last.products, last.orders
            ),
            goal: format!("<= {TARGET_SEARCH_P99_MS:.0} ms"),
            measured: format!("{ms:.1} ms"),
            met: ms <= TARGET_SEARCH_P99_MS,
            miss: (ms > TARGET_SEARCH_P99_MS)
                .then(|| format!("{:.1}x over", ms / TARGET_SEARCH_P99_MS)),
        });
    }
    let growth = |f: fn(&scale::Step) -> &scale::Timing| {
        f(last).p50_us as f64 / f(first).p50_us.max(1) as f64
    };
    let grown = [
        ("search hit", growth(|s| &s.search_hit)),
        ("search miss", growth(|s| &s.search_miss)),
        ("category page", growth(|s| &s.category_page)),
        ("getProduct", growth(|s| &s.get_product)),
        ("searchOrders", growth(|s| &s.search_orders)),
    ];
    let worst = grown
        .iter()
        .copied()
        .fold(("", 0.0_f64), |w, g| if g.1 > w.1 { g } else { w });
    targets.push(Target {
        name: format!(
            "growth of every timed call's p50 from {} to {} rows",
            first.products, last.products
        ),
        goal: format!("<= {TARGET_SCALE_GROWTH:.0}x"),
        measured: grown
            .iter()
            .map(|(what, g)| format!("{what} {g:.1}x"))
            .collect::<Vec<_>>()
            .join(", "),
        met: worst.1 <= TARGET_SCALE_GROWTH,
        miss: (worst.1 > TARGET_SCALE_GROWTH).then(|| format!("{} {:.1}x", worst.0, worst.1)),
    });
    targets
}

fn cpu_targets(
    get_max: &Report,
    order_durable: &Report,
    order_fast: &Report,
    services: &[ServiceFigures],
) -> Vec<Target> {
    let rate = |r: &Report| r.rpc(Op::Order).map_or(0.0, |o| o.throughput);
    let cpu = |r: &Report, group: &str| {
        r.cpu_us_per_call
            .as_ref()
            .and_then(|c| c.get(group).copied())
            .unwrap_or(f64::INFINITY)
    };
    let mut targets = Vec::new();
    let fast = rate(order_fast);
    targets.push(Target {
        name: "addOrder, 16 callers, synchronous_commit=off".into(),
        goal: format!(">= {TARGET_ORDERS:.0}/s"),
        measured: format!(
            "{fast:.0}/s ({:.0}/s with durable commits)",
            rate(order_durable)
        ),
        met: fast >= TARGET_ORDERS,
        miss: (fast < TARGET_ORDERS)
            .then(|| format!("{:.1}x below", TARGET_ORDERS / fast.max(1.0))),
    });
    let order_cpu = cpu(order_fast, "all");
    targets.push(Target {
        name: "CPU per addOrder, every process together".into(),
        goal: format!("<= {TARGET_ORDER_CPU_US:.0} µs"),
        measured: format!(
            "{order_cpu:.0} µs ({:.0} µs with durable commits)",
            cpu(order_durable, "all")
        ),
        met: order_cpu <= TARGET_ORDER_CPU_US,
        miss: (order_cpu > TARGET_ORDER_CPU_US)
            .then(|| format!("{:.1}x over", order_cpu / TARGET_ORDER_CPU_US)),
    });
    let get_cpu = cpu(get_max, "productinfo");
    targets.push(Target {
        name: "CPU per getProduct in productinfo".into(),
        goal: format!("<= {TARGET_GET_CPU_US:.0} µs"),
        measured: format!("{get_cpu:.0} µs"),
        met: get_cpu <= TARGET_GET_CPU_US,
        miss: (get_cpu > TARGET_GET_CPU_US)
            .then(|| format!("{:.1}x over", get_cpu / TARGET_GET_CPU_US)),
    });
    let peak = services
        .iter()
        .map(|s| s.rss_peak_under_load_kb)
        .max()
        .unwrap_or(0);
    targets.push(Target {
        name: "peak resident memory of any service under the throughput runs".into(),
        goal: format!("<= {} MB", TARGET_PEAK_RSS_KB / 1024),
        measured: format!("{:.1} MB", peak as f64 / 1024.0),
        met: peak > 0 && peak <= TARGET_PEAK_RSS_KB,
        miss: (peak > TARGET_PEAK_RSS_KB)
            .then(|| format!("+{:.1} MB", (peak - TARGET_PEAK_RSS_KB) as f64 / 1024.0)),
    });
    targets
}

/// Starts `bin serve` and waits until `service` is SERVING; the time from
/// spawning to SERVING is the start-up time. Logs go to `<logs>/<name>.log`.
pub(crate) async fn start(
    name: &str,
    kind: &'static str,
    bin: &Path,
    logs: &Path,
    tls: Option<Tls>,
    env: Vec<(&'static str, String)>,
) -> anyhow::Result<Service> {
    let service = match kind {
        "productinfo" => "ecommerce.ProductInfo",
        "order" => "ecommerce.OrderManagement",
        _ => "ecommerce.Storefront",
    };
    // Appended to: a service started again (`make chaos`) keeps its story.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{name}.log")))?;
    let addr_file = logs.join(format!("{name}.addr"));
    let _ = std::fs::remove_file(&addr_file);
    let began = Instant::now();
    let mut child = Command::new(bin)
        .arg("serve")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("HTTP_LISTEN_ADDR", "127.0.0.1:0")
        .env("ADDR_FILE", &addr_file)
        .env("LOG_FORMAT", "json")
        .env("SHUTDOWN_GRACE", "5s")
        // The caller's environment last: it may name fixed addresses.
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut addrs = None;
    loop {
        if addrs.is_none() {
            addrs = Addrs::read(&addr_file);
        }
        if let Some(addrs) = addrs {
            let channel = shop_runtime::tls::connect::channel(
                &addrs.grpc.to_string(),
                tls.as_ref().map(|tls| (tls, kind)),
                Duration::from_millis(100),
            )
            .map_err(anyhow::Error::msg)?;
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .map(|r| r.into_inner().status)
                .ok();
            if status == Some(ServingStatus::Serving as i32) {
                break;
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name} exited during start-up ({status}); see {}",
                logs.join(format!("{name}.log")).display()
            );
        }
        if began.elapsed() > Duration::from_secs(30) {
            bail!("{name} was not SERVING within 30 s");
        }
        // Polling at 1 ms bounds the measurement error to about 1 ms.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start_ms = began.elapsed().as_secs_f64() * 1000.0;
    eprintln!("bench: {name} SERVING after {start_ms:.1} ms");
    let addrs = addrs.context("no address file")?;
    Ok(Service {
        name: name.to_owned(),
        kind,
        child,
        addr: addrs.grpc,
        metrics: addrs.metrics.context("no metrics address")?,
        start_ms,
        tls,
    })
}

pub(crate) async fn stop_all(services: &mut Vec<Service>) {
    for service in services.iter() {
        if let Some(pid) = service.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    for mut service in services.drain(..) {
        if tokio::time::timeout(Duration::from_secs(10), service.child.wait())
            .await
            .is_err()
        {
            let _ = service.child.kill().await;
        }
    }
}

/// Adds `count` products with ample stock; returns their ids.
pub(crate) async fn seed(channel: Channel, admin: &str, count: u16) -> anyhow::Result<Vec<String>> {
    let mut client = ProductInfoClient::with_interceptor(channel, Bearer::new(admin)?);
    let mut ids = Vec::new();
    for n in 0..count {
        let id = client
            .add_product(Product {
                name: format!("Bench product {n:03}"),
                description: format!(
                    "Product {n} of the benchmark's catalog, a typical description."
                ),
                unit_price: Some(Money::from_minor("EUR", 100 + i64::from(n) * 7)),
                stock: Some(1_000_000_000),
                category: ["tea", "coffee", "kitchen", "books"][usize::from(n) % 4].into(),
                image_url: format!("/static/products/bench-{n}.svg"),
                ..Default::default()
            })
            .await
            .context("addProduct")?
            .into_inner()
            .value;
        ids.push(id);
    }
    Ok(ids)
}

/// pgbench running getProduct's SELECT: one script per product id, each
/// picked equally often, prepared statements, `clients` connections.
async fn pgbench(
    url: &str,
    ids: &[String],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let bin = shop_devdb::find_binaries()?.join("pgbench");
    if !bin.is_file() {
        bail!(
            "{} not found: it comes with Debian's postgresql-15 package",
            bin.display()
        );
    }
    let scripts = tempdir()?;
    let mut command = Command::new(&bin);
    command.args([
        "--no-vacuum",
        "--protocol=prepared",
        &format!("--client={clients}"),
        "--jobs=2",
        &format!("--time={}", duration.as_secs().max(1)),
    ]);
    for (n, id) in ids.iter().enumerate() {
        let path = scripts.join(format!("get-{n}.sql"));
        std::fs::write(
            &path,
            format!(
                "{} -- {id}\n",
                productinfo::GET_PRODUCT_SQL.replace("$1", &format!("'{id}'"))
            ),
        )?;
        command.arg(format!("--file={}", path.display()));
    }
    command.arg(url);
    let output = command.output().await.context("running pgbench")?;
    let _ = std::fs::remove_dir_all(&scripts);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}):\n{}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // "tps = 12345.678901 (without initial connection time)"
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .with_context(|| format!("no tps in pgbench's output:\n{stdout}"))
}

/// Calls of `method` each replica has handled, from its `/metrics`.
async fn handled(replicas: &[Service], method: &str) -> anyhow::Result<Vec<f64>> {
    let mut counts = Vec::new();
    for r in replicas {
        let page = http_get(r.metrics, "/metrics").await?;
        let needle = format!("grpc_method=\"{method}\"");
        counts.push(
            page.lines()
                .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains(&needle))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        );
    }
    Ok(counts)
}

fn shares(before: &[f64], after: &[f64], replicas: &[Service]) -> Vec<(String, f64)> {
    let deltas: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let total: f64 = deltas.iter().sum();
    replicas
        .iter()
        .zip(deltas)
        .map(|(r, d)| (r.name.clone(), if total > 0.0 { d / total } else { 0.0 }))
        .collect()
}

pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("bad HTTP response from {addr}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "GET http://{addr}{path}: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_owned())
}

/// Resident memory of a process, in KiB.
fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// A `kB` line of `/proc/<pid>/status`.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Each service's resident memory and, of it, anonymous memory, once
/// started (and the catalog seeded) and left alone for 3 s: the
/// storefront's hashing threads give back the memory of the admin's
/// start-up hash after 2 s without a hash.
fn idle_rss(services: &[Service]) -> Vec<(u64, u64)> {
    services
        .iter()
        .map(|s| {
            s.pid().map_or((0, 0), |pid| {
                (
                    rss_kb(pid).unwrap_or(0),
                    status_kb(pid, "RssAnon:").unwrap_or(0),
                )
            })
        })
        .collect()
}

async fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let memory_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_owned())
        .unwrap_or_default();
    let output = |program: &str, args: &[&str]| {
        let program = program.to_owned();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        async move {
            Command::new(program)
                .args(args)
                .output()
                .await
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        }
    };
    let postgres = match shop_devdb::find_binaries() {
        Ok(dir) => output(&dir.join("postgres").to_string_lossy(), &["--version"]).await,
        Err(_) => String::new(),
    };
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gb: memory_kb / 1024.0 / 1024.0,
        os,
        postgres,
        date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).await,
        revision: output("git", &["rev-parse", "--short", "HEAD"]).await,
    }
}

/// The report as markdown (what the README quotes).
fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "## Benchmark ({}, revision {})\n", m.date, m.revision);
    let _ = writeln!(
        s,
        "Machine: {}, {} cores, {:.0} GB, {}; {}. Generator, services and database share the machine.\n",
        m.cpu, m.cores, m.memory_gb, m.os, m.postgres
    );
    let _ = writeln!(s, "| Measurement | Result |\n|---|---|");
    let _ = writeln!(
        s,
        "| pgbench, getProduct's SELECT, prepared, {} clients | {:.0} tps |",
        r.settings.get("concurrency").map_or("?", String::as_str),
        r.pgbench_tps
    );
    for (what, report, op) in [
        ("getProduct, max throughput", &r.get_product_max, Op::Get),
        (
            "getProduct, half that rate",
            &r.get_product_half_rate,
            Op::Get,
        ),
        (
            "addOrder, max throughput, durable commits",
            &r.add_order_max,
            Op::Order,
        ),
        (
            "addOrder, max throughput, synchronous_commit=off",
            &r.add_order_fast,
            Op::Order,
        ),
    ] {
        if let Some(o) = report.rpc(op) {
            let _ = writeln!(
                s,
                "| {what} ({}) | {:.0} calls/s; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors |",
                report.mode,
                o.throughput,
                o.p50_us as f64 / 1000.0,
                o.p90_us as f64 / 1000.0,
                o.p99_us as f64 / 1000.0,
                o.max_us as f64 / 1000.0,
                o.calls - o.ok
            );
        }
    }
    let _ = writeln!(
        s,
        "| getProduct / pgbench | {:.3} |",
        r.get_product_ratio_to_pgbench
    );
    let _ = writeln!(
        s,
        "\n| CPU per call (µs) | productinfo (both) | order | storefront | PostgreSQL | generator | all |\n|---|---|---|---|---|---|---|"
    );
    for (what, report) in [
        ("getProduct, max throughput", &r.get_product_max),
        ("addOrder, durable commits", &r.add_order_max),
        ("addOrder, synchronous_commit=off", &r.add_order_fast),
    ] {
        if let Some(cpu) = &report.cpu_us_per_call {
            let us = |group: &str| cpu.get(group).map_or("-".into(), |v| format!("{v:.0}"));
            let _ = writeln!(
                s,
                "| {what} | {} | {} | {} | {} | {} | {} |",
                us("productinfo"),
                us("order"),
                us("storefront"),
                us("postgres"),
                us("generator"),
                us("all")
            );
        }
    }
    if let Some(plain) = &r.plaintext {
        let _ = writeln!(
            s,
            "\n| What mutual TLS costs (max throughput) | mTLS | plaintext | CPU per call, mTLS | CPU per call, plaintext |\n|---|---|---|---|---|"
        );
        for (what, tls, plain, op, group) in [
            (
                "getProduct (CPU: productinfo)",
                &r.get_product_max,
                &plain.get_product,
                Op::Get,
                "productinfo",
            ),
            (
                "addOrder, synchronous_commit=off (CPU: all)",
                &r.add_order_fast,
                &plain.add_order,
                Op::Order,
                "all",
            ),
        ] {
            let rate = |r: &Report| r.rpc(op).map_or(0.0, |o| o.throughput);
            let cpu = |r: &Report| {
                r.cpu_us_per_call
                    .as_ref()
                    .and_then(|c| c.get(group))
                    .map_or("-".into(), |v| format!("{v:.0} µs"))
            };
            let _ = writeln!(
                s,
                "| {what} | {:.0}/s | {:.0}/s | {} | {} |",
                rate(tls),
                rate(plain),
                cpu(tls),
                cpu(plain)
            );
        }
    }
    if let Some(scaled) = &r.scale {
        let _ = writeln!(
            s,
            "\n| Scale: products / orders | fill | search, finds 5 | search, finds none | category page | getProduct | searchOrders, finds 5 |\n|---|---|---|---|---|---|---|"
        );
        let t = |t: &scale::Timing| {
            format!(
                "{:.1} / {:.1} ms",
                t.p50_us as f64 / 1000.0,
                t.p99_us as f64 / 1000.0
            )
        };
        for step in &scaled.steps {
            let _ = writeln!(
                s,
                "| {} / {} | {:.0} s | {} | {} | {} | {} | {} |",
                step.products,
                step.orders,
                step.fill_s,
                t(&step.search_hit),
                t(&step.search_miss),
                t(&step.category_page),
                t(&step.get_product),
                t(&step.search_orders)
            );
        }
        let _ = writeln!(
            s,
            "\nTimes are p50 / p99 of 100 calls one after another, as the client sees them (plaintext shop). At the largest size one replica answered {:.0} searches/s with {} callers.",
            scaled.searches_per_s, scaled.callers
        );
    }
    let _ = writeln!(
        s,
        "\n| Service | Start to SERVING | RSS idle (of it anonymous; plaintext shop) | RSS peak under load |\n|---|---|---|---|"
    );
    for (n, f) in r.services.iter().enumerate() {
        let plain = r
            .plaintext
            .as_ref()
            .and_then(|p| p.rss_idle_kb.get(n))
            .map_or(String::new(), |(rss, anon)| {
                format!(
                    "; {:.1} MB ({:.1} MB)",
                    *rss as f64 / 1024.0,
                    *anon as f64 / 1024.0
                )
            });
        let _ = writeln!(
            s,
            "| {} | {:.1} ms | {:.1} MB ({:.1} MB{plain}) | {:.1} MB |",
            f.name,
            f.start_to_serving_ms,
            f.rss_idle_kb as f64 / 1024.0,
            f.rss_idle_anon_kb as f64 / 1024.0,
            f.rss_peak_under_load_kb as f64 / 1024.0
        );
    }
    let _ = writeln!(
        s,
        "\n| Hostile client | Calls open | RSS peak | Answered | Refused | Failed |\n|---|---|---|---|---|---|"
    );
    for f in &r.streams {
        let _ = writeln!(
            s,
            "| {} {} | {} on {} connection(s) | {:.1} MB | {} | {} | {} |",
            f.service,
            f.rpc,
            f.streams,
            f.connections,
            f.rss_peak_kb as f64 / 1024.0,
            f.ok,
            f.refused,
            if f.failed.is_empty() {
                "0".to_owned()
            } else {
                f.failed
                    .iter()
                    .map(|(code, n)| format!("{code} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    let o = &r.overload;
    let _ = writeln!(
        s,
        "\n| Overload (getProduct, 2 replicas) | Answered/s | p50 | p99 | max | p99 in the service | Refused | Failed |\n|---|---|---|---|---|---|---|---|"
    );
    for ((what, report), server_p99) in [
        (format!("{LIGHT_CALLERS} callers"), &o.light),
        (
            format!("{} callers on {} connections", o.callers, o.connections),
            &o.loaded,
        ),
        (format!("{LIGHT_CALLERS} callers, right after"), &o.recovery),
    ]
    .into_iter()
    .zip(o.server_p99_us)
    {
        if let Some(g) = report.rpc(Op::Get) {
            let refused = g.errors.get("RESOURCE_EXHAUSTED").copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "| {what} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {refused} | {} |",
                g.throughput,
                g.p50_us as f64 / 1000.0,
                g.p99_us as f64 / 1000.0,
                g.max_us as f64 / 1000.0,
                server_p99 / 1000.0,
                g.calls - g.ok - refused
            );
        }
    }
    let _ = writeln!(
        s,
        "\nThe p50, p99 and max columns are the generator's (at the lowest CPU priority, sharing the machine's cores with the services and the database); the p99 in the service is the replicas' own (`grpc_server_handling_seconds`, interpolated within its bucket). Under overload the replicas shed {:.0} calls (`shop_grpc_server_shed_total`); their peak resident memory was {:.1} MB.",
        o.shed,
        o.rss_peak_kb as f64 / 1024.0
    );
    let _ = writeln!(s, "\n| Target | Goal | Measured | |\n|---|---|---|---|");
    for t in &r.targets {
        let verdict = match (&t.met, &t.miss) {
            (true, _) => "met".to_owned(),
            (false, Some(miss)) => format!("missed: {miss}"),
            (false, None) => "missed".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {verdict} |",
            t.name, t.goal, t.measured
        );
    }
    let _ = writeln!(
        s,
        "\nSettings: {}.",
        r.settings
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
}

pub(crate) fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let dir = std::env::temp_dir().join(format!(
        "shop-bench-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_come_from_the_calls_between_readings_interpolated_in_their_bucket() {
        let before = [(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)];
        // 100 more calls: 50 up to 1 ms, 40 in (1, 2] ms, 10 past 2 ms.
        let after = [(0.001, 60.0), (0.002, 100.0), (f64::INFINITY, 110.0)];
        assert!((quantile(&before, &after, 0.5) - 0.001).abs() < 1e-12);
        // The 70th call is the 20th of the 40 in (1, 2] ms: halfway.
        assert!((quantile(&before, &after, 0.7) - 0.0015).abs() < 1e-12);
        // Past the last finite bound: that bound, as Prometheus says.
        assert!((quantile(&before, &after, 0.99) - 0.002).abs() < 1e-12);
        assert_eq!(quantile(&after, &after, 0.99), 0.0);
    }
}
