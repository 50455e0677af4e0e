//! `shopctl`: the shop's command-line tool. See `shopctl --help`.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shopctl::main(shopctl::Cli::parse()).await
}
