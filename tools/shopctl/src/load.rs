//! `shopctl load`: a gRPC load generator for the shop.
//!
//! It mixes the RPCs a busy shop sees — catalog reads (`getProduct`,
//! `listProducts`), checkouts (`addOrder`), `searchOrders` server streams and
//! `processOrders` bidirectional streams — as many customers at once, either
//! closed-loop (`--concurrency N` callers, each starting its next call when
//! the last one ends: maximum throughput) or open-loop (`--rate R` calls per
//! second on a fixed schedule, latency counted from the *scheduled* start so
//! a stalled server cannot hide its queueing: no coordinated omission).
//!
//! ```text
//! shopctl load --duration 30s --concurrency 32
//! shopctl load --rate 500 --mix get=100 --json
//! ```
//!
//! The report gives, per RPC, calls, throughput and latency p50/p90/p99/max
//! from an HDR histogram (microsecond resolution, 3 significant figures),
//! and errors by status code; `--json` prints it for machines. The calls a
//! warm-up period makes are not counted.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt::Write as _,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use serde::Serialize;
use shop_proto::ecommerce::{AdjustStockRequest, ListProductsRequest, Order, OrderLine, ProductId};
use shop_runtime::{
    auth::{Role, Signer},
    config::parse_duration,
    telemetry::code_name,
};
use tokio::time::Instant;
use tonic::{Request, metadata::AsciiMetadataValue};

use crate::connect::{Bearer, Clients, ConnectArgs};

/// Options of `shopctl load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// How long to measure (after the warm-up).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Calls made before measuring starts, to open connections and fill caches.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Callers running at once, each starting its next call when the last ends.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,

    /// Open loop: start this many calls per second on a fixed schedule
    /// instead (--concurrency is then ignored).
    #[arg(long)]
    pub rate: Option<f64>,

    /// Open loop: calls in flight at most; a scheduled call beyond it is
    /// counted as DROPPED (the generator, not the shop, ran out).
    #[arg(long, default_value_t = 2000)]
    pub max_in_flight: usize,

    /// Connections to each replica; each call takes one at random. A server
    /// takes at most MAX_CONCURRENT_STREAMS calls per connection at once, so
    /// many callers need many connections or they queue in the generator.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,

    /// Weights of the RPCs: get, list, order, search, process.
    #[arg(long, default_value = "get=60,list=15,order=15,search=5,process=5")]
    pub mix: Mix,

    /// Products to use (the first ones the catalog lists).
    #[arg(long, default_value_t = 100)]
    pub products: usize,

    /// Distinct customers placing orders (each its own token).
    #[arg(long, default_value_t = 50)]
    pub customers: usize,

    /// Before starting, raise the stock of the products used to at least this
    /// many units (as admin) so checkouts do not run out; 0 leaves stock alone.
    #[arg(long, default_value_t = 100_000)]
    pub restock: i64,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// The RPCs the generator calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `ProductInfo/getProduct` of a random product.
    Get,
    /// `ProductInfo/listProducts`, one page of 20.
    List,
    /// `OrderManagement/addOrder` of one random product.
    Order,
    /// `OrderManagement/searchOrders`, the customer's orders, read to the end.
    Search,
    /// `OrderManagement/processOrders` of up to four orders this run placed.
    Process,
}

impl Op {
    const ALL: [Op; 5] = [Op::Get, Op::List, Op::Order, Op::Search, Op::Process];

    fn key(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::List => "list",
            Op::Order => "order",
            Op::Search => "search",
            Op::Process => "process",
        }
    }

    /// The RPC's name in reports.
    pub fn rpc(self) -> &'static str {
        match self {
            Op::Get => "getProduct",
            Op::List => "listProducts",
            Op::Order => "addOrder",
            Op::Search => "searchOrders",
            Op::Process => "processOrders",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Weighted RPCs, e.g. `get=60,order=40`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(pub Vec<(Op, u32)>);

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mix = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.key() == name.trim())
                .ok_or_else(|| {
                    format!("unknown RPC {name:?} (expected get, list, order, search or process)")
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            if weight > 0 {
                mix.push((op, weight));
            }
        }
        if mix.is_empty() {
            return Err("the mix needs at least one RPC with a weight above 0".into());
        }
        Ok(Mix(mix))
    }
}

impl Mix {
    fn has(&self, op: Op) -> bool {
        self.0.iter().any(|(o, _)| *o == op)
    }

    fn pick(&self, rng: &mut Rng) -> Op {
        let total: u32 = self.0.iter().map(|(_, w)| w).sum();
        let mut roll = rng.below(u64::from(total)) as u32;
        for (op, weight) in &self.0 {
            if roll < *weight {
                return *op;
            }
            roll -= weight;
        }
        self.0[0].0
    }
}

/// What to run: the parts of [`LoadArgs`] the benchmark sets itself.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mix: Mix,
    pub duration: Duration,
    pub warmup: Duration,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub max_in_flight: usize,
    pub progress: bool,
    /// Processes whose CPU time per call the report gives, measured over
    /// the window after the warm-up.
    pub cpu: Option<crate::cpu::Processes>,
    /// Reads (getProduct, listProducts, searchOrders) refused
    /// `UNAVAILABLE` or `RESOURCE_EXHAUSTED` are tried again, twice at most,
    /// after the server's pushback (or 50 ms), as a gRPC client with a retry
    /// policy does (`make chaos`). Off: every refusal counts.
    pub retry_reads: bool,
}

impl Plan {
    /// Callers at once, or the most calls in flight of an open loop.
    fn callers(&self) -> usize {
        match self.rate {
            None => self.concurrency,
            Some(_) => self.max_in_flight,
        }
    }
}

impl From<&LoadArgs> for Plan {
    fn from(args: &LoadArgs) -> Self {
        Plan {
            mix: args.mix.clone(),
            duration: args.duration,
            warmup: args.warmup,
            concurrency: args.concurrency.max(1),
            rate: args.rate,
            max_in_flight: args.max_in_flight.max(1),
            progress: !args.no_progress,
            cpu: None,
            retry_reads: false,
        }
    }
}

/// The products, customers and orders the calls use.
pub struct Fixtures {
    products: Vec<String>,
    customers: Vec<AsciiMetadataValue>,
    admin: AsciiMetadataValue,
    /// Orders this run placed, waiting to be shipped by `processOrders`.
    placed: Mutex<VecDeque<String>>,
    /// Every order this run was told was placed, when asked to keep them
    /// ([`Fixtures::keep_confirmed`]; `make chaos` checks each exists).
    confirmed: Option<Mutex<Vec<String>>>,
}

/// Orders kept for `processOrders`; older ones are forgotten.
const PLACED_CAP: usize = 10_000;

impl Fixtures {
    /// Tokens minted with `signer`, and up to `products` product ids from the
    /// catalog; with `restock > 0` their stock is raised to at least that.
    /// Keeps the id of every order placed from now on.
    pub fn keep_confirmed(mut self) -> Self {
        self.confirmed = Some(Mutex::new(Vec::new()));
        self
    }

    /// The ids of the orders placed since [`keep_confirmed`](Self::keep_confirmed).
    pub fn confirmed(&self) -> Vec<String> {
        self.confirmed.as_ref().map_or_else(Vec::new, |c| {
            c.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }

    /// The products the run orders (their stock is what `make chaos` checks).
    pub fn products(&self) -> &[String] {
        &self.products
    }

    pub async fn prepare(
        clients: &Clients,
        signer: &Signer,
        products: usize,
        customers: usize,
        restock: i64,
    ) -> anyhow::Result<Fixtures> {
        let audience = ["productinfo", "order", "storefront"];
        let ttl = Duration::from_secs(6 * 3600);
        let bearer = |token: String| -> anyhow::Result<AsciiMetadataValue> {
            Ok(format!("Bearer {token}").parse()?)
        };
        let admin = bearer(signer.sign("load-admin", Role::Admin, &audience, ttl)?)?;
        let customers = (0..customers.max(1))
            .map(|i| {
                bearer(signer.sign(
                    &format!("load-customer-{i}"),
                    Role::Customer,
                    &audience,
                    ttl,
                )?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;

        let mut catalog = clients.productinfo.clone();
        let mut found = Vec::new();
        let mut page_token = String::new();
        while found.len() < products {
            let page = catalog
                .list_products(authorized(
                    clients,
                    &admin,
                    ListProductsRequest {
                        page_size: 100,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .context("listProducts")?
                .into_inner();
            found.extend(page.products);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        found.truncate(products);
        if found.is_empty() {
            bail!("the catalog is empty: `make up` seeds a demo catalog, or add products first");
        }
        if restock > 0 {
            // Untracked products never run out.
            for product in found
                .iter()
                .filter(|p| p.stock.is_some_and(|n| n < restock))
            {
                catalog
                    .adjust_stock(authorized(
                        clients,
                        &admin,
                        AdjustStockRequest {
                            product_id: product.id.clone(),
                            delta: restock - product.stock.unwrap_or_default(),
                            reason: "shopctl load: restock before a load run".into(),
                        },
                    ))
                    .await
                    .with_context(|| format!("adjustStock of {}", product.id))?;
            }
        }
        Ok(Fixtures {
            products: found.into_iter().map(|p| p.id).collect(),
            customers,
            admin,
            placed: Mutex::new(VecDeque::new()),
            confirmed: None,
        })
    }

    /// How many products the calls use.
    pub fn product_ids(&self) -> &[String] {
        &self.products
    }
}

fn authorized<T>(clients: &Clients, token: &AsciiMetadataValue, message: T) -> Request<T> {
    let mut request = clients.request(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

/// One RPC's figures.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub rpc: &'static str,
    pub calls: u64,
    pub ok: u64,
    /// Successful calls per second of the measured period.
    pub throughput: f64,
    /// Latencies of successful calls, in microseconds.
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    /// Failed calls by status code name (DROPPED: not started in open loop).
    pub errors: BTreeMap<String, u64>,
}

/// Calls productinfo's balancer gave one address.
#[derive(Debug, Clone, Serialize)]
pub struct SpreadReport {
    pub addr: String,
    pub calls: u64,
    /// Share of all productinfo calls, 0..1.
    pub share: f64,
}

/// The outcome of a load run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "closed loop, 16 callers" or "open loop, 500/s".
    pub mode: String,
    pub duration_s: f64,
    pub calls: u64,
    pub errors: u64,
    pub throughput: f64,
    pub rpcs: Vec<OpReport>,
    /// How this client's calls to productinfo spread over its replicas.
    pub productinfo_spread: Vec<SpreadReport>,
    /// Microseconds of CPU per completed call, by process group (and
    /// `all`), when the plan named processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_call: Option<BTreeMap<String, f64>>,
}

impl Report {
    /// The figures of one RPC, if it was called.
    pub fn rpc(&self, op: Op) -> Option<&OpReport> {
        self.rpcs.iter().find(|r| r.rpc == op.rpc())
    }
}

#[derive(Clone)]
struct OpStats {
    latency: Histogram<u64>,
    errors: BTreeMap<&'static str, u64>,
}

#[derive(Clone)]
struct Stats([OpStats; 5]);

impl Stats {
    fn new() -> Self {
        let one = OpStats {
            // 1 µs .. 60 s, 3 significant figures.
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid")),
            errors: BTreeMap::new(),
        };
        Stats([one.clone(), one.clone(), one.clone(), one.clone(), one])
    }

    fn record(&mut self, op: Op, outcome: Result<(), &'static str>, elapsed: Duration) {
        let stats = &mut self.0[op.index()];
        match outcome {
            Ok(()) => {
                let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                stats.latency.saturating_record(micros.max(1));
            }
            Err(code) => *stats.errors.entry(code).or_default() += 1,
        }
    }
}

/// A small xorshift generator: picks products and RPCs, nothing secret.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Rng(u64::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

struct Shared {
    /// One set of clients per connection (see [`LoadArgs::connections`]).
    clients: Vec<Clients>,
    fixtures: Arc<Fixtures>,
    mix: Mix,
    retry_reads: bool,
    /// Calls finished so far (for the progress bar).
    done: AtomicU64,
    failed: AtomicU64,
}

/// A call's op, or how it failed.
type Outcome = Result<Op, Failed>;

/// A failed call: its status code's name, and the wait its refusal asked for.
struct Failed {
    op: Op,
    code: &'static str,
    pushback: Option<Duration>,
}

/// Makes one call of `op`; the error is the status code's name.
/// [`call`], with reads tried again as [`Plan::retry_reads`] says.
async fn call_retrying(shared: &Shared, op: Op, rng: &mut Rng) -> Outcome {
    let mut outcome = call(shared, op, rng).await;
    if !shared.retry_reads || !matches!(op, Op::Get | Op::List | Op::Search) {
        return outcome;
    }
    for _ in 0..2 {
        match &outcome {
            Err(failed) if matches!(failed.code, "UNAVAILABLE" | "RESOURCE_EXHAUSTED") => {
                let pause = failed.pushback.unwrap_or(Duration::from_millis(50));
                tokio::time::sleep(pause).await;
                outcome = call(shared, op, rng).await;
            }
            _ => break,
        }
    }
    outcome
}

async fn call(shared: &Shared, op: Op, rng: &mut Rng) -> Outcome {
    let c = rng.choose(&shared.clients);
    let f = &shared.fixtures;
    let customer = rng.choose(&f.customers);
    let fail = |op: Op| {
        move |status: tonic::Status| Failed {
            op,
            code: code_name(status.code()),
            pushback: shop_runtime::pushback::of(&status),
        }
    };
    match op {
        Op::Get => {
            let id = rng.choose(&f.products).clone();
            c.productinfo
                .clone()
                .get_product(authorized(c, customer, ProductId { value: id }))
                .await
                .map_err(fail(op))?;
        }
        Op::List => {
            c.productinfo
                .clone()
                .list_products(authorized(
                    c,
                    customer,
                    ListProductsRequest {
                        page_size: 20,
                        ..Default::default()
                    },
                ))
                .await
                .map_err(fail(op))?;
        }
        Op::Order => {
            let product_id = rng.choose(&f.products).clone();
            let order = Order {
                lines: vec![OrderLine {
                    product_id,
                    quantity: 1,
                    ..Default::default()
                }],
                destination: format!("Load Street {}", rng.below(20)),
                ..Default::default()
            };
            let id = c
                .order
                .clone()
                .add_order(authorized(c, customer, order))
                .await
                .map_err(fail(op))?
                .into_inner();
            if let Some(confirmed) = &f.confirmed {
                confirmed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(id.clone());
            }
            let mut placed = f.placed.lock().unwrap_or_else(|p| p.into_inner());
            if placed.len() == PLACED_CAP {
                placed.pop_front();
            }
            placed.push_back(id);
        }
        Op::Search => {
            let mut stream = c
                .order
                .clone()
                .search_orders(authorized(c, customer, "Load Street".to_owned()))
                .await
                .map_err(fail(op))?
                .into_inner();
            while let Some(order) = stream.next().await {
                order.map_err(fail(op))?;
            }
        }
        Op::Process => {
            let ids: Vec<String> = {
                let mut placed = f.placed.lock().unwrap_or_else(|p| p.into_inner());
                let n = placed.len().min(4);
                placed.drain(..n).collect()
            };
            if ids.is_empty() {
                // Nothing placed yet to ship: read the catalog instead.
                return Box::pin(call(shared, Op::Get, rng)).await;
            }
            let mut stream = c
                .order
                .clone()
                .process_orders(authorized(c, &f.admin, futures::stream::iter(ids)))
                .await
                .map_err(fail(op))?
                .into_inner();
            while let Some(shipment) = stream.next().await {
                shipment.map_err(fail(op))?;
            }
        }
    }
    Ok(op)
}

/// Runs `plan` against the shop and reports; each call goes out over one of
/// `clients` (one set per connection), picked at random.
pub async fn run(
    clients: Vec<Clients>,
    fixtures: Arc<Fixtures>,
    plan: &Plan,
) -> anyhow::Result<Report> {
    if clients.is_empty() {
        bail!("no clients to call with");
    }
    if clients.len() * STREAMS_PER_CONNECTION < plan.callers() {
        eprintln!(
            "note: {} callers over {} connection(s): past {} calls per connection, calls wait in the generator; pass --connections {}",
            plan.callers(),
            clients.len(),
            STREAMS_PER_CONNECTION,
            plan.callers().div_ceil(STREAMS_PER_CONNECTION)
        );
    }
    if plan.mix.has(Op::Process) && !plan.mix.has(Op::Order) {
        bail!("processOrders ships orders this run placed: give `order` a weight too");
    }
    let shared = Arc::new(Shared {
        clients,
        fixtures,
        mix: plan.mix.clone(),
        retry_reads: plan.retry_reads,
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let progress = plan
        .progress
        .then(|| progress_bar(shared.clone(), start, end));

    let spread_before = picks(&shared);
    let spread_at_start = {
        let shared = shared.clone();
        let cpu = plan.cpu.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from).await;
            (picks(&shared), cpu.map(|c| c.snapshot()))
        })
    };

    let stats = match plan.rate {
        None => closed_loop(&shared, plan.concurrency, measure_from, end).await,
        Some(rate) => open_loop(&shared, rate, plan.max_in_flight, measure_from, end).await?,
    };
    let cpu_after = plan.cpu.as_ref().map(crate::cpu::Processes::snapshot);
    let spread_after = picks(&shared);
    let (spread_start, cpu_before) = spread_at_start.await.unwrap_or((spread_before, None));
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }

    let seconds = plan.duration.as_secs_f64();
    let mut rpcs = Vec::new();
    for op in Op::ALL {
        let s = &stats.0[op.index()];
        let ok = s.latency.len();
        let failed: u64 = s.errors.values().sum();
        if ok + failed == 0 {
            continue;
        }
        let ok_or_zero = |v: u64| if ok == 0 { 0 } else { v };
        rpcs.push(OpReport {
            rpc: op.rpc(),
            calls: ok + failed,
            ok,
            throughput: ok as f64 / seconds,
            p50_us: ok_or_zero(s.latency.value_at_quantile(0.50)),
            p90_us: ok_or_zero(s.latency.value_at_quantile(0.90)),
            p99_us: ok_or_zero(s.latency.value_at_quantile(0.99)),
            max_us: ok_or_zero(s.latency.max()),
            mean_us: if ok == 0 { 0.0 } else { s.latency.mean() },
            errors: s
                .errors
                .iter()
                .map(|(code, n)| ((*code).to_owned(), *n))
                .collect(),
        });
    }
    let calls: u64 = rpcs.iter().map(|r| r.calls).sum();
    let ok: u64 = rpcs.iter().map(|r| r.ok).sum();
    let picks: Vec<(String, u64)> = spread_after
        .iter()
        .map(|(addr, after)| {
            let before = spread_start.get(addr).copied().unwrap_or(0);
            (addr.clone(), after.saturating_sub(before))
        })
        .collect();
    let total_picks: u64 = picks.iter().map(|(_, n)| n).sum();
    let cpu_us_per_call = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| before.per_call(&after, ok));
    Ok(Report {
        mode: match plan.rate {
            None => format!("closed loop, {} callers", plan.concurrency),
            Some(rate) => format!("open loop, {rate:.0}/s"),
        },
        duration_s: seconds,
        calls,
        errors: calls - ok,
        throughput: ok as f64 / seconds,
        rpcs,
        productinfo_spread: picks
            .into_iter()
            .map(|(addr, calls)| SpreadReport {
                addr,
                calls,
                share: if total_picks == 0 {
                    0.0
                } else {
                    calls as f64 / total_picks as f64
                },
            })
            .collect(),
        cpu_us_per_call,
    })
}

/// Calls each productinfo address got so far, over all connections.
fn picks(shared: &Shared) -> BTreeMap<String, u64> {
    let mut picks = BTreeMap::new();
    for clients in &shared.clients {
        for endpoint in clients.productinfo_channel.stats() {
            *picks.entry(endpoint.addr.to_string()).or_default() += endpoint.picks;
        }
    }
    picks
}

/// Calls one connection takes at once: the services' MAX_CONCURRENT_STREAMS
/// default.
const STREAMS_PER_CONNECTION: usize = 100;

/// How long a closed-loop caller told RESOURCE_EXHAUSTED without a hint
/// waits before its next call.
const BUSY_PUSHBACK: Duration = Duration::from_millis(100);
async fn closed_loop(
    shared: &Arc<Shared>,
    callers: usize,
    measure_from: Instant,
    end: Instant,
) -> Stats {
    // One set of histograms for all callers (a set is a few hundred KB:
    // one per caller made 2,000 callers cost gigabytes).
    let stats = Arc::new(Mutex::new(Stats::new()));
    let workers = (0..callers).map(|_| {
        let (shared, stats) = (shared.clone(), stats.clone());
        tokio::spawn(async move {
            let mut rng = Rng::new();
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let op = shared.mix.pick(&mut rng);
                let outcome = call_retrying(&shared, op, &mut rng).await;
                count(&shared, &outcome);
                let busy = match &outcome {
                    Err(f) if f.code == "RESOURCE_EXHAUSTED" => {
                        Some(f.pushback.unwrap_or(BUSY_PUSHBACK))
                    }
                    _ => None,
                };
                if started >= measure_from {
                    let (op, result) = split(outcome);
                    lock(&stats).record(op, result, started.elapsed());
                }
                if let Some(wait) = busy {
                    // Told to back off: wait as the shop's pushback hint
                    // says, as a gRPC client with a retry policy would.
                    tokio::time::sleep(wait).await;
                }
            }
        })
    });
    futures::future::join_all(workers).await;
    lock(&stats).clone()
}

async fn open_loop(
    shared: &Arc<Shared>,
    rate: f64,
    max_in_flight: usize,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<Stats> {
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--rate must be a positive number of calls per second");
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let stats = Arc::new(Mutex::new(Stats::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut rng = Rng::new();
    let (tx, mut due) = tokio::sync::mpsc::unbounded_channel();
    let (start, until) = (std::time::Instant::now(), end.into_std());
    let pacer = std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || pace(start, interval, until, tx))?;
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(scheduled) = due.recv().await {
        let op = shared.mix.pick(&mut rng);
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            if scheduled >= measure_from {
                lock(&stats).record(op, Err("DROPPED"), Duration::ZERO);
            }
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (shared, stats, in_flight) = (shared.clone(), stats.clone(), in_flight.clone());
        let mut task_rng = Rng(rng.next() | 1);
        tasks.spawn(async move {
            let outcome = call_retrying(&shared, op, &mut task_rng).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            count(&shared, &outcome);
            if scheduled >= measure_from {
                let (op, result) = split(outcome);
                // From the scheduled start: time spent queued counts.
                lock(&stats).record(op, result, scheduled.elapsed());
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let _ = pacer.join();
    let total = lock(&stats).clone();
    Ok(total)
}

/// Sends the time each call is due, at that time, until `end`. A thread,
/// because tokio's timer ticks in whole milliseconds: a call due at 3.4 ms
/// would leave at 4 ms or later and, timed from when it was due, look up to
/// a millisecond slower than the service made it. The OS sleeps to within
/// tens of microseconds.
fn pace(
    start: std::time::Instant,
    interval: Duration,
    end: std::time::Instant,
    due: tokio::sync::mpsc::UnboundedSender<Instant>,
) {
    for n in 0u64.. {
        let scheduled = start + interval.mul_f64(n as f64);
        if scheduled >= end {
            break;
        }
        if let Some(wait) = scheduled.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        if due.send(Instant::from_std(scheduled)).is_err() {
            break;
        }
    }
}

fn lock(stats: &Mutex<Stats>) -> std::sync::MutexGuard<'_, Stats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

fn split(outcome: Outcome) -> (Op, Result<(), &'static str>) {
    match outcome {
        Ok(op) => (op, Ok(())),
        Err(f) => (f.op, Err(f.code)),
    }
}

fn count(shared: &Shared, outcome: &Outcome) {
    shared.done.fetch_add(1, Ordering::Relaxed);
    if outcome.is_err() {
        shared.failed.fetch_add(1, Ordering::Relaxed);
    }
}

fn progress_bar(
    shared: Arc<Shared>,
    start: Instant,
    end: Instant,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let total = end.duration_since(start);
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total.as_millis() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {elapsed:>4}/{duration:<4} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = Instant::now();
                let done = shared.done.load(Ordering::Relaxed);
                let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, done);
                bar.set_position(now.duration_since(start).as_millis() as u64);
                bar.set_message(format!(
                    "{done} calls, {} errors, {rate:.0}/s",
                    shared.failed.load(Ordering::Relaxed)
                ));
            }
        })
    };
    (bar, ticker)
}

/// `shopctl load`: prepares, runs, prints the report.
pub async fn load(connect: &ConnectArgs, args: &LoadArgs) -> anyhow::Result<()> {
    let signer = Signer::from_file(connect.issuer.clone(), &connect.key).with_context(|| {
        format!(
            "the load generator mints its customers' tokens with {}: run `make up` once, or pass --key",
            connect.key.display()
        )
    })?;
    let clients = (0..args.connections.max(1))
        .map(|_| connect.clients_with(Bearer::none()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fixtures = Fixtures::prepare(
        &clients[0],
        &signer,
        args.products,
        if args.mix.has(Op::Order) || args.mix.has(Op::Search) {
            args.customers
        } else {
            1
        },
        if args.mix.has(Op::Order) {
            args.restock
        } else {
            0
        },
    )
    .await?;
    let report = run(clients, Arc::new(fixtures), &Plan::from(args)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The report as a table.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let ms = |us: u64| format!("{:.2}ms", us as f64 / 1000.0);
    let _ = writeln!(
        out,
        "{}, {:.0}s: {} calls, {} errors, {:.1} calls/s",
        report.mode, report.duration_s, report.calls, report.errors, report.throughput
    );
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}  errors",
        "RPC", "calls", "ok", "ok/s", "p50", "p90", "p99", "max"
    );
    for r in &report.rpcs {
        let errors = if r.errors.is_empty() {
            "-".to_owned()
        } else {
            r.errors
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "{:<14} {:>8} {:>8} {:>9.1} {:>9} {:>9} {:>9} {:>9}  {errors}",
            r.rpc,
            r.calls,
            r.ok,
            r.throughput,
            ms(r.p50_us),
            ms(r.p90_us),
            ms(r.p99_us),
            ms(r.max_us)
        );
    }
    if report.productinfo_spread.len() > 1 && report.productinfo_spread.iter().any(|s| s.calls > 0)
    {
        let parts: Vec<String> = report
            .productinfo_spread
            .iter()
            .map(|s| format!("{} {:.1}%", s.addr, s.share * 100.0))
            .collect();
        let _ = writeln!(out, "productinfo replicas: {}", parts.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_and_rejects_unknown_rpcs() {
        let mix: Mix = "get=3, order=1,search=0".parse().unwrap();
        assert_eq!(mix, Mix(vec![(Op::Get, 3), (Op::Order, 1)]));
        assert!(
            "get=1,buy=2"
                .parse::<Mix>()
                .unwrap_err()
                .contains("unknown RPC")
        );
        assert!("get=x".parse::<Mix>().is_err());
        assert!("get=0".parse::<Mix>().is_err());
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix: Mix = "get=3,order=1".parse().unwrap();
        let mut rng = Rng::new();
        let gets = (0..40_000)
            .filter(|_| mix.pick(&mut rng) == Op::Get)
            .count();
        // 30 000 expected; 4 standard deviations is about ±350.
        assert!((29_000..31_000).contains(&gets), "{gets}");
    }

    #[test]
    fn stats_quantiles_and_errors() {
        let mut a = Stats::new();
        for ms in 1..=100u64 {
            a.record(Op::Get, Ok(()), Duration::from_millis(ms));
        }
        a.record(Op::Get, Err("UNAVAILABLE"), Duration::ZERO);
        a.record(Op::Get, Ok(()), Duration::from_secs(2));
        let get = &a.0[Op::Get.index()];
        assert_eq!(get.latency.len(), 101);
        assert_eq!(get.errors["UNAVAILABLE"], 1);
        let p50 = get.latency.value_at_quantile(0.5);
        assert!((50_000..=51_100).contains(&p50), "{p50}");
        assert!(get.latency.max() >= 1_999_000);
    }
}
