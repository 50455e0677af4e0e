//! Tokens and keys for people and scripts.
//!
//! ```text
//! shopctl token --role admin --key .local/keys/storefront.key
//! grpcurl -H "authorization: Bearer $(shopctl token --role admin --key ...)" ...
//! ```

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use shop_runtime::{
    auth::{Role, Signer, ensure_keypair},
    config::parse_duration,
};

/// Mint a token.
#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// Role to grant: customer, admin or service.
    #[arg(long)]
    pub role: Role,

    /// Private key (PEM) of the issuer; the storefront's key issues people's tokens.
    #[arg(
        long,
        env = "SHOP_SIGNING_KEY",
        default_value = ".local/keys/storefront.key"
    )]
    pub key: PathBuf,

    /// Issuer name, as the services' --trusted-issuers knows it.
    #[arg(long, default_value = "storefront")]
    pub issuer: String,

    /// Subject: a user id, or the service name for service tokens.
    #[arg(long, default_value = "cli")]
    pub subject: String,

    /// Services that should accept the token (comma-separated).
    #[arg(
        long,
        default_value = "productinfo,order,storefront",
        value_delimiter = ','
    )]
    pub audience: Vec<String>,

    /// How long the token is valid: at most 12h, what the services accept
    /// by default (TOKEN_MAX_LIFETIME).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

/// Write key pairs.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Folder for the key files.
    #[arg(long, default_value = ".local/keys")]
    pub dir: PathBuf,

    /// Names of the key pairs (one per issuing service), e.g. storefront order.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// The longest `--ttl`: the services' default TOKEN_MAX_LIFETIME.
const MAX_TTL: Duration = Duration::from_secs(12 * 3600);

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_duration(s)?;
    if ttl > MAX_TTL {
        return Err(
            "at most 12h: the services refuse tokens that live longer (TOKEN_MAX_LIFETIME)".into(),
        );
    }
    Ok(ttl)
}

/// Prints a fresh token.
pub fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let signer = Signer::from_file(args.issuer.clone(), &args.key)
        .with_context(|| "run `make up` once to create local keys, or pass --key")?;
    let audience: Vec<&str> = args.audience.iter().map(String::as_str).collect();
    println!(
        "{}",
        signer.sign(&args.subject, args.role, &audience, args.ttl)?
    );
    Ok(())
}

/// Writes key pairs that do not exist yet.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    for name in &args.names {
        let (private, public) = ensure_keypair(&args.dir, name)
            .with_context(|| format!("cannot write keys into {}", args.dir.display()))?;
        println!("{name}: {} {}", private.display(), public.display());
    }
    Ok(())
}
