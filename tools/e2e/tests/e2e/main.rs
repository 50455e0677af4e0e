//! The whole shop, from the outside: the three real binaries configured by
//! environment exactly as in a container, one trace across them collected by
//! an OTLP receiver, their `/metrics` pages counted and linted, a real
//! Prometheus scraping them, and `shopctl` calling every RPC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod metrics;
mod prometheus;
mod shop;
mod shopctl;
mod traces;
