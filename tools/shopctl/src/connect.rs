//! How `shopctl` reaches the shop: where each service listens, which token
//! it sends, and how long a call may take. Shared by the RPC subcommands and
//! the load generator.
//!
//! Every client balances round-robin over all addresses of its target (the
//! runtime's [`Balanced`] channel), so `--productinfo 127.0.0.1:7101,127.0.0.1:7102`
//! spreads calls over both replicas of `make up`.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use shop_proto::ecommerce::{
    order_management_client::OrderManagementClient, order_management_server,
    product_info_client::ProductInfoClient, product_info_server,
    storefront_client::StorefrontClient, storefront_server,
};
use shop_runtime::{
    auth::{Role, Signer},
    balance::{BalanceConfig, Balanced, Target},
    config::parse_duration,
    tls::{ClientAuth, Tls, TlsFiles, connect::Connector},
};
use tonic::Request;

/// Where the services are and who the caller is.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Connection")]
pub struct ConnectArgs {
    /// productinfo's addresses: host:port[,host:port...] or dns:///host:port.
    #[arg(
        long,
        global = true,
        env = "SHOP_PRODUCTINFO",
        default_value = "127.0.0.1:7101,127.0.0.1:7102"
    )]
    pub productinfo: Target,

    /// order's addresses.
    #[arg(
        long,
        global = true,
        env = "SHOP_ORDER",
        default_value = "127.0.0.1:7201"
    )]
    pub order: Target,

    /// storefront's gRPC addresses.
    #[arg(
        long,
        global = true,
        env = "SHOP_STOREFRONT",
        default_value = "127.0.0.1:7301"
    )]
    pub storefront: Target,

    /// A bearer token to send as is (e.g. from `shopctl store login`); without it a
    /// token is minted with --key for --role and --subject.
    #[arg(long, global = true, env = "SHOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Role of the minted token: customer, admin or service.
    #[arg(long = "role", global = true, default_value = "admin")]
    pub role: Role,

    /// Subject (user id) of the minted token.
    #[arg(long, global = true, default_value = "shopctl")]
    pub subject: String,

    /// Private key that mints tokens (the storefront's key issues people's tokens).
    #[arg(
        long,
        global = true,
        env = "SHOP_SIGNING_KEY",
        default_value = ".local/keys/storefront.key"
    )]
    pub key: PathBuf,

    /// Issuer name of the minted token, as the services' TRUSTED_ISSUERS knows it.
    #[arg(long, global = true, default_value = "storefront")]
    pub issuer: String,

    /// Deadline of each call (sent as grpc-timeout).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// CA certificate the services' certificates must chain to. When the
    /// file exists, calls use TLS (the services of `shopctl up` do).
    #[arg(
        long,
        global = true,
        env = "SHOP_TLS_CA",
        default_value = ".local/tls/ca.pem"
    )]
    pub tls_ca: PathBuf,

    /// Client certificate presented over TLS (services require one).
    #[arg(
        long,
        global = true,
        env = "SHOP_TLS_CERT",
        default_value = ".local/tls/shopctl.pem"
    )]
    pub tls_cert: PathBuf,

    /// The client certificate's key.
    #[arg(
        long,
        global = true,
        env = "SHOP_TLS_KEY",
        default_value = ".local/tls/shopctl-key.pem"
    )]
    pub tls_key: PathBuf,

    /// Plaintext, never TLS (for `shopctl up --plaintext`).
    #[arg(long, global = true, env = "SHOP_PLAINTEXT")]
    pub plaintext: bool,
}

pub use shop_runtime::auth::Bearer;

type Channel = tonic::service::interceptor::InterceptedService<Balanced, Bearer>;

/// Clients of the three services, each balanced over its target's addresses.
#[derive(Clone, Debug)]
pub struct Clients {
    pub productinfo: ProductInfoClient<Channel>,
    pub order: OrderManagementClient<Channel>,
    pub storefront: StorefrontClient<Channel>,
    /// productinfo's channel, whose per-address counts show the spread.
    pub productinfo_channel: Balanced,
    /// order's channel.
    pub order_channel: Balanced,
    /// storefront's channel.
    pub storefront_channel: Balanced,
    pub timeout: Duration,
}

impl ConnectArgs {
    /// The token to send: --token, or one minted for --role and --subject.
    /// `None` when neither works (calls then fail UNAUTHENTICATED, which the
    /// open RPCs such as `login` do not mind).
    pub fn bearer(&self) -> anyhow::Result<Option<String>> {
        if let Some(token) = &self.token {
            return Ok(Some(token.trim().to_owned()));
        }
        if !self.key.exists() {
            return Ok(None);
        }
        let signer = Signer::from_file(self.issuer.clone(), &self.key)
            .with_context(|| format!("cannot read the signing key {}", self.key.display()))?;
        let token = signer.sign(
            &self.subject,
            self.role,
            &["productinfo", "order", "storefront"],
            Duration::from_secs(3600),
        )?;
        Ok(Some(token))
    }

    /// TLS as the flags say: `None` with --plaintext or without the CA file;
    /// a client certificate when both its files exist.
    pub fn tls(&self) -> anyhow::Result<Option<Tls>> {
        if self.plaintext || !self.tls_ca.exists() {
            return Ok(None);
        }
        let identity = (self.tls_cert.exists() && self.tls_key.exists())
            .then(|| (self.tls_cert.clone(), self.tls_key.clone()));
        let files = TlsFiles {
            identity,
            ca: self.tls_ca.clone(),
        };
        Tls::load(files, ClientAuth::Require)
            .map(Some)
            .with_context(|| format!("cannot use the TLS files ({})", self.tls_ca.display()))
    }

    /// Clients sending [`Self::bearer`]'s token. Connections are made lazily,
    /// on the first call.
    pub fn clients(&self) -> anyhow::Result<Clients> {
        let bearer = match self.bearer()? {
            Some(token) => Bearer::new(&token).context("the token is not valid ASCII")?,
            None => Bearer::none(),
        };
        self.clients_with(bearer)
    }

    /// Clients sending the given token (the load generator's customers).
    pub fn clients_with(&self, bearer: Bearer) -> anyhow::Result<Clients> {
        let tls = self.tls()?;
        let channel = |target: &Target, name: &str, health: &str| {
            Balanced::new(
                target.clone(),
                BalanceConfig {
                    connect_timeout: Duration::from_secs(2),
                    wait_for_ready: self.timeout.min(Duration::from_secs(5)),
                    tls: tls.as_ref().map(|tls| {
                        Connector::new(tls.clone(), name).expect("service names are DNS names")
                    }),
                    ..BalanceConfig::new(name, health)
                },
            )
        };
        let productinfo_channel = channel(
            &self.productinfo,
            "productinfo",
            product_info_server::SERVICE_NAME,
        );
        let order = channel(&self.order, "order", order_management_server::SERVICE_NAME);
        let storefront = channel(
            &self.storefront,
            "storefront",
            storefront_server::SERVICE_NAME,
        );
        Ok(Clients {
            productinfo: ProductInfoClient::with_interceptor(
                productinfo_channel.clone(),
                bearer.clone(),
            ),
            order: OrderManagementClient::with_interceptor(order.clone(), bearer.clone()),
            storefront: StorefrontClient::with_interceptor(storefront.clone(), bearer),
            productinfo_channel,
            order_channel: order,
            storefront_channel: storefront,
            timeout: self.timeout,
        })
    }
}

impl Clients {
    /// A request carrying `message` and the configured deadline.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }
}
