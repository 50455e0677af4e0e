//! Shared gRPC plumbing for every service of the shop, and nothing else: no
//! domain code lives here.
//!
//! - [`service`]: the skeleton every service starts, runs and stops through.
//! - [`server`]: serve gRPC (with health and reflection) and HTTP, drain every listener.
//! - [`upstream`]: the one client type for calling another service.
//! - [`health`]: `grpc.health.v1` with Check and Watch that tell the truth.
//! - [`auth`]: EdDSA JWTs: verifying interceptor, signing, key files.
//! - [`tls`]: mutual TLS between services, TLS for clients, live rotation.
//! - [`balance`]: client-side round-robin over every ready address of a peer.
//! - [`deadline`]: deadlines carried from incoming to outgoing calls.
//! - [`telemetry`]: logs (JSON or text) and the tower layer that logs every RPC.
//! - [`error`]: the shapes of errors clients see (field violations, opaque internals).
//! - [`metrics`]: Prometheus metrics per server on an admin port.
//! - [`fault`]: fault flags (errors, latency, readiness) switched at run time.
//! - [`pg`]: PostgreSQL pools, error classification and the database health check.
//! - [`slots`]: bounded numbers of streams of one kind.
//! - [`config`]: the configuration every service shares, and the shape of each one's.

pub mod auth;
pub mod balance;
pub mod config;
pub mod deadline;
pub mod error;
pub mod fault;
pub mod health;
pub mod metrics;
pub mod pg;
pub mod pushback;
pub mod server;
pub mod service;
pub mod slots;
pub mod telemetry;
pub mod tls;
pub mod upstream;
