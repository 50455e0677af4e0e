//! Shared gRPC plumbing for every service of the shop, and nothing else: no
//! domain code lives here.
//!
//! - [`server`]: bind, serve with health and reflection, shut down gracefully.
//! - [`health`]: `grpc.health.v1` with Check and Watch that tell the truth.
//! - [`auth`]: EdDSA JWTs: verifying interceptor, signing, key files.
//! - [`balance`]: client-side round-robin over every ready address of a peer.
//! - [`deadline`]: deadlines carried from incoming to outgoing calls.
//! - [`telemetry`]: logs (JSON or text) and the tower layer that logs every RPC.
//! - [`error`]: the shapes of errors clients see (field violations, opaque internals).
//! - [`metrics`]: Prometheus metrics per server on an admin port.
//! - [`pg`]: PostgreSQL pools, error classification and the database health check.
//! - [`cli`]: the common shape of every service's `main`.
//! - [`config`]: command-line/env argument groups every service flattens into its own.

pub mod auth;
pub mod balance;
pub mod cli;
pub mod config;
pub mod deadline;
pub mod error;
pub mod health;
pub mod metrics;
pub mod pg;
pub mod server;
pub mod telemetry;
