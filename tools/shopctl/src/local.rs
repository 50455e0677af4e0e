//! The whole shop on one machine: `shopctl up` (what `make up` runs).
//!
//! 1. A private PostgreSQL cluster in `.local/pg` (kept across runs) with one
//!    database and one login role per service, and a streaming replica of it
//!    in `.local/pg-replica` (made afresh with `pg_basebackup` each run),
//!    where productinfo reads the catalog (`DATABASE_READ_URL`).
//!    `DATABASE_URL` (an admin URL) uses a server you run instead (no
//!    replica then); `PRODUCTINFO_DATABASE_URL` and friends give a service a
//!    database of your choosing.
//! 2. Ed25519 keys in `.local/keys`: one per issuing service; a local CA
//!    and a certificate per service (and one for `shopctl` and grpcurl) in
//!    `.local/tls`: every hop is mutual TLS unless `--plaintext`.
//! 3. Every service as a child process of the real binaries next to
//!    `shopctl`, migrations applied at start, productinfo and order twice
//!    each (client-side balancing; two order replicas share one database,
//!    its watches and its release outbox); all logs on one stream,
//!    prefixed by service.
//! 4. Waits until every replica is SERVING, seeds the demo catalog, prints
//!    addresses, tokens and ready-to-paste grpcurl commands.
//! 5. Ctrl-C (or SIGTERM): services get SIGTERM and drain, then PostgreSQL
//!    stops. Data stays for the next run; `make reset` removes it.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use shop_devdb::Cluster;
use shop_proto::ecommerce::{
    Money, Product, RegisterRequest, product_info_client::ProductInfoClient,
    storefront_client::StorefrontClient,
};
use shop_runtime::{
    auth::{Role, Signer, ensure_keypair},
    service::Addrs,
    tls::Tls,
};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};
use tonic::{Code, transport::Channel};

use crate::connect::Bearer;

/// Options of `shopctl up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Folder for the local database, keys and tokens.
    #[arg(long, env = "SHOP_LOCAL_DIR", default_value = ".local")]
    pub dir: PathBuf,

    /// Folder holding the service binaries (default: next to shopctl).
    #[arg(long, env = "SHOP_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// How many productinfo replicas to run.
    #[arg(long, default_value_t = 2)]
    pub productinfo_replicas: u16,

    /// How many order replicas to run.
    #[arg(long, default_value_t = 2)]
    pub order_replicas: u16,

    /// Do not start a read replica of the database (productinfo then reads
    /// on the primary).
    #[arg(long)]
    pub no_read_replica: bool,

    /// Do not add the demo catalog.
    #[arg(long)]
    pub no_seed: bool,

    /// Plaintext gRPC everywhere instead of mutual TLS, as in the book's
    /// first chapters (grpcurl -plaintext, shopctl --plaintext).
    #[arg(long)]
    pub plaintext: bool,
}

/// Preferred local ports; a taken one is replaced by a free one.
const PRODUCTINFO_PORT: u16 = 7101;
const ORDER_PORT: u16 = 7201;
const STOREFRONT_PORT: u16 = 7301;
const HTTP_PORT: u16 = 8080;
const DEMO_ADMIN: &str = "admin@shop.local";
const DEMO_CUSTOMER: &str = "customer@shop.local";

/// A service process and where it listens.
struct Service {
    name: String,
    child: Child,
    addr: SocketAddr,
    /// The web shop's address (storefront only).
    web: Option<SocketAddr>,
    /// Port of `/metrics` (0: a random one, the preferred was taken).
    metrics_port: u16,
}

/// Runs the shop until Ctrl-C.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let dir = absolute(&args.dir)?;
    let bin_dir = bin_dir(args.bin_dir.as_deref())?;
    let productinfo_bin = bin_dir.join("productinfo");
    let order_bin = bin_dir.join("order");
    let storefront_bin = bin_dir.join("storefront");
    for bin in [&productinfo_bin, &order_bin, &storefront_bin] {
        if !bin.is_file() {
            bail!(
                "{} not found: build the services first (`cargo build --bins`, or just `make up`)",
                bin.display()
            );
        }
    }

    let cluster = if let Ok(url) = std::env::var("DATABASE_URL") {
        println!("shop: using the PostgreSQL server of DATABASE_URL");
        Cluster::external(&url)?
    } else {
        println!("shop: starting PostgreSQL in {}", dir.join("pg").display());
        tokio::task::block_in_place(|| Cluster::persistent(&dir.join("pg")))?
    };
    let productinfo_db = database_url(&cluster, "productinfo").await?;
    let order_db = database_url(&cluster, "order").await?;
    let storefront_db = database_url(&cluster, "storefront").await?;
    let replica = read_replica(&cluster, &args, &productinfo_db);
    let productinfo_read_db = replica
        .as_ref()
        .map(|replica| replica.url_like(&productinfo_db, &cluster))
        .unwrap_or_default();

    let keys = dir.join("keys");
    let (storefront_key, storefront_pub) = ensure_keypair(&keys, "storefront")?;
    let (order_key, order_pub) = ensure_keypair(&keys, "order")?;
    // As the chart trusts them: the storefront's key grants people's roles
    // everywhere and its own service role only at the catalog.
    let productinfo_trusts = format!(
        "storefront:customer+admin+service={},order:service={}",
        storefront_pub.display(),
        order_pub.display()
    );
    let order_trusts = format!("storefront:customer+admin={}", storefront_pub.display());
    let storefront_trusts = order_trusts.clone();
    // Demo accounts: passwords made on the first run, kept in .local.
    let admin_password_file = dir.join("admin.password");
    let admin_password = demo_password(&admin_password_file)?;
    let customer_password = demo_password(&dir.join("customer.password"))?;
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir)?;
    // Certificates made afresh each run, from the CA kept in .local/tls.
    let tls_dir = dir.join("tls");
    let tls = if args.plaintext {
        None
    } else {
        crate::certs::local(&tls_dir, &["productinfo", "order", "storefront", "shopctl"])?;
        Some(Local {
            dir: tls_dir.clone(),
            client: crate::certs::client(&tls_dir, "shopctl")?,
        })
    };
    // Fault flags, off until `shopctl fault set`; every service reads the file.
    let faults_file = dir.join("faults.json");
    if !faults_file.exists() {
        std::fs::write(&faults_file, "{\"flags\": {}}\n")?;
    }
    let tls_env = |name: &str| -> Vec<(&'static str, String)> {
        let mut env = tls.as_ref().map_or_else(Vec::new, |t| {
            crate::certs::service_env(&t.dir, name, name == "storefront")
        });
        env.push(("FAULTS_FILE", faults_file.display().to_string()));
        env
    };

    let mut services = Vec::new();
    let started = async {
        for replica in 1..=args.productinfo_replicas {
            let name = format!("productinfo-{replica}");
            let port = preferred_port(PRODUCTINFO_PORT + replica - 1);
            let service = spawn(
                &name,
                &productinfo_bin,
                &run_dir,
                port,
                &[
                    ("DATABASE_URL", productinfo_db.as_str()),
                    ("DATABASE_READ_URL", productinfo_read_db.as_str()),
                    ("TRUSTED_ISSUERS", productinfo_trusts.as_str()),
                    ("MIGRATE_ON_START", "true"),
                    ("DB_MAX_CONNECTIONS", "4"),
                ],
                &tls_env("productinfo"),
            )
            .await?;
            services.push(service);
        }
        for service in &services {
            wait_serving(service, "ecommerce.ProductInfo", tls.as_ref()).await?;
        }
        // The order service balances over every productinfo replica.
        let catalog: Vec<String> = services.iter().map(|s| s.addr.to_string()).collect();
        let mut orders = Vec::new();
        for replica in 1..=args.order_replicas {
            let order = spawn(
                &format!("order-{replica}"),
                &order_bin,
                &run_dir,
                preferred_port(ORDER_PORT + replica - 1),
                &[
                    ("DATABASE_URL", order_db.as_str()),
                    ("TRUSTED_ISSUERS", order_trusts.as_str()),
                    ("PRODUCTINFO_TARGET", catalog.join(",").as_str()),
                    ("SIGNING_KEY_FILE", order_key.to_str().unwrap_or_default()),
                    ("MIGRATE_ON_START", "true"),
                    ("DB_MAX_CONNECTIONS", "4"),
                ],
                &tls_env("order"),
            )
            .await?;
            orders.push(order);
        }
        for order in &orders {
            wait_serving(order, "ecommerce.OrderManagement", tls.as_ref()).await?;
        }
        // The storefront balances over every order replica.
        let order_addrs: Vec<String> = orders.iter().map(|s| s.addr.to_string()).collect();
        services.extend(orders);
        let storefront = spawn(
            "storefront",
            &storefront_bin,
            &run_dir,
            preferred_port(STOREFRONT_PORT),
            &[
                ("DATABASE_URL", storefront_db.as_str()),
                ("TRUSTED_ISSUERS", storefront_trusts.as_str()),
                ("PRODUCTINFO_TARGET", catalog.join(",").as_str()),
                ("ORDER_TARGET", order_addrs.join(",").as_str()),
                (
                    "SIGNING_KEY_FILE",
                    storefront_key.to_str().unwrap_or_default(),
                ),
                (
                    "HTTP_LISTEN_ADDR",
                    &format!("127.0.0.1:{}", preferred_port(HTTP_PORT)),
                ),
                ("ADMIN_EMAIL", DEMO_ADMIN),
                (
                    "ADMIN_PASSWORD_FILE",
                    admin_password_file.to_str().unwrap_or_default(),
                ),
                ("MIGRATE_ON_START", "true"),
                ("DB_MAX_CONNECTIONS", "4"),
            ],
            &tls_env("storefront"),
        )
        .await?;
        wait_serving(&storefront, "ecommerce.Storefront", tls.as_ref()).await?;
        services.push(storefront);
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = started {
        stop_all(&mut services).await;
        return Err(e);
    }

    let signer = Signer::from_file("storefront", &storefront_key)?;
    let audience = ["productinfo", "order", "storefront"];
    let admin = signer.sign(
        "admin",
        Role::Admin,
        &audience,
        Duration::from_secs(12 * 3600),
    )?;
    let customer = signer.sign(
        "customer",
        Role::Customer,
        &audience,
        Duration::from_secs(12 * 3600),
    )?;
    write_private(&dir.join("admin.token"), &admin)?;
    write_private(&dir.join("customer.token"), &customer)?;

    if !args.no_seed {
        match seed(channel(&services[0], tls.as_ref())?, &admin).await {
            Ok(0) => {}
            Ok(added) => println!("shop: added {added} demo products"),
            Err(e) => {
                stop_all(&mut services).await;
                return Err(e.context("seeding the demo catalog"));
            }
        }
    }

    let web = services
        .iter()
        .find_map(|s| s.web)
        .map(|w| w.to_string())
        .unwrap_or_default();
    if let Err(e) = ensure_demo_customer(&services, &customer_password, tls.as_ref()).await {
        stop_all(&mut services).await;
        return Err(e.context("creating the demo customer"));
    }
    print_welcome(
        &dir,
        &services,
        &web,
        &admin_password,
        &customer_password,
        tls.is_some(),
    );

    let outcome = tokio::select! {
        () = shop_runtime::server::shutdown_signal() => Ok(()),
        (name, status) = first_exit(&mut services) => {
            Err(anyhow::anyhow!("{name} stopped unexpectedly ({status}); stopping the shop"))
        }
    };
    println!("shop: stopping services");
    stop_all(&mut services).await;
    println!("shop: stopping PostgreSQL (data kept in {})", dir.display());
    tokio::task::block_in_place(|| {
        drop(replica);
        drop(cluster);
    });
    outcome
}

/// `<NAME>_DATABASE_URL` when set (a database you provide), otherwise the
/// service's own database and role on `cluster`.
async fn database_url(cluster: &Cluster, name: &str) -> anyhow::Result<String> {
    match std::env::var(format!("{}_DATABASE_URL", name.to_uppercase())) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => Ok(cluster.ensure_database(name).await?),
    }
}

/// A streaming replica of the private cluster for productinfo's reads,
/// unless told not to, or the database is not the private cluster's. A
/// replica that cannot be made is not fatal: reads then stay on the primary.
fn read_replica(cluster: &Cluster, args: &UpArgs, productinfo_db: &str) -> Option<Cluster> {
    let own_database = std::env::var("DATABASE_URL").is_err()
        && std::env::var("PRODUCTINFO_DATABASE_URL").is_err()
        && productinfo_db.contains(&format!(":{}/", cluster.port()));
    if args.no_read_replica || !own_database {
        return None;
    }
    println!("shop: starting a streaming replica of PostgreSQL (pg_basebackup) for catalog reads");
    match tokio::task::block_in_place(|| cluster.replica()) {
        Ok(replica) => Some(replica),
        Err(e) => {
            eprintln!("shop: no read replica ({e}); productinfo reads on the primary");
            None
        }
    }
}

/// The password in `path`, or a new random one written there.
fn demo_password(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path)
        && existing.trim().len() >= 10
    {
        return Ok(existing.trim().to_owned());
    }
    let mut bytes = [0u8; 9];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, &password)?;
    Ok(password)
}

/// Registers the demo customer through the storefront's own API (an
/// existing account is left as it is).
async fn ensure_demo_customer(
    services: &[Service],
    password: &str,
    tls: Option<&Local>,
) -> anyhow::Result<()> {
    let storefront = services
        .iter()
        .find(|s| s.name == "storefront")
        .context("storefront not running")?;
    let result = StorefrontClient::new(channel(storefront, tls)?)
        .register(RegisterRequest {
            email: DEMO_CUSTOMER.into(),
            password: password.into(),
            name: "Demo Customer".into(),
        })
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(anyhow::anyhow!("register: {status}")),
    }
}

/// `path` as is when absolute, otherwise under the current folder.
pub(crate) fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// The folder of the service binaries: `--bin-dir` when given, otherwise
/// the one `shopctl` itself is in.
pub(crate) fn bin_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir.to_owned()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("shopctl has no folder")?
            .to_owned()),
    }
}

/// `port` on 127.0.0.1 if it is free, otherwise 0 (any free port).
fn preferred_port(port: u16) -> u16 {
    if TcpListener::bind(("127.0.0.1", port)).is_ok() {
        port
    } else {
        0
    }
}

/// Starts `bin serve` with `env`, forwarding its output line by line with a
/// `name |` prefix, and learns its address from the file it writes.
async fn spawn(
    name: &str,
    bin: &Path,
    run_dir: &Path,
    port: u16,
    env: &[(&str, &str)],
    tls_env: &[(&str, String)],
) -> anyhow::Result<Service> {
    // Prometheus metrics next door: 7101 -> 9101 (any free port if taken).
    let metrics_port = if port == 0 {
        0
    } else {
        preferred_port(port + 2000)
    };
    let addr_file = run_dir.join(format!("{name}.addr"));
    let _ = std::fs::remove_file(&addr_file);
    let mut child = Command::new(bin)
        .arg("serve")
        .envs(env.iter().copied())
        .envs(tls_env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("ADDR_FILE", &addr_file)
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("LOG_FORMAT", "text")
        .env("SHUTDOWN_GRACE", "10s")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: Ctrl-C reaches shopctl only, which stops the
        // services in order.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    for output in [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let prefix = format!("{name:>13} |");
        tokio::spawn(async move {
            let mut lines = BufReader::new(output).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("{prefix} {line}");
            }
        });
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let addrs = loop {
        if let Some(addrs) = Addrs::read(&addr_file) {
            break addrs;
        }
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited during start-up ({status}); its log is above");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{name} did not start listening within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    Ok(Service {
        name: name.to_owned(),
        child,
        addr: addrs.grpc,
        web: addrs.web,
        metrics_port: addrs.metrics.map_or(0, |m| m.port()),
    })
}

/// The local run's TLS: where the certificates are, and shopctl's own.
struct Local {
    dir: PathBuf,
    client: Tls,
}

/// A connection (made on the first call) to `service`: over mutual TLS as
/// shopctl when the shop runs so.
fn channel(service: &Service, tls: Option<&Local>) -> anyhow::Result<Channel> {
    // "productinfo-1" proves it is "productinfo".
    let name = service.name.split('-').next().unwrap_or_default();
    shop_runtime::tls::connect::channel(
        &service.addr.to_string(),
        tls.map(|t| (&t.client, name)),
        Duration::from_secs(5),
    )
    .map_err(anyhow::Error::msg)
}

async fn wait_serving(
    service: &Service,
    grpc_service: &str,
    tls: Option<&Local>,
) -> anyhow::Result<()> {
    let channel = channel(service, tls)?;
    shop_runtime::health::wait_until_serving(channel, grpc_service, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", service.name))
}

/// Waits for the first service to exit on its own.
async fn first_exit(services: &mut [Service]) -> (String, String) {
    let waits = services.iter_mut().map(|s| {
        Box::pin(async move {
            let status = s.child.wait().await;
            (
                s.name.clone(),
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string()),
            )
        })
    });
    futures::future::select_all(waits).await.0
}

/// SIGTERM to every service, last started first, then waits for each
/// (they drain in parallel); a service still running after 30 s is killed.
async fn stop_all(services: &mut Vec<Service>) {
    for service in services.iter().rev() {
        if let Some(pid) = service.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    for mut service in services.drain(..).rev() {
        match tokio::time::timeout(Duration::from_secs(30), service.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!(
                    "shop: {} did not stop within 30 s; killing it",
                    service.name
                );
                let _ = service.child.kill().await;
            }
        }
    }
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(content.as_bytes())?;
    Ok(())
}

/// One product of `demo/catalog.json`.
#[derive(Deserialize)]
struct DemoProduct {
    id: String,
    name: String,
    description: String,
    category: String,
    currency: String,
    price_minor: i64,
    stock: i64,
    image_url: String,
}

/// Adds the demo catalog through the real API; products already there (same
/// id) are left alone. Returns how many were added.
async fn seed(channel: Channel, admin_token: &str) -> anyhow::Result<usize> {
    let catalog: Vec<DemoProduct> = serde_json::from_str(include_str!("../demo/catalog.json"))?;
    let mut client = ProductInfoClient::with_interceptor(channel, Bearer::new(admin_token)?);
    let mut added = 0;
    for p in catalog {
        let result = client
            .add_product(Product {
                id: p.id,
                name: p.name,
                description: p.description,
                unit_price: Some(Money::from_minor(&p.currency, p.price_minor)),
                stock: Some(p.stock),
                image_url: p.image_url,
                category: p.category,
                ..Default::default()
            })
            .await;
        match result {
            Ok(_) => added += 1,
            Err(status) if status.code() == Code::AlreadyExists => {}
            Err(status) => bail!("addProduct failed: {status}"),
        }
    }
    Ok(added)
}

fn print_welcome(
    dir: &Path,
    services: &[Service],
    web: &str,
    admin_password: &str,
    customer_password: &str,
    tls: bool,
) {
    let tokens = dir
        .strip_prefix(std::env::current_dir().unwrap_or_default())
        .unwrap_or(dir);
    let grpcurl = if Path::new(".tools/bin/grpcurl").is_file() {
        ".tools/bin/grpcurl"
    } else {
        "grpcurl"
    };
    let grpcurl = if tls {
        format!(
            "{grpcurl} -cacert {0}/tls/ca.pem -cert {0}/tls/shopctl.pem -key {0}/tls/shopctl-key.pem",
            tokens.display()
        )
    } else {
        format!("{grpcurl} -plaintext")
    };
    let admin = format!(
        "\"authorization: Bearer $(cat {}/admin.token)\"",
        tokens.display()
    );
    let customer = format!(
        "\"authorization: Bearer $(cat {}/customer.token)\"",
        tokens.display()
    );
    let addr = |name: &str| {
        services
            .iter()
            .find(|s| s.name.starts_with(name))
            .map(|s| s.addr.to_string())
            .unwrap_or_default()
    };
    let (productinfo, order, storefront) = (addr("productinfo"), addr("order"), addr("storefront"));
    println!();
    println!(
        "The shop is running. Ctrl-C stops it; data stays in {} (`make reset` starts over).",
        dir.display()
    );
    println!();
    println!("  Web shop:  http://{web}/");
    println!("             admin    {DEMO_ADMIN} / {admin_password}");
    println!("             customer {DEMO_CUSTOMER} / {customer_password}");
    println!();
    for s in services {
        if s.metrics_port == 0 {
            println!("  {:<14} {} (gRPC)", s.name, s.addr);
        } else {
            println!(
                "  {:<14} {} (gRPC), http://127.0.0.1:{}/metrics",
                s.name, s.addr, s.metrics_port
            );
        }
    }
    println!();
    println!(
        "Tokens for grpcurl (12 h): {0}/admin.token (admin), {0}/customer.token (customer)",
        tokens.display()
    );
    if tls {
        println!(
            "Every gRPC hop is mutual TLS (certificates in {}/tls; `make up ARGS=--plaintext` for plaintext).",
            tokens.display()
        );
    }
    println!("Try:");
    println!("  {grpcurl} {productinfo} list");
    println!("  {grpcurl} {order} grpc.health.v1.Health/Check");
    println!(
        "  {grpcurl} -H {customer} -d '{{\"query\": \"tea\"}}' {productinfo} ecommerce.ProductInfo/listProducts"
    );
    println!(
        "  {grpcurl} -H {customer} -d '{{\"items\": [\"Green Tea\", \"Ceramic Mug\"], \"destination\": \"Lisbon\"}}' {order} ecommerce.OrderManagement/addOrder"
    );
    println!(
        "  {grpcurl} -H {customer} -d '\"tea\"' {order} ecommerce.OrderManagement/searchOrders"
    );
    println!(
        "  {grpcurl} -H {admin} -d '\"<order id>\"' {order} ecommerce.OrderManagement/processOrders"
    );
    println!(
        "  {grpcurl} -d '{{\"email\": \"{DEMO_CUSTOMER}\", \"password\": \"{customer_password}\"}}' {storefront} ecommerce.Storefront/login"
    );
    println!();
}
