//! The real `shopctl` against the real shop: two productinfo replicas, the
//! order service and the storefront as processes, every RPC called through
//! the command line, its JSON output parsed and its values checked, its
//! streams read line by line while they are still open, and its errors
//! (code, message, field violations, exit code) read from stderr.
//!
//! `shopctl` is not built by `cargo test`: `make test-rust` builds every
//! binary first (`cargo build --workspace --bins`).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
};

use serde_json::Value;
use shop_runtime::tls::Tls;
use shop_testkit::{
    binary::{Process, text},
    keys,
    pki::Pki,
};

use crate::shop::binary;

/// The shop much as `make up` runs it (one order replica and no read
/// replica: those have tests of their own), on free ports and fresh
/// databases, every hop mutual TLS.
struct CliShop {
    productinfo: [Process; 2],
    order: Process,
    storefront: Process,
    /// The shop's CA; `shopctl.pem` is the command line's certificate.
    pki: Pki,
    /// The fault flag file every service reads.
    faults: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

impl CliShop {
    async fn start() -> CliShop {
        shop_testkit::init_logs();
        let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let pki = Pki::new();
        let client = pki.client("shopctl");
        let serve = |name: &'static str, dir, env: Vec<(&'static str, String)>, health| {
            let mut env = env;
            env.extend(pki.service_env(name));
            let client = &client;
            async move { serve(name, dir, &env, health, client).await }
        };
        let faults = pki.dir.path().join("faults.json");
        let common = [
            ("MIGRATE_ON_START", "true".to_owned()),
            ("METRICS_ADDR", "off".to_owned()),
            ("SHUTDOWN_GRACE", "5s".to_owned()),
            ("FAULTS_FILE", faults.display().to_string()),
        ];

        // Two replicas on one database, as `make up` runs them.
        let catalog_db = shop_testkit::fresh_database("productinfo").await;
        let mut env = common.to_vec();
        env.push(("DATABASE_URL", catalog_db));
        env.push(("TRUSTED_ISSUERS", keys().productinfo_trusts.clone()));
        let first = serve(
            "productinfo",
            &dirs[0],
            env.clone(),
            "ecommerce.ProductInfo",
        )
        .await;
        let second = serve("productinfo", &dirs[1], env, "ecommerce.ProductInfo").await;
        let productinfo = format!("{},{}", first.addr, second.addr);

        let mut env = common.to_vec();
        env.push(("DATABASE_URL", shop_testkit::fresh_database("order").await));
        env.push(("TRUSTED_ISSUERS", keys().order_trusts.clone()));
        env.push(("PRODUCTINFO_TARGET", productinfo.clone()));
        env.push(("SIGNING_KEY_FILE", keys().order_key.display().to_string()));
        let order = serve("order", &dirs[2], env, "ecommerce.OrderManagement").await;

        let mut env = common.to_vec();
        env.push((
            "DATABASE_URL",
            shop_testkit::fresh_database("storefront").await,
        ));
        env.push(("TRUSTED_ISSUERS", keys().storefront_trusts.clone()));
        env.push(("PRODUCTINFO_TARGET", productinfo));
        env.push(("ORDER_TARGET", order.addr.clone()));
        env.push((
            "SIGNING_KEY_FILE",
            keys().storefront_key.display().to_string(),
        ));
        env.push(("HTTP_LISTEN_ADDR", "127.0.0.1:0".to_owned()));
        let storefront = serve("storefront", &dirs[3], env, "ecommerce.Storefront").await;

        CliShop {
            productinfo: [first, second],
            order,
            storefront,
            pki,
            faults,
            _dirs: dirs,
        }
    }

    /// `shopctl ARGS` pointed at this shop, with a clean environment and an
    /// admin token minted with the storefront's key (flags change that).
    fn shopctl(&self, args: &[&str]) -> Command {
        self.shopctl_with_key(&keys().storefront_key, args)
    }

    /// `shopctl ARGS` minting its token with `key`.
    fn shopctl_with_key(&self, key: &Path, args: &[&str]) -> Command {
        self.shopctl_as(key, "shopctl", args)
    }

    /// `shopctl ARGS` minting its token with `key` and presenting the
    /// certificate `cert`.pem (a service's token counts only over that
    /// service's certificate).
    fn shopctl_as(&self, key: &Path, cert: &str, args: &[&str]) -> Command {
        let mut cmd = shop_testkit::binary::command(&shopctl_binary(), &[]);
        cmd.args(args).args([
            "--productinfo",
            &format!("{},{}", self.productinfo[0].addr, self.productinfo[1].addr),
            "--order",
            &self.order.addr,
            "--storefront",
            &self.storefront.addr,
            "--key",
            &key.display().to_string(),
        ]);
        for (flag, file) in [
            ("--tls-ca", "ca.pem"),
            ("--tls-cert", &format!("{cert}.pem")),
            ("--tls-key", &format!("{cert}-key.pem")),
        ] {
            cmd.arg(flag).arg(self.pki.dir.path().join(file));
        }
        cmd
    }

    /// grpcurl's flags for calling the shop over mutual TLS as shopctl.
    fn grpcurl_tls(&self) -> Vec<String> {
        let file = |name: &str| self.pki.dir.path().join(name).display().to_string();
        vec![
            "-cacert".into(),
            file("ca.pem"),
            "-cert".into(),
            file("shopctl.pem"),
            "-key".into(),
            file("shopctl-key.pem"),
        ]
    }

    /// Runs `shopctl ARGS` to the end with no stdin.
    fn run(&self, args: &[&str]) -> Outcome {
        Outcome::of(&mut self.shopctl(args), None)
    }

    /// Runs `shopctl ARGS` as a customer (a token for `subject`).
    fn run_as_customer(&self, subject: &str, args: &[&str]) -> Outcome {
        let mut args = args.to_vec();
        args.extend(["--role", "customer", "--subject", subject]);
        self.run(&args)
    }
}

async fn serve(
    name: &str,
    dir: &tempfile::TempDir,
    env: &[(&'static str, String)],
    health: &str,
    client: &Tls,
) -> Process {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Process::serve_over(
        &binary(name),
        dir.path(),
        &env,
        health,
        Some((client, name)),
    )
    .await
}

/// `shopctl SUBCOMMAND --bin-dir <the debug binaries>`, for the
/// subcommands that run a shop of their own (`bench`, `chaos`), and a
/// folder for it. PostgreSQL runs as the `postgres` user when we are root:
/// it must be able to reach its folder inside this one.
fn own_shop(subcommand: &str) -> (tempfile::TempDir, Command) {
    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        out.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bin_dir = PathBuf::from(shopctl_binary()).parent().unwrap().to_owned();
    let mut cmd = shop_testkit::binary::command(&shopctl_binary(), &[]);
    cmd.args([subcommand, "--bin-dir", &bin_dir.display().to_string()]);
    (out, cmd)
}

/// `target/debug/shopctl`, next to the service binaries.
fn shopctl_binary() -> String {
    let path: PathBuf = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("shopctl");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` does not build it; run `cargo build --workspace --bins` \
         first (`make test-rust` does)",
        path.display()
    );
    path.display().to_string()
}

/// What a finished `shopctl` printed and how it exited.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn of(cmd: &mut Command, stdin: Option<&str>) -> Outcome {
        let mut child = cmd
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shopctl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let output = child.wait_with_output().unwrap();
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    /// Asserts exit code 0 and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "shopctl failed: {self:#?}");
        self.stdout
    }

    /// Asserts success and parses stdout as one JSON object.
    fn json(self) -> Value {
        let stdout = self.ok();
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Asserts success and parses stdout as JSON lines.
    fn json_lines(self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// A `shopctl` still running, read line by line.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shopctl");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Running { child, stdout }
    }

    /// The next JSON line it prints (blocks until it does).
    fn next_json(&mut self) -> Value {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "shopctl ended its output early");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin and waits for the end: exit code and stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        let output = self.child.wait_with_output().unwrap();
        (
            output.status.code(),
            rest,
            String::from_utf8(output.stderr).unwrap(),
        )
    }
}

fn ids(values: &[Value]) -> Vec<&str> {
    values.iter().map(|v| v["id"].as_str().unwrap()).collect()
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}

// Multi-threaded like the other real-binary tests; shopctl runs as a child
// process, waited on synchronously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopctl_runs_every_catalog_and_order_rpc_against_the_real_shop() {
    let shop = CliShop::start().await;

    // addProduct: JSON gives the id; the table output is just the id too.
    let tea = shop
        .run(&[
            "product",
            "add",
            "--name",
            "Green Tea",
            "--description",
            "Loose leaf",
            "--price",
            "4.50",
            "--currency",
            "EUR",
            "--stock",
            "20",
            "--category",
            "tea",
            "-o",
            "json",
        ])
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mug = shop
        .run(&[
            "product",
            "add",
            "--name",
            "Ceramic Mug",
            "--description",
            "Stoneware",
            "--price",
            "12",
            "--currency",
            "EUR",
            "--stock",
            "5",
            "--category",
            "kitchen",
        ])
        .ok()
        .trim()
        .to_owned();
    assert!(is_uuid(&tea) && is_uuid(&mug), "{tea} {mug}");

    // getProduct, as JSON and as a table.
    let got = shop
        .run_as_customer("c1", &["product", "get", &tea, "-o", "json"])
        .json();
    assert_eq!(got["id"], tea.as_str());
    assert_eq!(got["name"], "Green Tea");
    assert_eq!(got["description"], "Loose leaf");
    assert_eq!(got["category"], "tea");
    assert_eq!(got["stock"], 20);
    assert_eq!(got["unit_price"]["currency_code"], "EUR");
    assert_eq!(got["unit_price"]["amount"], "4.50");
    let created = got["create_time"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    let table = shop.run(&["product", "get", &tea]).ok();
    assert!(
        table.lines().any(|l| l == "price        4.50 EUR"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l == "name         Green Tea"),
        "{table}"
    );

    // getProducts by id and name; unknown names come back as missing.
    let found = shop
        .run(&[
            "product",
            "get-many",
            &tea,
            "--name",
            "Ceramic Mug",
            "--name",
            "No Such Thing",
            "-o",
            "json",
        ])
        .json();
    let mut found_ids: Vec<&str> = ids(found["products"].as_array().unwrap());
    found_ids.sort();
    let mut both = vec![tea.as_str(), mug.as_str()];
    both.sort();
    assert_eq!(found_ids, both);
    assert_eq!(found["missing"], serde_json::json!(["No Such Thing"]));

    // listProducts: one page with a token; --all follows it, by name.
    let page = shop
        .run(&["product", "list", "--page-size", "1", "-o", "json"])
        .json();
    assert_eq!(ids(page["products"].as_array().unwrap()), [mug.as_str()]);
    assert!(!page["next_page_token"].as_str().unwrap().is_empty());
    let all = shop
        .run(&["product", "list", "--all", "--page-size", "1", "-o", "id"])
        .ok();
    assert_eq!(
        all.lines().collect::<Vec<_>>(),
        [mug.as_str(), tea.as_str()]
    );

    // searchProducts: JSON lines, and rows under a header.
    let teas = shop
        .run(&["product", "search", "tea", "-o", "json"])
        .json_lines();
    assert_eq!(ids(&teas), [tea.as_str()]);
    let rows = shop.run(&["product", "search"]).ok();
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 3, "{rows}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("PRICE"),
        "{rows}"
    );
    assert!(
        lines[1..]
            .iter()
            .any(|l| l.contains("Ceramic Mug") && l.contains("12.00 EUR")),
        "{rows}"
    );

    // adjustStock with a negative delta.
    let adjusted = shop
        .run(&[
            "product",
            "adjust-stock",
            &mug,
            "--delta",
            "-2",
            "--reason",
            "breakage",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(adjusted["stock"], 3);

    // reserveStock / releaseStock take the order service's own token, over
    // the order service's own certificate.
    let as_impostor = shop
        .shopctl_with_key(&keys().order_key, &["product", "release", "cli-r0"])
        .args([
            "--issuer",
            "order",
            "--role",
            "service",
            "--subject",
            "order",
        ])
        .output()
        .unwrap();
    assert!(
        text(&as_impostor.stderr).contains("PERMISSION_DENIED"),
        "{as_impostor:?}"
    );
    let as_order_service = |args: &[&str]| {
        let mut cmd = shop.shopctl_as(&keys().order_key, "order", args);
        cmd.args([
            "--issuer",
            "order",
            "--role",
            "service",
            "--subject",
            "order",
        ]);
        Outcome::of(&mut cmd, None)
    };
    let line = format!("{mug}=1");
    let held = as_order_service(&[
        "product", "reserve", "cli-r1", "--line", &line, "-o", "json",
    ])
    .json();
    assert_eq!(held["state"], "HELD");
    assert_eq!(held["lines"][0]["quantity"], 1);
    assert_eq!(held["lines"][0]["unit_price"]["amount"], "12.00");
    let released = as_order_service(&["product", "release", "cli-r1", "-o", "json"]).json();
    assert_eq!(released["state"], "RELEASED");

    // addOrder with lines; the same idempotency key places one order.
    let add = |items: &[&str], destination: &str| {
        let mut args = vec!["order", "add", "--destination", destination];
        args.extend(items);
        shop.run_as_customer("c1", &args).ok().trim().to_owned()
    };
    let (tea2, mug1) = (format!("{tea}=2"), format!("{mug}=1"));
    let o1 = add(
        &["--line", &tea2, "--line", &mug1, "--idempotency-key", "k1"],
        "Lisbon",
    );
    assert_eq!(
        add(
            &["--line", &tea2, "--line", &mug1, "--idempotency-key", "k1"],
            "Lisbon"
        ),
        o1
    );
    // ...and book style, items by name.
    let o2 = add(&["--item", "Green Tea", "--item", "Ceramic Mug"], "Lisbon");
    let o3 = add(&["--line", &tea], "Lisbon");
    let o4 = add(&["--line", &tea], "Porto");

    // getOrder: prices from the catalog, exact totals.
    let order = shop
        .run_as_customer("c1", &["order", "get", &o1, "-o", "json"])
        .json();
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["destination"], "Lisbon");
    assert_eq!(order["customer"], "c1");
    assert_eq!(order["idempotency_key"], "k1");
    assert_eq!(order["total"]["amount"], "21.00");
    assert_eq!(order["total"]["currency_code"], "EUR");
    let line = &order["lines"][0];
    assert_eq!(
        (
            &line["product_id"],
            &line["quantity"],
            &line["line_total"]["amount"]
        ),
        (
            &Value::from(tea.as_str()),
            &Value::from(2),
            &Value::from("9.00")
        )
    );
    let table = shop.run_as_customer("c1", &["order", "get", &o1]).ok();
    assert!(table.contains("total            21.00 EUR"), "{table}");

    // searchOrders streams the customer's matching orders, oldest first;
    // another customer sees none of them.
    let lisbon = shop
        .run_as_customer("c1", &["order", "search", "Lisbon", "-o", "json"])
        .json_lines();
    assert_eq!(ids(&lisbon), [o1.as_str(), o2.as_str(), o3.as_str()]);
    let other = shop.run_as_customer("c2", &["order", "search", "-o", "json"]);
    assert_eq!(other.ok(), "");

    // updateOrders: JSON lines on stdin, one summary; an unknown id is
    // reported per order and makes the exit code 1.
    let input = format!(
        "{{\"id\": \"{o3}\", \"description\": \"gift\"}}\n\
         {{\"id\": \"{o4}\", \"destination\": \"Faro\"}}\n\
         {{\"id\": \"0190a0a0-0000-7000-8000-000000000000\", \"destination\": \"Nowhere\"}}\n"
    );
    let updated = Outcome::of(
        &mut shop.shopctl(&["order", "update", "-o", "json"]),
        Some(&input),
    );
    assert_eq!(updated.code, Some(1), "{updated:#?}");
    assert!(
        updated.stderr.contains("1 of 3 orders were not updated"),
        "{}",
        updated.stderr
    );
    let summary: Value = serde_json::from_str(updated.stdout.trim()).unwrap();
    assert_eq!(
        summary["updated_ids"],
        serde_json::json!([o3.as_str(), o4.as_str()])
    );
    assert_eq!(summary["failed"][0]["code"], "NOT_FOUND");
    let o4_now = shop.run(&["order", "get", &o4, "-o", "json"]).json();
    assert_eq!(o4_now["destination"], "Faro");

    // watchOrder prints the order now and again when it is cancelled, then
    // ends by itself because CANCELLED is final.
    let mut watch = Running::spawn(shop.shopctl(&[
        "order",
        "watch",
        &o4,
        "--for",
        "30s",
        "-o",
        "json",
        "--role",
        "customer",
        "--subject",
        "c1",
    ]));
    assert_eq!(watch.next_json()["status"], "CONFIRMED");
    let cancelled = shop
        .run_as_customer(
            "c1",
            &[
                "order",
                "cancel",
                &o4,
                "--reason",
                "changed my mind",
                "-o",
                "json",
            ],
        )
        .json();
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["status_reason"], "changed my mind");
    let change = watch.next_json();
    assert_eq!(
        (&change["id"], &change["status"]),
        (&Value::from(o4.as_str()), &Value::from("CANCELLED"))
    );
    let (code, rest, stderr) = watch.finish();
    assert_eq!((code, rest.as_str()), (Some(0), ""), "{stderr}");

    // processOrders, bidirectional: ids go in on stdin one at a time and
    // each shipment is read while the stream is still open.
    let mut process = Running::spawn(shop.shopctl(&["order", "process", "-o", "json"]));
    process.send("no-such-order");
    let rejected = process.next_json();
    assert_eq!(rejected["status"], "REJECTED");
    assert_eq!(rejected["orders_list"][0]["id"], "no-such-order");
    assert!(!rejected["reason"].as_str().unwrap().is_empty());
    for id in [&o1, &o2, &o3] {
        process.send(id);
    }
    // Three orders for Lisbon are a full batch: shipped before stdin ends.
    let shipment = process.next_json();
    assert_eq!(shipment["status"], "SHIPPED");
    assert_eq!(shipment["destination"], "Lisbon");
    let mut shipped = ids(shipment["orders_list"].as_array().unwrap());
    shipped.sort();
    let mut lisbon_ids = vec![o1.as_str(), o2.as_str(), o3.as_str()];
    lisbon_ids.sort();
    assert_eq!(shipped, lisbon_ids);
    let (code, rest, stderr) = process.finish();
    assert_eq!(code, Some(1), "a rejected id fails the command: {stderr}");
    assert_eq!(rest, "");
    assert!(stderr.contains("1 order id(s) rejected"), "{stderr}");
    let o1_now = shop.run(&["order", "get", &o1, "-o", "json"]).json();
    assert_eq!(o1_now["status"], "SHIPPED");
    assert_eq!(o1_now["shipment_id"], shipment["id"]);

    // Stock moved exactly: 5 - 2 (breakage) - 1 (o1) - 1 (o2); the
    // reservation was given back.
    let mug_now = shop.run(&["product", "get", &mug, "-o", "json"]).json();
    assert_eq!(mug_now["stock"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopctl_registers_logs_in_fills_a_cart_and_checks_out_through_the_storefront() {
    let shop = CliShop::start().await;
    // The storefront's reflection shows its own service, not the order
    // service whose messages it borrows.
    let tls = shop.grpcurl_tls();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    shop_testkit::binary::assert_reflects_only(&shop.storefront.addr, &tls, "ecommerce.Storefront");
    let mug = shop
        .run(&[
            "product", "add", "--name", "Cli Mug", "--price", "12.50", "--stock", "10",
        ])
        .ok()
        .trim()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "a long enough password\n").unwrap();
    let password_file = password_file.display().to_string();

    let session = shop
        .run(&[
            "store",
            "register",
            "--email",
            "ana@example.com",
            "--name",
            "Ana",
            "--password-file",
            &password_file,
            "-o",
            "json",
        ])
        .json();
    assert_eq!(session["user"]["email"], "ana@example.com");
    assert_eq!(session["user"]["name"], "Ana");
    assert_eq!(session["user"]["role"], "customer");
    assert!(!session["token"].as_str().unwrap().is_empty());

    // login with the password on stdin; -o token prints only the token.
    let token = Outcome::of(
        &mut shop.shopctl(&[
            "store",
            "login",
            "--email",
            "ana@example.com",
            "--password-stdin",
            "-o",
            "token",
        ]),
        Some("a long enough password\n"),
    )
    .ok();
    let token = token.trim();
    assert_eq!(token.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let mut login = shop.shopctl(&["store", "login", "--email", "ana@example.com"]);
    login.env("SHOP_PASSWORD", "not the password");
    let wrong = Outcome::of(&mut login, None);
    assert_eq!(wrong.code, Some(1));
    assert!(
        wrong.stderr.starts_with("error: UNAUTHENTICATED: "),
        "{}",
        wrong.stderr
    );

    // The cart acts for whoever SHOP_TOKEN belongs to.
    let as_ana = |args: &[&str]| {
        let mut cmd = shop.shopctl(args);
        cmd.env("SHOP_TOKEN", token);
        Outcome::of(&mut cmd, None)
    };
    let cart = as_ana(&[
        "store",
        "add-to-cart",
        &mug,
        "--quantity",
        "2",
        "-o",
        "json",
    ])
    .json();
    assert_eq!(cart["lines"][0]["product_id"], mug.as_str());
    assert_eq!(cart["lines"][0]["quantity"], 2);
    assert_eq!(cart["total"]["amount"], "25.00");
    let cart = as_ana(&["store", "set-item", &mug, "--quantity", "3", "-o", "json"]).json();
    assert_eq!(cart["lines"][0]["quantity"], 3);
    assert_eq!(cart["total"]["amount"], "37.50");
    assert_eq!(cart["total"]["currency_code"], "USD");
    let table = as_ana(&["store", "cart"]).ok();
    assert!(table.starts_with("PRODUCT"), "{table}");
    assert!(
        table.contains("Cli Mug") && table.contains("37.50 USD"),
        "{table}"
    );

    let order = as_ana(&[
        "store",
        "checkout",
        "--destination",
        "Lisbon",
        "--idempotency-key",
        "run-1",
        "-o",
        "json",
    ])
    .json();
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["destination"], "Lisbon");
    assert_eq!(order["total"]["amount"], "37.50");
    assert_eq!(order["customer"], session["user"]["id"]);
    let cart = as_ana(&["store", "cart", "-o", "json"]).json();
    assert_eq!(cart["lines"], serde_json::json!([]));

    // The storefront's token also works with the order service.
    let id = order["id"].as_str().unwrap();
    let again = as_ana(&["order", "get", id, "-o", "json"]).json();
    assert_eq!(again["total"]["amount"], "37.50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopctl_prints_the_status_code_and_each_violation_and_exits_non_zero() {
    let shop = CliShop::start().await;

    // INVALID_ARGUMENT: one line per field violation.
    let bad = shop.run(&[
        "product",
        "add",
        "--name",
        "Mug",
        "--price",
        "1.005",
        "--currency",
        "USD",
        "--stock",
        "-1",
    ]);
    assert_eq!(bad.code, Some(1), "{bad:#?}");
    assert_eq!(bad.stdout, "");
    let lines: Vec<&str> = bad.stderr.lines().collect();
    assert!(
        lines[0].starts_with("error: INVALID_ARGUMENT: invalid request: "),
        "{}",
        bad.stderr
    );
    assert_eq!(
        &lines[1..],
        [
            "  unit_price: USD amounts have at most 2 decimal places",
            "  stock: must not be negative",
        ]
    );

    // NOT_FOUND.
    let missing = shop.run(&["product", "get", "0190a0a0-0000-7000-8000-000000000000"]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.starts_with("error: NOT_FOUND: "),
        "{}",
        missing.stderr
    );

    // FAILED_PRECONDITION: one PreconditionFailure violation per short product.
    let few = shop
        .run(&[
            "product", "add", "--name", "Rare", "--price", "3", "--stock", "1",
        ])
        .ok();
    let few = few.trim();
    let greedy = format!("{few}=5");
    let short = shop.run_as_customer(
        "c1",
        &["order", "add", "--line", &greedy, "--destination", "Lisbon"],
    );
    assert_eq!(short.code, Some(1), "{short:#?}");
    assert!(
        short.stderr.starts_with("error: FAILED_PRECONDITION: "),
        "{}",
        short.stderr
    );
    assert!(
        short
            .stderr
            .lines()
            .skip(1)
            .any(|l| l.starts_with("  ") && l.contains(few)),
        "{}",
        short.stderr
    );

    // DEADLINE_EXCEEDED: a watch that outlives --for, after printing the
    // order as it is now.
    let one = format!("{few}=1");
    let id = shop
        .run_as_customer(
            "c1",
            &["order", "add", "--line", &one, "--destination", "Lisbon"],
        )
        .ok();
    let watched = shop.run_as_customer(
        "c1",
        &["order", "watch", id.trim(), "--for", "500ms", "-o", "json"],
    );
    assert_eq!(watched.code, Some(1), "{watched:#?}");
    let status: Value = serde_json::from_str(watched.stdout.trim()).unwrap();
    assert_eq!(status["status"], "CONFIRMED");
    assert!(
        watched.stderr.starts_with("error: DEADLINE_EXCEEDED: "),
        "{}",
        watched.stderr
    );

    // A usage error is clap's: exit code 2, nothing called.
    let usage = shop.run(&["product", "add", "--price", "1"]);
    assert_eq!(usage.code, Some(2), "{usage:#?}");
    assert!(usage.stderr.contains("--name"), "{}", usage.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopctl_load_mixes_every_rpc_without_errors_and_spreads_evenly() {
    let shop = CliShop::start().await;
    for n in 0..4 {
        shop.run(&[
            "product",
            "add",
            "--name",
            &format!("Load product {n}"),
            "--description",
            "For the load generator",
            "--price",
            "2.00",
            "--currency",
            "EUR",
            "--stock",
            "1",
        ])
        .ok();
    }

    let report = shop
        .run(&[
            "load",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--concurrency",
            "4",
            "--customers",
            "3",
            "--json",
            "--no-progress",
        ])
        .json();

    assert_eq!(report["errors"], 0, "{report:#}");
    let rpcs = report["rpcs"].as_array().unwrap();
    let rpc = |name: &str| {
        rpcs.iter()
            .find(|r| r["rpc"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {report:#}"))
    };
    for name in ["getProduct", "listProducts", "addOrder", "searchOrders"] {
        let r = rpc(name);
        assert!(r["ok"].as_u64().unwrap() > 0, "{r:#}");
        let (p50, p99, max) = (
            r["p50_us"].as_u64().unwrap(),
            r["p99_us"].as_u64().unwrap(),
            r["max_us"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{r:#}");
    }
    // Stock 1 each was raised (--restock) so every checkout succeeded; each
    // is a real order the admin can find.
    let placed = rpc("addOrder")["ok"].as_u64().unwrap();
    let found = shop
        .run(&["order", "search", "Load Street", "-o", "id"])
        .ok()
        .lines()
        .count() as u64;
    assert_eq!(found, placed);
    // One client, one balancer: strict rotation over both replicas.
    let spread = report["productinfo_spread"].as_array().unwrap();
    assert_eq!(spread.len(), 2, "{report:#}");
    for s in spread {
        let share = s["share"].as_f64().unwrap();
        assert!((share - 0.5).abs() < 0.01, "{report:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopctl_bench_measures_everything_and_writes_the_report() {
    // Debug binaries and one-second runs: this checks the benchmark works
    // end to end, not the figures (`make bench` takes those, release).
    let (out, mut cmd) = own_shop("bench");
    cmd.args([
        "--out",
        &out.path().display().to_string(),
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--concurrency",
        "2",
        "--products",
        "3",
        "--scale",
        "200,400",
    ]);
    let stdout = Outcome::of(&mut cmd, None).ok();
    assert!(stdout.contains("| Target | Goal | Measured |"), "{stdout}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert!(report["pgbench_tps"].as_f64().unwrap() > 0.0, "{report:#}");
    for run in [
        "get_product_max",
        "get_product_half_rate",
        "add_order_max",
        "add_order_fast",
    ] {
        assert!(
            report[run]["throughput"].as_f64().unwrap() > 0.0,
            "{run}: {report:#}"
        );
        assert_eq!(report[run]["errors"], 0, "{run}: {report:#}");
    }
    // CPU per call by process: every group in each run, its parts adding up
    // to `all`; over the three runs, each process that does the work used
    // some (one run alone is short here: a group may see no 10 ms tick).
    let mut used: std::collections::BTreeMap<String, f64> = Default::default();
    for run in ["get_product_max", "add_order_max", "add_order_fast"] {
        let cpu = report[run]["cpu_us_per_call"].as_object().unwrap();
        let mut parts = 0.0;
        for group in [
            "productinfo",
            "order",
            "storefront",
            "postgres",
            "generator",
        ] {
            let v = cpu[group].as_f64().unwrap();
            assert!(v >= 0.0, "{run} {group}: {cpu:#?}");
            parts += v;
            *used.entry(group.into()).or_default() += v;
        }
        let all = cpu["all"].as_f64().unwrap();
        assert!(all > 0.0 && (parts - all).abs() < 1e-6, "{run}: {cpu:#?}");
    }
    for group in ["productinfo", "order", "postgres", "generator"] {
        assert!(used[group] > 0.0, "{group}: {used:?}");
    }
    // The shop ran with mutual TLS, and again in plaintext to compare.
    for run in ["get_product", "add_order"] {
        let plain = &report["plaintext"][run];
        assert!(
            plain["throughput"].as_f64().unwrap() > 0.0,
            "{run}: {report:#}"
        );
        assert_eq!(plain["errors"], 0, "{run}: {report:#}");
    }
    assert!(stdout.contains("What mutual TLS costs"), "{stdout}");
    let plain_idle = report["plaintext"]["rss_idle_kb"].as_array().unwrap();
    assert_eq!(plain_idle.len(), 4, "{report:#}");
    // The scale section grew the tables to each size and timed each call.
    let steps = report["scale"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report:#}");
    for (step, products) in steps.iter().zip([200, 400]) {
        // The generated rows, the five needles and the bench's own products.
        assert!(step["products"].as_u64().unwrap() >= products, "{step:#}");
        assert!(step["orders"].as_u64().unwrap() >= products, "{step:#}");
        for call in [
            "search_hit",
            "search_miss",
            "category_page",
            "get_product",
            "search_orders",
        ] {
            assert!(
                step[call]["p50_us"].as_u64().unwrap() > 0,
                "{call}: {step:#}"
            );
        }
    }
    assert!(report["scale"]["searches_per_s"].as_f64().unwrap() > 0.0);
    assert!(stdout.contains("| Scale: products / orders |"), "{stdout}");
    for service in ["productinfo-1", "order", "storefront"] {
        let log = std::fs::read_to_string(out.path().join(format!("logs/{service}.log"))).unwrap();
        assert!(log.contains("\"tls\":true"), "{service} served TLS: {log}");
    }
    let services = report["services"].as_array().unwrap();
    assert_eq!(services.len(), 4);
    for s in services {
        assert!(s["rss_idle_kb"].as_u64().unwrap() > 0, "{s:#}");
        let anon = s["rss_idle_anon_kb"].as_u64().unwrap();
        assert!(
            anon > 0 && anon < s["rss_idle_kb"].as_u64().unwrap(),
            "{s:#}"
        );
        assert!(s["rss_peak_under_load_kb"].as_u64().unwrap() > 0, "{s:#}");
        assert!(s["start_to_serving_ms"].as_f64().unwrap() > 0.0, "{s:#}");
    }
    // Spread measured on the replicas themselves, for both callers.
    for key in ["spread_get_product", "spread_add_order"] {
        let shares: f64 = report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| pair[1].as_f64().unwrap())
            .sum();
        assert!((shares - 1.0).abs() < 1e-9, "{key}: {report:#}");
    }
    assert!(report["targets"].as_array().unwrap().len() >= 12);
    assert!(out.path().join("report.md").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_calls_every_service_over_mutual_tls() {
    use shop_testkit::binary::{assert_reflects_only, grpcurl};
    let shop = CliShop::start().await;
    let tls = shop.grpcurl_tls();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let call = |flags: &[&str], args: &[&str]| grpcurl(&[flags, args].concat());

    for (addr, service) in [
        (&shop.productinfo[0].addr, "ecommerce.ProductInfo"),
        (&shop.productinfo[1].addr, "ecommerce.ProductInfo"),
        (&shop.order.addr, "ecommerce.OrderManagement"),
        (&shop.storefront.addr, "ecommerce.Storefront"),
    ] {
        assert_reflects_only(addr, &tls, service);
        let health = call(
            &tls,
            &[
                "-d",
                &format!("{{\"service\": \"{service}\"}}"),
                addr,
                "grpc.health.v1.Health/Check",
            ],
        );
        assert!(health.status.success(), "{}", text(&health.stderr));
        assert!(text(&health.stdout).contains("SERVING"));
    }
    // A business call, token and certificate together.
    let customer = format!("authorization: Bearer {}", shop_testkit::customer_token());
    let products = call(
        &tls,
        &[
            "-H",
            &customer,
            "-d",
            "{}",
            &shop.productinfo[0].addr,
            "ecommerce.ProductInfo/listProducts",
        ],
    );
    assert!(products.status.success(), "{}", text(&products.stderr));

    // Plaintext on a TLS port: refused, and told why.
    let plaintext = call(&["-plaintext"], &[&shop.order.addr, "list"]);
    assert!(!plaintext.status.success());
    assert!(
        text(&plaintext.stderr).contains("this port requires TLS"),
        "{}",
        text(&plaintext.stderr)
    );
    // Without a client certificate: the services inside refuse, the
    // storefront (outside clients' door) serves.
    let ca = shop.pki.ca_file().display().to_string();
    let no_cert = call(&["-cacert", &ca], &[&shop.productinfo[0].addr, "list"]);
    assert!(!no_cert.status.success(), "{}", text(&no_cert.stdout));
    let storefront = call(&["-cacert", &ca], &[&shop.storefront.addr, "list"]);
    assert!(storefront.status.success(), "{}", text(&storefront.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopctl_fault_switches_a_fault_on_and_off_in_the_running_shop() {
    let shop = CliShop::start().await;
    let id = shop
        .run(&["product", "add", "--name", "Faulty Mug", "--price", "3.00"])
        .ok()
        .trim()
        .to_owned();
    let faults = shop.faults.display().to_string();
    let fault = |args: &[&str]| {
        let mut cmd = shop_testkit::binary::command(&shopctl_binary(), &[]);
        cmd.args(["fault", "--file", &faults]).args(args);
        Outcome::of(&mut cmd, None)
    };
    // Until a call fails as the flag says (the services read the file every second).
    let get_fails = |expected: bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let outcome = shop.run(&["product", "get", &id]);
            let failed = outcome.code != Some(0);
            if failed == expected {
                return outcome;
            }
            assert!(std::time::Instant::now() < deadline, "{outcome:#?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    let set = fault(&[
        "set",
        "productinfo",
        "getProduct",
        "--error-rate",
        "1",
        "--code",
        "INTERNAL",
    ])
    .ok();
    assert!(set.contains("getProduct: 100% fail INTERNAL"), "{set}");
    let failed = get_fails(true);
    assert!(failed.stderr.contains("INTERNAL"), "{failed:#?}");
    assert!(failed.stderr.contains("fault injected"), "{failed:#?}");
    assert!(
        fault(&["list"])
            .ok()
            .contains("productinfo  getProduct: 100% fail INTERNAL")
    );

    assert_eq!(fault(&["clear"]).ok().trim(), "");
    get_fails(false);
    // A flag nobody understands is refused, and the file left as it was.
    let bad = fault(&["set", "productinfo"]);
    assert_eq!(bad.code, Some(1), "{bad:#?}");
    assert_eq!(fault(&["list"]).ok().trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_loses_nothing_and_keeps_every_fault_within_its_budget() {
    // `make chaos` in short: one pass of each fault, a few seconds of load
    // each, debug binaries. It exits non-zero on any violation.
    let (out, mut cmd) = own_shop("chaos");
    cmd.args([
        "--short",
        "--out",
        &out.path().join("chaos").display().to_string(),
    ]);
    let stdout = Outcome::of(&mut cmd, None).ok();
    assert!(
        stdout.contains("nothing lost, nothing duplicated"),
        "{stdout}"
    );
    for fault in [
        "SIGKILL one of two productinfo",
        "SIGKILL one of two order",
        "PostgreSQL fast restart",
        "SIGTERM (drain)",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(fault) && l.ends_with("| met |")),
            "{fault}: {stdout}"
        );
    }
}
