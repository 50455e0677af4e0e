//! Hostile visitors: redirects, raced and distributed password guesses,
//! registration floods, visitors who only read, carts grown without end,
//! and the first admin's email taken by someone else.

use std::{sync::Arc, time::Duration};

use shop_proto::ecommerce::{
    CartItemRequest, LoginRequest, RegisterRequest, storefront_client::StorefrontClient,
};
use shop_testkit::{
    bearer,
    binary::{command, text},
    keys, services,
};
use tonic::Code;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Shop};

const BIN: &str = env!("CARGO_BIN_EXE_storefront");

#[tokio::test]
async fn hostile_next_values_never_leave_the_shop() {
    let shop = Shop::start().await;
    let visitor = shop.visitor();
    visitor.get("/").await;
    visitor.register("ana@example.com").await;

    for (next, to) in [
        ("/orders", "/orders"),
        ("%2Forders%3Fnotice%3Dx", "/orders?notice=x"),
        ("/%09/evil.example", "/"),
        ("/%0A/evil.example", "/"),
        ("/%0D/evil.example", "/"),
        ("%09//evil.example", "/"),
        ("%20//evil.example", "/"),
        ("/%5C/evil.example", "/"),
        ("%5C%5Cevil.example", "/"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/%252F/evil.example", "/"),
        ("/%25%30%39/evil.example", "/"),
    ] {
        // Logged in, the login page sends you on at once.
        let page = visitor.get(&format!("/login?next={next}")).await;
        assert_eq!(page.status, 303, "{next}");
        assert_eq!(page.location(), to, "next={next}");
    }
}

#[tokio::test]
async fn visitors_who_change_nothing_store_nothing_and_a_first_cart_line_stores_one_session() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let db = shop.storefront_db().await;
    let sessions = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions")
            .fetch_one(&db)
            .await
            .unwrap()
    };

    for i in 0..100 {
        let visitor = shop.visitor();
        let path = if i % 2 == 0 { "/" } else { "/nope" };
        let page = visitor.get(path).await;
        assert!(page.status == 200 || page.status == 404);
        assert!(
            page.headers.contains_key("set-cookie"),
            "a cookie, for forms"
        );
        if page.status == 200 {
            assert!(!page.csrf().is_empty(), "forms carry a token");
        }
    }
    assert_eq!(sessions().await, 0, "200 cookieless reads stored nothing");

    let visitor = shop.visitor();
    visitor.get("/").await;
    let added = visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    assert_eq!(sessions().await, 1);
    visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    assert_eq!(sessions().await, 1, "the same session, kept");
    assert!(visitor.get("/cart").await.body.contains("Mug"));
}

#[tokio::test]
async fn carts_take_catalog_products_only_and_at_most_a_hundred() {
    let shop = Shop::start().await;
    let mug = shop.add_product("Mug", 1250, 5).await;
    let tea = shop.add_product("Tea", 399, 5).await;
    let visitor = shop.visitor();
    visitor.get("/").await;

    let unknown = uuid::Uuid::new_v4().to_string();
    let refused = visitor
        .submit(
            "/",
            "/cart/add",
            &[("product_id", &unknown), ("quantity", "1")],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("not in the catalog"));
    let db = shop.storefront_db().await;
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM cart_items")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    assert_eq!(rows().await, 0);

    visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    // 99 more lines, straight into the cart: 100 in all.
    sqlx::query(
        "INSERT INTO cart_items (cart_id, product_id, quantity) \
         SELECT cart_id, gen_random_uuid(), 1 FROM cart_items, generate_series(1, 99)",
    )
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(rows().await, 100);
    let full = visitor
        .submit("/", "/cart/add", &[("product_id", &tea), ("quantity", "1")])
        .await;
    assert_eq!(full.status, 422, "{}", full.body);
    assert!(full.body.contains("100 different products"));
    let more_mugs = visitor
        .submit("/", "/cart/add", &[("product_id", &mug), ("quantity", "1")])
        .await;
    assert_eq!(more_mugs.status, 303, "a line already there still changes");
    assert_eq!(rows().await, 100);

    // The same over gRPC.
    let session = StorefrontClient::new(shop.storefront.channel.clone())
        .register(RegisterRequest {
            email: "gia@example.com".into(),
            password: "a long enough password".into(),
            name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut gia =
        StorefrontClient::with_interceptor(shop.storefront.channel.clone(), bearer(&session.token));
    let status = gia
        .set_cart_item(CartItemRequest {
            product_id: unknown,
            quantity: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

/// A visitor behind the test's "proxy" (127.0.0.1, trusted) claiming to be
/// `address`.
fn from(shop: &Shop, address: &str) -> shop_testkit::web::Web {
    let visitor = shop.visitor();
    visitor.set_header("x-forwarded-for", address);
    visitor
}

#[tokio::test]
async fn a_guesser_is_stopped_but_the_owner_elsewhere_still_logs_in() {
    let shop = Shop::start_with(|c| {
        c.service.trusted_proxies = "127.0.0.1/32".parse().unwrap();
    })
    .await;
    let owner = from(&shop, "198.51.100.1");
    owner.get("/").await;
    owner.register("dee@example.com").await;
    owner.submit("/", "/logout", &[]).await;

    let guesser = from(&shop, "203.0.113.66");
    for _ in 0..5 {
        let wrong = guesser.login("dee@example.com", "not her password").await;
        assert_eq!(wrong.status, 401);
    }
    let stopped = guesser
        .login("dee@example.com", "a long enough password")
        .await;
    assert_eq!(stopped.status, 429, "that client is done for this email");
    assert!(stopped.headers.contains_key("retry-after"));

    // The owner, elsewhere, waits a little (five failures: one second) and
    // is in.
    let started = std::time::Instant::now();
    let in_ = owner
        .login("dee@example.com", "a long enough password")
        .await;
    assert_eq!(in_.status, 303, "{}", in_.body);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(10));

    // A spoofed header from a peer that is no proxy is ignored: the peer
    // itself is the client.
    let direct = Shop::start().await;
    let spoofer = direct.visitor();
    spoofer.get("/").await;
    for i in 0..5 {
        spoofer.set_header("x-forwarded-for", &format!("192.0.2.{i}"));
        spoofer.login("eve@example.com", "some guess here").await;
    }
    spoofer.set_header("x-forwarded-for", "192.0.2.99");
    let still = spoofer.login("eve@example.com", "another guess!!").await;
    assert_eq!(still.status, 429, "a new header is not a new client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_are_counted_before_any_is_checked() {
    let shop = Shop::start().await;
    let visitor = Arc::new(shop.visitor());
    visitor.get("/").await;
    let verify = "shop_password_hashes_total{op=\"verify\"}";
    let before = shop_testkit::metric(shop.storefront.metrics_addr, verify).await;

    let guesses = (0..20).map(|i| {
        let visitor = visitor.clone();
        tokio::spawn(async move {
            visitor
                .login("fox@example.com", &format!("guess number {i:02}"))
                .await
                .status
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let checked = shop_testkit::metric(shop.storefront.metrics_addr, verify).await - before;
    assert_eq!(checked, 5.0, "five guesses were checked: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15);
}

#[tokio::test]
async fn registrations_are_limited_per_client_on_the_web_and_over_grpc() {
    let shop = Shop::start().await;
    for i in 0..10 {
        let visitor = shop.visitor();
        visitor.get("/").await;
        visitor.register(&format!("new{i}@example.com")).await;
    }
    let eleventh = shop.visitor();
    let page = eleventh
        .submit(
            "/register",
            "/register",
            &[
                ("email", "new10@example.com"),
                ("password", "a long enough password"),
                ("next", "/"),
            ],
        )
        .await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(
        page.body.contains("too many new accounts") || page.body.contains("Too many new accounts")
    );

    let status = StorefrontClient::new(shop.storefront.channel.clone())
        .register(RegisterRequest {
            email: "grpc@example.com".into(),
            password: "a long enough password".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn grpc_logins_are_limited_too_and_their_tokens_last_an_hour() {
    let shop = Shop::start().await;
    let mut client = StorefrontClient::new(shop.storefront.channel.clone());
    let session = client
        .login(LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let lasts = session.expire_time.unwrap().seconds - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&lasts), "{lasts} s");

    for _ in 0..5 {
        let status = client
            .login(LoginRequest {
                email: ADMIN_EMAIL.into(),
                password: "wrong password!!".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = client
        .login(LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn pages_are_never_cached_and_secure_shops_ask_for_https_only() {
    let shop = Shop::start().await;
    let page = shop.visitor().get("/").await;
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(!page.headers.contains_key("strict-transport-security"));

    let secure = Shop::start_with(|c| c.service.cookie_secure = true).await;
    let page = secure.visitor().get("/").await;
    assert_eq!(
        page.headers["strict-transport-security"],
        "max-age=31536000"
    );
}

#[tokio::test]
async fn a_session_ends_at_its_longest_lifetime_however_much_it_is_used() {
    let shop = Shop::start().await;
    let visitor = shop.visitor();
    visitor.get("/").await;
    visitor.register("hal@example.com").await;
    assert!(visitor.get("/orders").await.status == 200);

    // Started eight days ago: past the seven-day lifetime. Its expiry is
    // pushed out only up to that bound.
    let db = shop.storefront_db().await;
    sqlx::query(
        "UPDATE sessions SET created_at = now() - interval '8 days', \
         expires_at = now() + interval '1 minute'",
    )
    .execute(&db)
    .await
    .unwrap();
    visitor.get("/").await;
    let expires_in: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM expires_at - now())::float8 FROM sessions")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        expires_in <= 60.0,
        "not extended past the lifetime: {expires_in}"
    );
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    let page = visitor.get("/orders").await;
    assert_eq!(page.status, 303, "logged out");
    assert!(page.location().starts_with("/login"));
}

/// `storefront serve` on `database` with `ADMIN_EMAIL` and a password file.
fn admin_env(database: &str, password_file: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database.to_owned()),
        ("MIGRATE_ON_START", "true".to_owned()),
        ("TRUSTED_ISSUERS", keys().storefront_trusts.clone()),
        ("PRODUCTINFO_TARGET", "127.0.0.1:9".to_owned()),
        ("ORDER_TARGET", "127.0.0.1:9".to_owned()),
        (
            "SIGNING_KEY_FILE",
            keys().storefront_key.display().to_string(),
        ),
        ("ADMIN_EMAIL", "ops@example.org".to_owned()),
        ("ADMIN_PASSWORD_FILE", password_file.to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("HTTP_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("METRICS_ADDR", "off".to_owned()),
        ("LOG_FORMAT", "text".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_email_never_promotes_an_account_someone_registered() {
    let database = shop_testkit::fresh_database("storefront").await;
    let first = services::storefront_with(services::storefront_config(
        database.clone(),
        "127.0.0.1:9",
        "127.0.0.1:9",
    ))
    .await;
    StorefrontClient::new(first.channel.clone())
        .register(RegisterRequest {
            email: "ops@example.org".into(),
            password: "the squatter's password".into(),
            name: String::new(),
        })
        .await
        .unwrap();
    first.stop().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("admin-password");
    std::fs::write(&password_file, "the operator's password").unwrap();
    let env = admin_env(&database, &password_file.display().to_string());
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            command(BIN, &env).arg("serve").output().unwrap()
        }),
    )
    .await
    .expect("it stops by itself")
    .unwrap();

    assert!(!out.status.success());
    let said = text(&out.stderr) + &text(&out.stdout);
    assert!(
        said.contains("ADMIN_EMAIL ops@example.org belongs to an account someone registered"),
        "{said}"
    );
    let db = sqlx::PgPool::connect(&database).await.unwrap();
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE email = 'ops@example.org'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(role, "customer");
}

#[tokio::test]
async fn a_new_admin_password_takes_effect_at_the_next_start_and_ends_old_sessions() {
    let database = shop_testkit::fresh_database("storefront").await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("admin-password");
    let start = |password: &str| {
        std::fs::write(&password_file, password).unwrap();
        let mut config =
            services::storefront_config(database.clone(), "127.0.0.1:9", "127.0.0.1:9");
        config.service.admin_email = Some("ops@example.org".into());
        config.service.admin_password_file = Some(password_file.clone());
        services::storefront_with(config)
    };
    let login = |running: &services::Running, password: &str| {
        let mut client = StorefrontClient::new(running.channel.clone());
        let request = LoginRequest {
            email: "ops@example.org".into(),
            password: password.into(),
        };
        async move { client.login(request).await.map(|r| r.into_inner()) }
    };

    let first = start("the first admin password").await;
    let session = login(&first, "the first admin password").await.unwrap();
    assert_eq!(session.user.unwrap().role, "admin");
    let web = shop_testkit::web::Web::new(&format!("http://{}", first.http_addr.unwrap()));
    web.get("/").await;
    let page = web
        .login("ops@example.org", "the first admin password")
        .await;
    assert_eq!(page.status, 303);
    // Logged in, the login page sends you on.
    assert_eq!(web.get("/login?next=/x").await.status, 303);
    first.stop().await.unwrap();

    let second = start("the rotated admin password").await;
    let old = login(&second, "the first admin password")
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated);
    let new = login(&second, "the rotated admin password").await.unwrap();
    assert_eq!(new.user.unwrap().role, "admin");
    let web_again = shop_testkit::web::Web::new(&format!("http://{}", second.http_addr.unwrap()));
    web_again.set_header("cookie", &format!("sid={}", web.cookie("sid").unwrap()));
    let page = web_again.get("/login?next=/x").await;
    assert_eq!(
        page.status, 200,
        "the old session ended: the login page again"
    );
    second.stop().await.unwrap();
}
