//! A real Prometheus (Debian's package) scrapes the three services and
//! reports every target up.

use std::{process::Stdio, time::Duration};

use crate::shop::RealShop;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_three_services_and_finds_them_up() {
    let prometheus =
        std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    assert!(
        std::path::Path::new(&prometheus).exists(),
        "prometheus not found at {prometheus}: run `make tools` (installs Debian's prometheus package)"
    );
    let shop = RealShop::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<String> = shop
        .metrics
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = std::process::Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start prometheus");

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let up = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let url = format!("http://127.0.0.1:{port}/api/v1/query?query=up")
                .parse()
                .unwrap();
            if let Ok(response) = client.get(url).await {
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let results = json["data"]["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let up: Vec<String> = results
                    .iter()
                    .filter(|r| r["value"][1] == "1")
                    .map(|r| {
                        r["metric"]["instance"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect();
                if up.len() == 3 {
                    return up;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let mut up = up.unwrap_or_else(|_| {
        panic!(
            "prometheus did not see the three services up:\n{}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        )
    });
    up.sort();
    let mut expected: Vec<String> = shop
        .metrics
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    expected.sort();
    assert_eq!(up, expected);
    shop.stop().await;
}

/// A free loopback port for Prometheus, which cannot report a port it was
/// given as 0 (the shop's own services write theirs to an address file).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
