//! `shopctl`: run the whole shop locally, mint tokens and keys.
//!
//! - `shopctl up` starts the shop on this machine ([`local`]).
//! - `shopctl token` mints a token for grpcurl and scripts ([`token`]).
//! - `shopctl keygen` writes Ed25519 key pairs for services ([`token`]).

pub mod local;
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
    /// Run the whole shop on this machine on a private PostgreSQL; Ctrl-C stops it.
    Up(local::UpArgs),
    /// Mint a token for a role, signed with an issuer's private key.
    Token(token::TokenArgs),
    /// Write Ed25519 key pairs (NAME.key, NAME.pub) for services.
    Keygen(token::KeygenArgs),
}

/// Runs one command; errors are printed with their causes.
pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Up(args) => local::up(args).await,
        Command::Token(args) => token::token(&args),
        Command::Keygen(args) => token::keygen(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shopctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
