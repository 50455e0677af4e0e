//! The UI-facing service of the shop: the web shop for browsers (HTTP) and
//! `ecommerce.Storefront` for scripts (gRPC), over its own PostgreSQL
//! database of accounts, sessions and carts. It reaches productinfo and
//! order only over gRPC, through the shop's one upstream client.
//!
//! It starts, serves and stops through the shop's one skeleton
//! ([`shop_runtime::service`]), which drains the web listener exactly like
//! the gRPC one; what is its own is [`Storefront`]: its flags, its routes,
//! its web pages and the session cleanup task. Tests call `Storefront::run`
//! with listeners on port 0.

mod accounts;
mod cart;
mod checkout;
pub mod config;
mod db;
mod error;
mod grpc;
mod upstream;
mod web;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use shop_proto::ecommerce::storefront_server::{SERVICE_NAME, StorefrontServer};
use shop_runtime::{
    balance::Target,
    config::WebArgs,
    pg::Db,
    service::{Context, Endpoints, Service},
    upstream::Caller,
};
use sqlx::migrate::Migrator;
use tonic::{
    codec::CompressionEncoding, service::Routes, service::interceptor::InterceptedService,
};

pub use config::{Args, Config};

/// How often expired sessions and old login failures are removed.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(600);

/// The storefront, its configuration checked.
#[derive(Debug)]
pub struct Storefront {
    productinfo: Target,
    order: Target,
    caller: Caller,
    admin: Option<FirstAdmin>,
    cookie_secure: bool,
    trusted_proxies: Vec<config::Cidr>,
    lifetime: db::Lifetime,
    hash_permits: usize,
    hash_wait: Duration,
    policy: accounts::Policy,
}

/// The first admin account, from `--admin-email` and `--admin-password-file`.
struct FirstAdmin {
    email: String,
    password: String,
}

impl std::fmt::Debug for FirstAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("FirstAdmin")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl FirstAdmin {
    fn read(email: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Option<Self>> {
        let (Some(email), Some(file)) = (email, file) else {
            return Ok(None);
        };
        let password = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read --admin-password-file {}", file.display()))?;
        let password = password.trim_end_matches(['\n', '\r']).to_owned();
        if password.chars().count() < accounts::MIN_PASSWORD {
            anyhow::bail!(
                "the admin password in {} is shorter than {} characters",
                file.display(),
                accounts::MIN_PASSWORD
            );
        }
        Ok(Some(Self { email, password }))
    }
}

impl Service for Storefront {
    const NAME: &'static str = "storefront";
    const ABOUT: &'static str = "The shop's web shop and storefront API, with accounts, sessions and carts in its own PostgreSQL database.";
    const GRPC_SERVICE: &'static str = SERVICE_NAME;
    const DESCRIPTOR_SETS: &'static [&'static [u8]] = &[shop_proto::reflection::STOREFRONT];
    const MIGRATOR: &'static Migrator = &sqlx::migrate!();
    type Args = Args;

    fn web(args: &Args) -> Option<&WebArgs> {
        Some(&args.web)
    }

    fn prepare(args: Args) -> anyhow::Result<Self> {
        Ok(Self {
            caller: Caller::prepare(&args.upstream, Self::NAME)?,
            admin: FirstAdmin::read(args.admin_email, args.admin_password_file)?,
            productinfo: args.productinfo_target,
            order: args.order_target,
            cookie_secure: args.cookie_secure,
            trusted_proxies: args.trusted_proxies.0,
            lifetime: db::Lifetime {
                ttl: args.session_ttl,
                max: args.session_max_lifetime,
            },
            hash_permits: match args.hash_concurrency {
                0 => accounts::Hasher::permits_for(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
                n => n,
            },
            hash_wait: args.hash_wait,
            policy: accounts::Policy {
                failures_per_email_client: args.login_failures_per_email,
                failures_per_client: args.login_failures_per_client,
                registrations_per_client: args.registrations_per_client,
                window: accounts::WINDOW,
            },
        })
    }

    async fn start(self, ctx: &mut Context) -> anyhow::Result<Endpoints> {
        let accounts = accounts::Accounts {
            db: ctx.db.clone(),
            hasher: accounts::Hasher::new(self.hash_permits, self.hash_wait, &ctx.metrics),
            policy: self.policy,
        };
        if let Some(admin) = &self.admin {
            // Needs the schema: retried by the caller's restart policy if the
            // database is not migrated yet.
            accounts
                .ensure_admin(&admin.email, &admin.password)
                .await
                .context("cannot set up the first admin")?;
        }
        let caller = self.caller.with_tls(ctx.tls.clone());
        let upstreams =
            upstream::Upstreams::new(&caller, self.productinfo, self.order, &ctx.metrics);
        ctx.spawn("session cleanup", cleanup(ctx.db.clone()));

        let service = StorefrontServer::new(grpc::StorefrontService::new(
            accounts.clone(),
            upstreams.clone(),
            caller.signer().clone(),
        ))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(ctx.max_message_size);
        let grpc = Routes::new(InterceptedService::new(
            service,
            ctx.auth_allowing_anonymous(),
        ));
        let web = web::router(web::AppState {
            inner: Arc::new(web::Inner {
                pool: ctx.db.clone(),
                metrics: ctx.metrics.clone(),
                csrf_key: caller.signer().derive_key("storefront csrf"),
                accounts,
                upstreams,
                stopping: ctx.stopping.clone(),
                cookie_secure: self.cookie_secure,
                lifetime: self.lifetime,
                trusted_proxies: self.trusted_proxies,
            }),
        });
        Ok(Endpoints {
            grpc,
            web: Some(web),
        })
    }
}

/// Removes expired sessions and old attempts every [`CLEANUP_INTERVAL`].
async fn cleanup(pool: Db) {
    loop {
        tokio::time::sleep(CLEANUP_INTERVAL).await;
        match db::delete_expired(&pool, accounts::WINDOW).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "expired sessions removed"),
            Err(e) => tracing::warn!(error = %e, "session cleanup failed"),
        }
    }
}
