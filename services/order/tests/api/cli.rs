//! The real `order` binary, configured by environment, called with the real
//! grpcurl through reflection, stopped with SIGTERM.

use shop_proto::ecommerce::{Money, Product, product_info_client::ProductInfoClient};
use shop_testkit::{
    admin_token, bearer,
    binary::{Process, command, grpcurl, text},
    customer_token, keys, services,
};

const BIN: &str = env!("CARGO_BIN_EXE_order");

// Multi-threaded: grpcurl runs as a blocking child process while the
// in-process catalog must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_places_and_reads_orders_on_the_real_binary() {
    let catalog = services::productinfo().await;
    let mug = ProductInfoClient::with_interceptor(catalog.channel.clone(), bearer(&admin_token()))
        .add_product(Product {
            name: "Grpcurl mug".into(),
            unit_price: Some(Money::from_minor("USD", 950)),
            stock: Some(5),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .value;
    let dir = tempfile::tempdir().unwrap();
    let database = shop_testkit::fresh_database("order").await;
    let target = catalog.addr.to_string();
    let key = keys().order_key.display().to_string();
    let mut order = Process::serve(
        BIN,
        dir.path(),
        &[
            ("DATABASE_URL", &database),
            ("TRUSTED_ISSUERS", &keys().order_trusts),
            ("PRODUCTINFO_TARGET", &target),
            ("SIGNING_KEY_FILE", &key),
            ("MIGRATE_ON_START", "true"),
        ],
        "ecommerce.OrderManagement",
    )
    .await;
    let addr = order.addr.clone();

    shop_testkit::binary::assert_reflects_only(&addr, &["-plaintext"], "ecommerce.OrderManagement");
    let describe =
        text(&grpcurl(&["-plaintext", &addr, "describe", "ecommerce.OrderManagement"]).stdout);
    for rpc in [
        "rpc addOrder ( .ecommerce.Order ) returns ( .google.protobuf.StringValue );",
        "rpc searchOrders ( .google.protobuf.StringValue ) returns ( stream .ecommerce.Order );",
        "rpc updateOrders ( stream .ecommerce.Order ) returns ( .google.protobuf.StringValue );",
        "rpc processOrders ( stream .google.protobuf.StringValue ) returns ( stream .ecommerce.CombinedShipment );",
    ] {
        assert!(describe.contains(rpc), "{rpc} in {describe}");
    }

    let customer = format!("authorization: Bearer {}", customer_token());
    let body = format!(
        r#"{{"lines": [{{"productId": "{mug}", "quantity": 2}}], "destination": "Lisbon"}}"#
    );
    let add = grpcurl(&[
        "-plaintext",
        "-H",
        &customer,
        "-d",
        &body,
        &addr,
        "ecommerce.OrderManagement/addOrder",
    ]);
    assert!(
        add.status.success(),
        "{}\n{}",
        text(&add.stderr),
        order.log_text()
    );
    let id: String = serde_json::from_slice(&add.stdout).unwrap();

    let get = grpcurl(&[
        "-plaintext",
        "-H",
        &customer,
        "-d",
        &format!("{id:?}"),
        &addr,
        "ecommerce.OrderManagement/getOrder",
    ]);
    let got: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(got["status"], "ORDER_STATUS_CONFIRMED");
    assert_eq!(got["total"]["units"], "19");
    assert_eq!(got["destination"], "Lisbon");

    let search = grpcurl(&[
        "-plaintext",
        "-H",
        &customer,
        "-d",
        r#""mug""#,
        &addr,
        "ecommerce.OrderManagement/searchOrders",
    ]);
    assert!(
        text(&search.stdout).contains(&id),
        "{}",
        text(&search.stdout)
    );

    // Streams from grpcurl: several JSON messages in, several out.
    let admin = format!("authorization: Bearer {}", admin_token());
    let process = grpcurl(&[
        "-plaintext",
        "-H",
        &admin,
        "-d",
        &format!("{id:?} \"nope\""),
        &addr,
        "ecommerce.OrderManagement/processOrders",
    ]);
    let shipped = text(&process.stdout);
    assert!(
        shipped.contains("\"REJECTED\"") && shipped.contains("\"SHIPPED\""),
        "{shipped}"
    );

    let status = order.terminate().await;
    assert!(status.success(), "{status}");
    assert!(!order.log_text().contains(&customer_token()));
}

#[tokio::test]
async fn migrate_runs_alone_and_check_config_catches_a_bad_target() {
    let database = shop_testkit::fresh_database("order").await;
    let migrate = command(BIN, &[("DATABASE_URL", &database)])
        .arg("migrate")
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));

    let key = keys().order_key.display().to_string();
    let env = |target: &'static str| {
        vec![
            ("DATABASE_URL", database.clone()),
            ("TRUSTED_ISSUERS", keys().order_trusts.clone()),
            ("PRODUCTINFO_TARGET", target.to_owned()),
            ("SIGNING_KEY_FILE", key.clone()),
        ]
    };
    let run = |env: Vec<(&str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        command(BIN, &env).arg("check-config").output().unwrap()
    };
    assert!(
        run(env("dns:///productinfo-headless:50051"))
            .status
            .success()
    );
    let bad = run(env("dns:///no-port"));
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("no-port"),
        "{}",
        text(&bad.stderr)
    );
}
