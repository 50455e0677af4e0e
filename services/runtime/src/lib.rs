//! Shared gRPC plumbing for every service of the shop, and nothing else: no
//! domain code lives here.
//!
//! - [`server`]: bind, serve with health and reflection, shut down gracefully.
//! - [`health`]: `grpc.health.v1` with Check and Watch that tell the truth.
//! - [`auth`]: EdDSA JWTs: verifying interceptor, signing, key files.
//! - [`telemetry`]: logs (JSON or text) and the tower layer that logs every RPC.
//! - [`error`]: the shapes of errors clients see (field violations, opaque internals).
//! - [`pg`]: PostgreSQL pools, error classification and the database health check.
//! - [`config`]: command-line/env argument groups every service flattens into its own.

pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod pg;
pub mod server;
pub mod telemetry;
