//! `storefront`: the shop's web shop and storefront API. Everything but
//! argument parsing lives in the library, so tests drive the same code.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    storefront::main(storefront::config::Cli::parse()).await
}
