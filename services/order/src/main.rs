//! `order`: the shop's order service. Everything but argument parsing lives
//! in the library, so tests drive the same code.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    order::main(order::config::Cli::parse()).await
}
