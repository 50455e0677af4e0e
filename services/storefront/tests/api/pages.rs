//! The web pages, through a real HTTP client keeping cookies like a browser.

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Shop};

#[tokio::test]
async fn the_catalog_lists_searches_pages_and_escapes() {
    let shop = Shop::start().await;
    for i in 1..=13 {
        shop.add_product(&format!("Kettle {i:02}"), 1000 + i, 5)
            .await;
    }
    shop.add_product("Green tea", 499, 5).await;
    shop.add_product("<script>alert(1)</script> & co", 100, 5)
        .await;
    let visitor = shop.visitor();

    let first = visitor.get("/").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.matches("class=\"card\"").count(), 12);
    assert!(
        first
            .body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; co"),
        "escaped: {}",
        first.body
    );
    assert!(!first.body.contains("<script>alert(1)"));
    let next_marker = "href=\"/?page=";
    let at = first.body.find(next_marker).expect("a next-page link") + "href=\"".len();
    let next = &first.body[at..at + first.body[at..].find('"').unwrap()];
    let second = visitor.get(&next.replace("&amp;", "&")).await;
    assert_eq!(second.body.matches("class=\"card\"").count(), 3);

    let search = visitor.get("/?q=tea").await;
    assert_eq!(search.body.matches("class=\"card\"").count(), 1);
    assert!(search.body.contains("Green tea"));
    assert!(search.body.contains("12.00 USD") || search.body.contains("4.99 USD"));

    let broken = visitor.get("/?page=not-a-token").await;
    assert_eq!(broken.status, 303, "a bad page token starts over");
    assert_eq!(visitor.get("/no/such/page").await.status, 404);
}

#[tokio::test]
async fn pages_carry_security_headers_and_a_private_session_cookie() {
    let shop = Shop::start().await;
    let page = shop.visitor().get("/").await;

    let header = |name: &str| {
        page.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(header("content-security-policy").contains("script-src 'self'"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    let cookie = header("set-cookie");
    assert!(cookie.starts_with("sid="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"));

    let secure = Shop::start_with(|c| c.service.cookie_secure = true).await;
    let cookie = secure.visitor().get("/").await.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with("__Host-sid=") && cookie.contains("Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let visitor = shop.visitor();
    let token = visitor.get("/").await.csrf();

    let missing = visitor
        .post("/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    assert_eq!(missing.status, 403);
    let forged = visitor
        .post(
            "/cart/add",
            &[("_csrf", "forged"), ("product_id", &mug), ("quantity", "1")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let cart = visitor.get("/cart").await;
    assert!(cart.body.contains("Your cart is empty"));

    let ok = visitor
        .post(
            "/cart/add",
            &[("_csrf", &token), ("product_id", &mug), ("quantity", "1")],
        )
        .await;
    assert_eq!(ok.status, 303);
    assert!(
        !visitor
            .get("/cart")
            .await
            .body
            .contains("Your cart is empty")
    );

    // Another visitor's token is no good either.
    let other = shop.visitor();
    other.get("/").await;
    let stolen = other
        .post(
            "/cart/add",
            &[("_csrf", &token), ("product_id", &mug), ("quantity", "1")],
        )
        .await;
    assert_eq!(stolen.status, 403);
}

#[tokio::test]
async fn the_cart_adds_changes_and_removes_lines_with_exact_totals() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let tea = shop.add_product("Tea", 399, 5).await;
    let visitor = shop.visitor();

    for (id, qty) in [(&mug, "1"), (&tea, "2"), (&mug, "1")] {
        let page = visitor
            .submit("/", "/cart/add", &[("product_id", id), ("quantity", qty)])
            .await;
        assert_eq!(page.status, 303);
    }
    let cart = visitor.get("/cart").await;
    assert_eq!(cart.testid("line-total-Mug").as_deref(), Some("25.00 USD"));
    assert_eq!(cart.testid("line-total-Tea").as_deref(), Some("7.98 USD"));
    assert_eq!(cart.testid("cart-total").as_deref(), Some("32.98 USD"));
    assert_eq!(cart.testid("cart-count").as_deref(), Some("4"));

    visitor
        .submit(
            "/cart",
            "/cart/update",
            &[("product_id", &tea), ("quantity", "3")],
        )
        .await;
    assert_eq!(
        visitor.get("/cart").await.testid("cart-total").as_deref(),
        Some("36.97 USD")
    );
    visitor
        .submit(
            "/cart",
            "/cart/update",
            &[("product_id", &mug), ("quantity", "0")],
        )
        .await;
    let cart = visitor.get("/cart").await;
    assert!(!cart.body.contains(">Mug<"));
    assert_eq!(cart.testid("cart-total").as_deref(), Some("11.97 USD"));

    let bad = visitor
        .submit(
            "/cart",
            "/cart/update",
            &[("product_id", &tea), ("quantity", "1000")],
        )
        .await;
    assert_eq!(bad.status, 422);
}

#[tokio::test]
async fn logging_in_rotates_the_session_and_merges_the_anonymous_cart() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let tea = shop.add_product("Tea", 399, 5).await;
    let visitor = shop.visitor();
    visitor.get("/").await;
    visitor.register("ana@example.com").await;
    visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    visitor.submit("/", "/logout", &[]).await;

    // Shopping anonymously, then logging in.
    visitor
        .submit("/", "/cart/add", &[("product_id", &tea), ("quantity", "2")])
        .await;
    visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    let before = visitor.cookie("sid").unwrap();
    let login = visitor
        .login("ana@example.com", "a long enough password")
        .await;
    assert_eq!(login.status, 303, "{}", login.body);
    let after = visitor.cookie("sid").unwrap();
    assert_ne!(before, after, "a new session id at login");

    let cart = visitor.get("/cart").await;
    assert!(
        cart.body
            .contains("value=\"2\" min=\"0\" max=\"99\" aria-label=\"Quantity of Mug\""),
        "1 + 1 mugs"
    );
    assert!(
        cart.body
            .contains("value=\"2\" min=\"0\" max=\"99\" aria-label=\"Quantity of Tea\"")
    );

    // The anonymous session and its cart are gone.
    let db = shop.storefront_db().await;
    let anonymous_carts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM carts WHERE session_hash IS NOT NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(anonymous_carts, 0);
}

#[tokio::test]
async fn login_failures_look_the_same_and_are_rate_limited() {
    let shop = Shop::start().await;
    let visitor = shop.visitor();
    visitor.get("/").await;
    visitor.register("bob@example.com").await;
    visitor.submit("/", "/logout", &[]).await;

    let unknown = visitor
        .login("nobody@example.com", "whatever password")
        .await;
    let wrong = visitor.login("bob@example.com", "wrong password!!").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.status, 401);
    assert_eq!(
        unknown.testid("login-problem"),
        wrong.testid("login-problem")
    );
    assert_eq!(
        wrong.testid("login-problem").as_deref(),
        Some("Wrong email or password.")
    );

    for _ in 0..4 {
        visitor.login("bob@example.com", "wrong password!!").await;
    }
    let locked = visitor
        .login("bob@example.com", "a long enough password")
        .await;
    assert_eq!(locked.status, 429, "even the right password waits");
    assert!(
        locked.body.contains("too many failed logins")
            || locked.body.contains("Too many failed logins")
    );
}

#[tokio::test]
async fn checkout_places_the_order_empties_the_cart_and_lists_it() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let visitor = shop.visitor();
    visitor.get("/").await;
    visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "2")])
        .await;

    let checkout = visitor.get("/checkout").await;
    assert_eq!(checkout.status, 303, "log in first");
    assert!(
        checkout.location().starts_with("/login?next=%2Fcheckout")
            || checkout.location().starts_with("/login?next=/checkout")
    );
    visitor.register("cy@example.com").await;

    let form = visitor.get("/checkout").await;
    assert_eq!(form.status, 200);
    let key_marker = "name=\"idempotency_key\" value=\"";
    let at = form.body.find(key_marker).unwrap() + key_marker.len();
    let key = form.body[at..at + 36].to_owned();
    let fields = [
        ("_csrf", form.csrf()),
        ("destination", "1 Main St, Lisbon".into()),
        ("idempotency_key", key),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let placed = visitor.post("/checkout", &fields).await;
    assert_eq!(placed.status, 303, "{}", placed.body);
    let again = visitor.post("/checkout", &fields).await;
    assert!(
        again.status == 303 || again.status == 422,
        "a double submit places nothing new"
    );

    let order = visitor.get(&placed.location()).await;
    assert_eq!(order.testid("order-status").as_deref(), Some("Confirmed"));
    assert!(order.testid("confirmation").is_some() || order.body.contains("Thank you"));
    assert!(
        visitor
            .get("/cart")
            .await
            .body
            .contains("Your cart is empty")
    );
    let orders = visitor.get("/orders").await;
    assert!(orders.body.contains("2 × Mug"));
    assert!(orders.body.contains("25.00 USD"));
}

#[tokio::test]
async fn a_person_follows_at_most_five_orders_live_and_the_sixth_page_gets_429() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let visitor = shop.visitor();
    visitor.register("live@example.com").await;
    visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    let form = visitor.get("/checkout").await;
    let key_marker = "name=\"idempotency_key\" value=\"";
    let at = form.body.find(key_marker).unwrap() + key_marker.len();
    let placed = visitor
        .post(
            "/checkout",
            &[
                ("_csrf", &form.csrf()),
                ("destination", "Home"),
                ("idempotency_key", &form.body[at..at + 36]),
            ],
        )
        .await;
    let events = format!("{}/events", placed.location().split('?').next().unwrap());

    let mut live = Vec::new();
    for _ in 0..5 {
        let stream = visitor.open(&events).await;
        assert_eq!(stream.status(), 200);
        live.push(stream);
    }
    let sixth = visitor.open(&events).await;

    assert_eq!(sixth.status(), 429);
    drop(live);
}

#[tokio::test]
async fn admins_manage_the_catalog_and_ship_orders_customers_may_not() {
    let shop = Shop::start().await;
    let customer = shop.visitor();
    customer.get("/").await;
    customer.register("dan@example.com").await;
    assert_eq!(customer.get("/admin").await.status, 403);
    let sneaky = customer
        .submit(
            "/",
            "/admin/products",
            &[
                ("name", "Free stuff"),
                ("price", "0"),
                ("currency", "USD"),
                ("stock", "1"),
            ],
        )
        .await;
    assert_eq!(sneaky.status, 403);

    let admin = shop.visitor();
    admin.get("/").await;
    assert_eq!(admin.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status, 303);
    let bad = admin
        .submit(
            "/admin",
            "/admin/products",
            &[
                ("name", "Teapot"),
                ("price", "12,5"),
                ("currency", "USD"),
                ("stock", "3"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("write the price like 12.50"));
    let unknown_currency = admin
        .submit(
            "/admin",
            "/admin/products",
            &[
                ("name", "Teapot"),
                ("price", "12.5"),
                ("currency", "ZZZ"),
                ("stock", "3"),
            ],
        )
        .await;
    assert_eq!(unknown_currency.status, 422);
    assert!(unknown_currency.body.contains("unknown currency code"));
    let added = admin
        .submit(
            "/admin",
            "/admin/products",
            &[
                ("name", "Teapot"),
                ("description", "Cast iron"),
                ("price", "39.50"),
                ("currency", "USD"),
                ("stock", "3"),
                ("category", "Kitchen"),
            ],
        )
        .await;
    assert_eq!(added.status, 303);
    let catalog = customer.get("/?q=teapot").await;
    assert!(catalog.body.contains("Teapot") && catalog.body.contains("39.50 USD"));

    // The customer buys it; the admin ships it.
    let at = catalog.body.find("href=\"/products/").unwrap() + "href=\"/products/".len();
    let teapot = catalog.body[at..at + 36].to_owned();
    customer
        .submit(
            "/",
            "/cart/add",
            &[("product_id", &teapot), ("quantity", "1")],
        )
        .await;
    let form = customer.get("/checkout").await;
    let key_marker = "name=\"idempotency_key\" value=\"";
    let k = form.body.find(key_marker).unwrap() + key_marker.len();
    let placed = customer
        .post(
            "/checkout",
            &[
                ("_csrf", &form.csrf()),
                ("destination", "Oslo"),
                ("idempotency_key", &form.body[k..k + 36]),
            ],
        )
        .await;
    let order_id = placed
        .location()
        .trim_start_matches("/orders/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let orders = admin.get("/admin/orders").await;
    assert!(orders.body.contains(&order_id));
    let shipped = admin
        .submit("/admin/orders", "/admin/orders/ship", &[("id", &order_id)])
        .await;
    assert_eq!(shipped.status, 200);
    assert!(shipped.body.contains("SHIPPED"), "{}", shipped.body);
    assert_eq!(
        customer
            .get(&format!("/orders/{order_id}"))
            .await
            .testid("order-status")
            .as_deref(),
        Some("Shipped")
    );

    let restock = admin
        .submit(
            "/admin",
            &format!("/admin/products/{teapot}/stock"),
            &[("delta", "-100"), ("reason", "oops")],
        )
        .await;
    assert_eq!(restock.status, 422, "stock never goes negative");
    let restock = admin
        .submit(
            "/admin",
            &format!("/admin/products/{teapot}/stock"),
            &[("delta", "5"), ("reason", "delivery")],
        )
        .await;
    assert_eq!(restock.status, 303);
}

#[tokio::test]
async fn a_product_that_does_not_track_stock_is_for_sale() {
    let shop = Shop::start().await;
    // As the book's addProduct adds it: no stock field.
    let poster = shop_proto::ecommerce::Product {
        stock: None,
        ..shop_testkit::product("Poster", 950, 0)
    };
    let id = shop_testkit::add_product(shop.productinfo.channel.clone(), poster).await;
    let visitor = shop.visitor();

    let catalog = visitor.get("/").await;
    assert!(catalog.body.contains("data-testid=\"add-Poster\""));
    assert!(!catalog.body.contains("Out of stock"));
    let page = visitor.get(&format!("/products/{id}")).await;
    assert!(page.body.contains("In stock"), "{}", page.body);
    let added = visitor
        .submit("/", "/cart/add", &[("product_id", &id), ("quantity", "50")])
        .await;
    assert_eq!(added.status, 303);
    let cart = visitor.get("/cart").await;
    assert!(!cart.body.contains("class=\"warn\""), "no shortage shown");
    assert_eq!(
        cart.testid("line-total-Poster").as_deref(),
        Some("475.00 USD")
    );
}
