//! The whole shop in a real browser: headless Chromium driven through
//! chromedriver (both from Debian's packages, installed by `make tools`).
//! Screenshots of each step are kept in target/browser-screenshots.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Shop, screenshot_dir};

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let path = std::env::var("CHROMEDRIVER_BIN").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "chromedriver not found at {path}: run `make tools` (installs Debian's chromium and chromium-driver)"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    }
}

/// A headless Chromium session (its own profile, no background traffic).
async fn browser(driver: &Driver) -> Client {
    let profile = tempfile::tempdir().unwrap().keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.port);
    // chromedriver takes a moment to listen: retry the session briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no browser session: {e}"),
        }
    }
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

async fn fill(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    for _ in 0..STALE_RETRIES {
        let element = match client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => {
                // Say what the page was instead, so a failure explains itself.
                let url = client.current_url().await.map(|u| u.to_string());
                let source = client.source().await.unwrap_or_default();
                let text: String = source.chars().take(3000).collect();
                panic!("{css} not found ({e}) on {url:?}:\n{text}");
            }
        };
        // A submit button leads to a new page: mark this one, and once the
        // click is done wait until the mark is gone and the new page has
        // loaded, so what follows reads the page the click led to.
        let submits = element.attr("type").await.ok().flatten().as_deref() == Some("submit");
        if submits {
            client
                .execute("window.__shopOldPage = true; return true;", vec![])
                .await
                .unwrap();
        }
        match element.click().await {
            Err(e) if e.is_stale_element_reference() => continue,
            result => result.unwrap(),
        }
        if submits {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let loaded = client
                    .execute(
                        "return window.__shopOldPage === undefined && document.readyState === 'complete';",
                        vec![],
                    )
                    .await
                    .map(|v| v == serde_json::Value::Bool(true))
                    .unwrap_or(false);
                if loaded {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "clicking {css} led to no new page within 10 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        return;
    }
    panic!("{css} kept being replaced before it could be clicked");
}

/// Waits (at most 10 s) until the text of `css` is `expected`, and says
/// what it was otherwise: a click that submits a form returns before the
/// page it leads to has loaded, so the old page may still be read.
async fn await_text(client: &Client, css: &str, expected: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = text(client, css).await;
        if now == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} reads {now:?}, not {expected:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The text of `css`, once it is there.
async fn text(client: &Client, css: &str) -> String {
    for _ in 0..STALE_RETRIES {
        let element = client.wait().for_element(Locator::Css(css)).await.unwrap();
        match element.text().await {
            Err(e) if e.is_stale_element_reference() => continue,
            result => return result.unwrap(),
        }
    }
    panic!("{css} kept being replaced before its text could be read");
}

/// How often an element is found again when the page replaced it between
/// finding and using it (the live order status re-renders as it changes).
const STALE_RETRIES: usize = 20;

// Multi-threaded: the browser's requests are served by in-process servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_shops_end_to_end_and_an_admin_ships_the_order() {
    let shop = Shop::start().await;
    shop.add_product("Ceramic Mug", 1250, 20).await;
    shop.add_product("Green Tea", 399, 20).await;
    shop.add_product("Wall Clock", 3900, 20).await;
    let driver = chromedriver();
    let customer = browser(&driver).await;
    let base = shop.url();

    // Register.
    customer.goto(&format!("{base}/register")).await.unwrap();
    fill(&customer, "input[name=name]", "Gina").await;
    fill(&customer, "input[name=email]", "gina@example.com").await;
    fill(&customer, "input[name=password]", "a long enough password").await;
    shot(&customer, "01-register").await;
    click(&customer, "form.stack button[type=submit]").await;
    assert!(
        text(&customer, ".notice")
            .await
            .contains("Your account is ready")
    );

    // Search, add two products.
    fill(&customer, "header input[name=q]", "tea").await;
    click(&customer, "header form.search button").await;
    shot(&customer, "02-search").await;
    click(&customer, "[data-testid='add-Green Tea']").await;
    // The form's answer must have come back before the next page is asked for.
    await_text(&customer, "[data-testid=cart-count]", "1").await;
    customer.goto(&format!("{base}/")).await.unwrap();
    click(&customer, "[data-testid='add-Ceramic Mug']").await;
    await_text(&customer, "[data-testid=cart-count]", "2").await;

    // Change a quantity.
    customer.goto(&format!("{base}/cart")).await.unwrap();
    fill(&customer, "[data-testid='qty-Ceramic Mug']", "3").await;
    click(&customer, "tr[data-product='Ceramic Mug'] form.qty button").await;
    assert_eq!(
        text(&customer, "[data-testid=cart-total]").await,
        "41.49 USD"
    );
    shot(&customer, "03-cart").await;

    // Check out.
    click(&customer, "[data-testid=checkout]").await;
    fill(
        &customer,
        "textarea[name=destination]",
        "Rua Augusta 1, Lisbon",
    )
    .await;
    shot(&customer, "04-checkout").await;
    click(&customer, "[data-testid=place-order]").await;
    assert!(
        text(&customer, "[data-testid=confirmation]")
            .await
            .contains("Thank you")
    );
    assert_eq!(
        text(&customer, "[data-testid=order-status]").await,
        "Confirmed"
    );
    shot(&customer, "05-confirmation").await;

    // An admin, in another browser, adds a product and ships the order.
    let admin = browser(&driver).await;
    admin.goto(&format!("{base}/login")).await.unwrap();
    fill(&admin, "input[name=email]", ADMIN_EMAIL).await;
    fill(&admin, "input[name=password]", ADMIN_PASSWORD).await;
    click(&admin, "form.stack button[type=submit]").await;
    // The login lands (its page says so) before the next page is asked for.
    assert!(text(&admin, ".notice").await.contains("Welcome back"));
    admin.goto(&format!("{base}/admin")).await.unwrap();
    fill(
        &admin,
        "[data-testid=add-product] input[name=name]",
        "Brass Teapot",
    )
    .await;
    fill(
        &admin,
        "[data-testid=add-product] input[name=price]",
        "58.00",
    )
    .await;
    fill(
        &admin,
        "[data-testid=add-product] input[name=category]",
        "kitchen",
    )
    .await;
    click(&admin, "[data-testid=add-product] button[type=submit]").await;
    assert!(text(&admin, ".notice").await.contains("Product added"));
    admin.goto(&format!("{base}/admin/orders")).await.unwrap();
    shot(&admin, "06-admin-orders").await;
    click(&admin, "input[type=checkbox][name=id]").await;
    click(&admin, "[data-testid=ship-selected]").await;
    assert!(
        text(&admin, "[data-testid=shipments]")
            .await
            .contains("SHIPPED")
    );

    // The customer's page changes by itself (server-sent events).
    customer
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(
            "//*[@data-testid='order-status' and text()='Shipped']",
        ))
        .await
        .expect("the order page shows Shipped without a reload");
    shot(&customer, "07-shipped-live").await;

    // A visitor sees the new product.
    let visitor = browser(&driver).await;
    visitor.goto(&format!("{base}/?q=teapot")).await.unwrap();
    assert!(
        text(&visitor, "[data-testid=products]")
            .await
            .contains("Brass Teapot")
    );

    // A form post without the CSRF token is refused.
    let status = visitor
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/cart/add', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'},
                                 body: 'product_id=00000000-0000-0000-0000-000000000000&quantity=1'})
               .then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));

    // Readable on a phone: no sideways scrolling.
    visitor.set_window_size(390, 844).await.unwrap();
    visitor.goto(&format!("{base}/")).await.unwrap();
    let overflow = visitor
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(false));
    shot(&visitor, "08-phone").await;

    customer.close().await.unwrap();
    admin.close().await.unwrap();
    visitor.close().await.unwrap();
}
