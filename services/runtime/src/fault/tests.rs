use tonic::Code;

use super::Faults;

#[test]
fn a_flag_file_sets_this_services_faults_and_ignores_the_rest() {
    let text = r#"{"flags": {
        "productinfo.getProduct.error": {"state": "ENABLED", "defaultVariant": "on",
            "variants": {"on": {"rate": 0.5, "code": "UNAVAILABLE"}, "off": null}},
        "productinfo.*.latency": {"defaultVariant": "on",
            "variants": {"on": {"rate": 1.0, "ms": 200, "jitterMs": 50}}},
        "productinfo.readiness": {"state": "ENABLED", "defaultVariant": "on",
            "variants": {"on": true, "off": false}},
        "productinfo.listProducts.error": {"state": "DISABLED", "defaultVariant": "on",
            "variants": {"on": {"rate": 1.0, "code": "INTERNAL"}}},
        "productinfo.getProducts.error": {"state": "ENABLED", "defaultVariant": "off",
            "variants": {"on": {"rate": 1.0, "code": "INTERNAL"}, "off": null}},
        "order.addOrder.error": {"state": "ENABLED", "defaultVariant": "on",
            "variants": {"on": {"rate": 1.0, "code": "INTERNAL"}}}
    }}"#;

    let faults = Faults::parse("productinfo", text).unwrap();

    let error = faults.error("getProduct").unwrap();
    assert_eq!((error.rate, error.code), (0.5, Code::Unavailable));
    assert!(faults.error("listProducts").is_none(), "disabled");
    assert!(faults.error("getProducts").is_none(), "default variant off");
    assert!(faults.error("addOrder").is_none(), "another service's");
    let latency = faults.latency("searchProducts").unwrap();
    assert_eq!(
        (latency.ms, latency.jitter_ms),
        (200, 50),
        "* covers every RPC"
    );
    assert!(faults.fail_readiness);
    assert_eq!(
        faults.describe(),
        [
            "*: 100% wait 200–250 ms",
            "getProduct: 50% fail UNAVAILABLE",
            "readiness: NOT_SERVING"
        ]
    );
    assert_eq!(Faults::parse("order", text).unwrap().describe().len(), 1);
    assert_eq!(
        Faults::parse("storefront", text).unwrap(),
        Faults::default()
    );
}

#[test]
fn a_bad_flag_is_an_error_naming_it() {
    let flag = |key: &str, value: &str| {
        format!(
            r#"{{"flags": {{"{key}": {{"defaultVariant": "on", "variants": {{"on": {value}}}}}}}}}"#
        )
    };
    for (key, value, says) in [
        (
            "productinfo.getProduct.error",
            r#"{"rate": 2, "code": "INTERNAL"}"#,
            "rate",
        ),
        (
            "productinfo.getProduct.error",
            r#"{"rate": 1, "code": "BROKEN"}"#,
            "BROKEN",
        ),
        (
            "productinfo.getProduct.latency",
            r#"{"rate": 1, "seconds": 3}"#,
            "seconds",
        ),
        (
            "productinfo.getProduct.explode",
            r#"{"rate": 1}"#,
            "expected",
        ),
    ] {
        let error = Faults::parse("productinfo", &flag(key, value)).unwrap_err();
        assert!(error.contains(key) && error.contains(says), "{error}");
    }
    assert!(Faults::parse("productinfo", "flags: []").is_err());
}
