//! Integration tests of `productinfo`: real PostgreSQL, real gRPC clients,
//! the real binary and the real `grpcurl` where it matters. One test binary
//! with modules, because linking is the slow part of a test run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod book;
mod catalog;
mod cli;
mod faults;
mod health;
mod helpers;
mod limits;
mod replica;
mod search;
mod stock;
mod tls;
