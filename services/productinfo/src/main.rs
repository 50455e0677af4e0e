//! `productinfo`: the shop's catalog service. Everything but argument parsing
//! lives in the library, so tests drive the same code.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    productinfo::main(productinfo::config::Cli::parse()).await
}
