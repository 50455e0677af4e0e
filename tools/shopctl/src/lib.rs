//! `shopctl`: call every RPC of the shop, run the whole shop locally, mint
//! tokens and keys.
//!
//! - `shopctl product|order|store ...` call every RPC of the catalog, the
//!   order service and the storefront, printing a table, JSON lines or ids
//!   (`--output`); streams print each message as it arrives ([`rpc`]).
//! - `shopctl up` starts the shop on this machine ([`local`]).
//! - `shopctl certs` issues TLS certificates from a local CA ([`certs`]).
//! - `shopctl fault` switches the local shop's fault flags ([`fault`]).
//! - `shopctl token` mints a token for grpcurl and scripts ([`token`]).
//! - `shopctl keygen` writes Ed25519 key pairs for services ([`token`]).
//! - `shopctl load` generates load and reports latency ([`load`]).
//! - `shopctl bench` measures the shop against its targets ([`bench`]).
//! - `shopctl chaos` breaks it under load and checks nothing was lost ([`chaos`]).

pub mod bench;
pub mod certs;
pub mod chaos;
pub mod connect;
pub mod cpu;
pub mod fault;
pub mod load;
pub mod local;
pub mod rpc;
pub mod token;

use std::process::ExitCode;

/// The shop's command-line tool.
#[derive(clap::Parser, Debug)]
#[command(name = "shopctl", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// The catalog: add, get, list, search products; stock and reservations.
    Product(rpc::product::ProductArgs),
    /// Orders: add, get, search, update, process (ship), cancel, watch.
    Order(rpc::order::OrderArgs),
    /// The storefront: register, login, cart, checkout.
    Store(rpc::store::StoreArgs),
    /// Run the whole shop on this machine on a private PostgreSQL; Ctrl-C stops it.
    Up(local::UpArgs),
    /// Switch fault flags of the local shop: errors, latency, readiness.
    Fault(fault::FaultArgs),
    /// Issue TLS certificates from a local CA (no openssl needed).
    Certs(certs::CertsArgs),
    /// Mint a token for a role, signed with an issuer's private key.
    Token(token::TokenArgs),
    /// Write Ed25519 key pairs (NAME.key, NAME.pub) for services.
    Keygen(token::KeygenArgs),
    /// Break the shop under load in every way Kubernetes does, then check
    /// that nothing was lost or duplicated (`make chaos`).
    Chaos(chaos::ChaosArgs),
    /// Benchmark the shop on this machine (release builds: `make bench`).
    Bench(bench::BenchArgs),
    /// Generate load: catalog reads, checkouts and order streams; report latency.
    Load {
        #[command(flatten)]
        connect: connect::ConnectArgs,
        #[command(flatten)]
        args: load::LoadArgs,
    },
}

/// Runs one command. A failed call prints its status and details, other
/// errors their causes ([`rpc::error`]); either exits with 1.
pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Product(args) => rpc::product::run(args).await,
        Command::Order(args) => rpc::order::run(args).await,
        Command::Store(args) => rpc::store::run(args).await,
        Command::Up(args) => local::up(args).await,
        Command::Certs(args) => certs::certs(&args),
        Command::Fault(args) => fault::fault(&args),
        Command::Token(args) => token::token(&args),
        Command::Keygen(args) => token::keygen(&args),
        Command::Bench(args) => bench::bench(args).await,
        Command::Chaos(args) => chaos::chaos(args).await,
        Command::Load { connect, args } => load::load(&connect, &args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => rpc::error::report(&e),
    }
}
