//! The whole shop, from the outside: the three real binaries configured by
//! environment exactly as in a container, one trace across them collected by
//! an OTLP receiver, their `/metrics` pages counted and linted, a real
//! Prometheus scraping them, `shopctl` calling every RPC, and hostile or
//! overloading clients against their memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod metrics;
mod prometheus;
mod shop;
mod shopctl;
mod traces;
