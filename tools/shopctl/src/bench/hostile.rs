//! The benchmark's hostile client: one client keeping many calls open at
//! once on few connections (what `h2load -c1 -m100` does), against one
//! service, while the service's resident memory is sampled.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use serde::Serialize;
use shop_runtime::telemetry::code_name;
use tokio::time::Instant;
use tonic::{Code, Status, transport::Channel};

use super::PeakRss;

/// One call of the RPC under test, over the given connection.
pub type Call =
    Arc<dyn Fn(Channel) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send>> + Send + Sync>;

/// A service's resident memory while one client keeps `streams` calls open
/// at once over `connections` connections.
#[derive(Debug, Serialize)]
pub struct StreamFigures {
    pub service: String,
    pub rpc: String,
    pub streams: usize,
    pub connections: usize,
    pub rss_peak_kb: u64,
    /// Calls answered.
    pub ok: u64,
    /// Calls refused `RESOURCE_EXHAUSTED`: the service's admission limit.
    pub refused: u64,
    /// Calls that failed otherwise (each one a defect), by status code.
    pub failed: BTreeMap<String, u64>,
}

/// One service under test.
pub struct Target<'a> {
    pub name: &'a str,
    /// A new connection to it.
    pub dial: &'a (dyn Fn() -> anyhow::Result<Channel> + Sync),
    pub pid: Option<u32>,
    pub rpc: &'a str,
    pub call: Call,
}

/// Opens `connections` connections to `target` and runs `streams` callers
/// over them (each connection carries `streams / connections` calls at
/// once) for `duration`. A caller starts its next call the moment the last
/// one ends, refused or not: a hostile client ignores pushback, so the
/// server always has `streams` calls open.
pub async fn streams(
    target: &Target<'_>,
    streams: usize,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<StreamFigures> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        // One `connect()` per channel: each is its own HTTP/2 connection.
        channels.push((target.dial)()?);
    }
    let peak = PeakRss::start(vec![target.pid]);
    let end = Instant::now() + duration;
    let mut callers = tokio::task::JoinSet::new();
    for n in 0..streams {
        let channel = channels[n % channels.len()].clone();
        let call = target.call.clone();
        callers.spawn(async move {
            let (mut ok, mut refused, mut failed) = (0, 0, BTreeMap::<String, u64>::new());
            while Instant::now() < end {
                match call(channel.clone()).await {
                    Ok(()) => ok += 1,
                    Err(status) if status.code() == Code::ResourceExhausted => refused += 1,
                    Err(status) => *failed.entry(code_name(status.code()).into()).or_default() += 1,
                }
            }
            (ok, refused, failed)
        });
    }
    let (mut ok, mut refused, mut failed) = (0, 0, BTreeMap::<String, u64>::new());
    while let Some(caller) = callers.join_next().await {
        let (o, r, f) = caller?;
        (ok, refused) = (ok + o, refused + r);
        for (code, n) in f {
            *failed.entry(code).or_default() += n;
        }
    }
    Ok(StreamFigures {
        service: target.name.to_owned(),
        rpc: target.rpc.to_owned(),
        streams,
        connections: channels.len(),
        rss_peak_kb: peak.stop()[0],
        ok,
        refused,
        failed,
    })
}
