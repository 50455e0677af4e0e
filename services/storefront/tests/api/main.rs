//! Integration tests of `storefront`: real productinfo, order and
//! storefront servers on real PostgreSQL; the web pages through a real HTTP
//! client, the gRPC API through a real gRPC client, and the whole shop in
//! headless Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod grpc;
mod helpers;
mod hostile;
mod pages;
mod resilience;
