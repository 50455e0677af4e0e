//! Integration tests of `order`: real PostgreSQL, real productinfo replicas
//! behind the client-side balancer, real gRPC clients (the book's too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod book;
mod cli;
mod failures;
mod helpers;
mod lifecycle;
mod place;
mod replicas;
mod search;
mod streams;
