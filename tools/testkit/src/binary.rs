//! The real service binaries, driven the way people and Kubernetes drive
//! them: environment configuration only, logs to a file, SIGTERM to stop;
//! and the real `grpcurl`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::Duration,
};

use shop_runtime::{service::Addrs, tls::Tls};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{tool, wait_for_health};

/// `bin` with exactly the given environment (plus PATH) and no stdin.
pub fn command(bin: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// Runs the real `grpcurl` 1.8.6 from `.tools/bin`.
pub fn grpcurl(args: &[&str]) -> Output {
    Command::new(tool("grpcurl"))
        .args(args)
        .output()
        .expect("run grpcurl")
}

/// Checks with the real `grpcurl`, connecting with `flags` (`-plaintext`,
/// or `-cacert`, `-cert`, `-key`), that the server at `addr` reflects
/// exactly `service` plus health and reflection (`list`), and that every
/// request and response type of every method of `service` can be described.
pub fn assert_reflects_only(addr: &str, flags: &[&str], service: &str) {
    let grpcurl = |args: &[&str]| grpcurl(&[flags, args].concat());
    let list = grpcurl(&[addr, "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            service,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
        "what {addr} lists"
    );
    let described = grpcurl(&[addr, "describe", service]);
    assert!(described.status.success(), "{}", text(&described.stderr));
    let described = text(&described.stdout);
    // rpc name ( [stream] .pkg.Request ) returns ( [stream] .pkg.Response );
    let mut types = std::collections::BTreeSet::new();
    for line in described
        .lines()
        .filter(|l| l.trim_start().starts_with("rpc "))
    {
        for part in line.split(['(', ')']).skip(1).step_by(2) {
            let name = part.trim().trim_start_matches("stream ").trim();
            types.insert(name.trim_start_matches('.').to_owned());
        }
    }
    assert!(
        types.len() >= 2,
        "request and response types in {described}"
    );
    for name in &types {
        let out = grpcurl(&[addr, "describe", name]);
        assert!(
            out.status.success() && text(&out.stdout).contains("message"),
            "describe {name} at {addr}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A service binary running as a child process.
pub struct Process {
    pub child: Child,
    /// Where it listens for gRPC (from its ADDR_FILE).
    pub addr: String,
    /// Every address it listens on (from its ADDR_FILE).
    pub addrs: Addrs,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Process {
    /// Starts `bin serve` with LISTEN_ADDR, METRICS_ADDR and HTTP_LISTEN_ADDR
    /// on port 0 (unless `env` says otherwise), then `env`, an ADDR_FILE and
    /// JSON logs into `dir`, and waits until `health_service` is SERVING.
    pub async fn serve(
        bin: &str,
        dir: &Path,
        env_overrides: &[(&str, &str)],
        health_service: &str,
    ) -> Process {
        Self::serve_over(bin, dir, env_overrides, health_service, None).await
    }

    /// Like [`serve`](Self::serve), for a service speaking TLS: its health
    /// is asked over TLS as `client` (`tls`), the server proving it is
    /// `server_name`.
    pub async fn serve_over(
        bin: &str,
        dir: &Path,
        env_overrides: &[(&str, &str)],
        health_service: &str,
        tls: Option<(&Tls, &str)>,
    ) -> Process {
        let addr_file = dir.join("addr");
        let log = dir.join("log");
        let out = std::fs::File::create(&log).expect("log file");
        let addr_file_text = addr_file.display().to_string();
        let mut env = [
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("HTTP_LISTEN_ADDR", "127.0.0.1:0"),
        ]
        .to_vec();
        env.extend_from_slice(env_overrides);
        env.extend([
            ("ADDR_FILE", addr_file_text.as_str()),
            ("LOG_FORMAT", "json"),
        ]);
        let child = command(bin, &env)
            .arg("serve")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let mut process = Process {
            child,
            addr: String::new(),
            addrs: Addrs {
                grpc: ([0, 0, 0, 0], 0).into(),
                web: None,
                metrics: None,
                health: None,
            },
            log,
        };
        process.addrs = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(addrs) = Addrs::read(&addr_file) {
                    return addrs;
                }
                if let Ok(Some(status)) = process.child.try_wait() {
                    panic!("{bin} exited early ({status}):\n{}", process.log_text());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{bin} did not write its address"));
        process.addr = process.addrs.grpc.to_string();
        let channel =
            shop_runtime::tls::connect::channel(&process.addr, tls, Duration::from_secs(5))
                .expect("channel");
        wait_for_health(channel, health_service, ServingStatus::Serving).await;
        process
    }

    /// Everything it wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its JSON log lines.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("JSON log line {l:?}: {e}")))
            .collect()
    }

    /// Sends SIGTERM and waits (up to 15 s) for it to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                if let Some(status) = self.child.try_wait().expect("wait") {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("exits after SIGTERM")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
