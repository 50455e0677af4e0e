//! Every service's configuration: the argument groups all services share,
//! so the same flag and environment variable mean the same thing everywhere,
//! and [`Config`], which puts them together with a service's own flags.
//! Each field's `///` line is its `--help` text.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Everything `<service> serve` and `<service> check-config` take: the
/// groups every service shares, then the service's own flags (`A`).
#[derive(clap::Args, Debug, Clone)]
pub struct Config<A: clap::Args> {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Apply database migrations at start-up (handy locally; in Kubernetes a
    /// Job runs `<service> migrate` instead).
    #[arg(long, env = "MIGRATE_ON_START")]
    pub migrate: bool,

    #[command(flatten)]
    pub service: A,
}

/// Where and how the gRPC server runs and stops.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// After a shutdown signal, how long in-flight calls may take to finish
    /// before they are cut (keep it below Kubernetes' terminationGracePeriodSeconds).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// After a shutdown signal, how long to keep accepting calls while
    /// reporting NOT_SERVING, so clients and Kubernetes endpoints notice first.
    #[arg(long, env = "DRAIN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// Address of the admin HTTP server with Prometheus `/metrics`, or "off".
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: OptionalAddr,

    /// Once listening, write every bound address to this file, one
    /// `grpc=`, `web=` or `metrics=` line each (lets scripts and tests start
    /// the service on port 0).
    #[arg(long, env = "ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// A fault flag file (OpenFeature flagd format) read every second:
    /// flags that make this service fail or slow down some calls, or
    /// report itself not ready (see `shopctl fault`). Unset: no faults.
    #[arg(long, env = "FAULTS_FILE")]
    pub faults_file: Option<PathBuf>,
}

/// What one client may ask of the gRPC server, and how much the server
/// takes on at once. Every default is chosen for the chart's pods (128 MiB,
/// a fraction of a core): the README's configuration table says why.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Calls served at once (health and reflection aside); more are refused
    /// at once with RESOURCE_EXHAUSTED and a retry hint, never queued. 0:
    /// two per database connection.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 0)]
    pub max_in_flight: u32,

    /// Calls open at once, streams included (a stream stays open until its
    /// last message): bounds what clients that open streams and never read
    /// them can make the server hold. More are refused RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAX_OPEN_CALLS", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_open_calls: u32,

    /// Bulk streams (searches, which send many messages) open at once, each
    /// buffering up to a batch for a client that reads slowly. More are
    /// refused RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAX_BULK_STREAMS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_bulk_streams: u32,

    /// Concurrent HTTP/2 streams (calls) one connection may open.
    #[arg(long, env = "MAX_CONCURRENT_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Largest request message, in bytes; a larger one is refused with
    /// RESOURCE_EXHAUSTED before it is read.
    #[arg(long, env = "MAX_MESSAGE_SIZE", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..=256 * 1024 * 1024))]
    pub max_message_size: u32,

    /// Largest header block (metadata) of a request, in bytes.
    #[arg(long, env = "MAX_HEADER_LIST_SIZE", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_header_list_size: u32,

    /// Streams a client may reset before they are accepted (a reset flood,
    /// "Rapid Reset"): past it the connection is closed.
    #[arg(long, env = "MAX_PENDING_ACCEPT_RESET_STREAMS", default_value_t = 20)]
    pub max_pending_accept_reset_streams: usize,

    /// Streams a client may make the server reset for its errors on one
    /// connection ("MadeYouReset"): past it the connection is closed.
    #[arg(long, env = "MAX_LOCAL_ERROR_RESET_STREAMS", default_value_t = 1024)]
    pub max_local_error_reset_streams: usize,

    /// A client's keepalive pings closer together than this count against
    /// it; after a few the connection gets GOAWAY (ENHANCE_YOUR_CALM,
    /// "too_many_pings"), as gRPC's keepalive enforcement policy does.
    #[arg(long, env = "MIN_PING_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub min_ping_interval: Duration,

    /// A connection older than this is asked to go (GOAWAY), so clients
    /// resolve again and spread over replicas added since.
    #[arg(long, env = "MAX_CONNECTION_AGE", default_value = "30m", value_parser = parse_duration)]
    pub max_connection_age: Duration,

    /// How long calls on such a connection may still take before it closes.
    #[arg(long, env = "MAX_CONNECTION_AGE_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub max_connection_age_grace: Duration,
}

impl Default for LimitArgs {
    /// The flags' defaults (for servers started in tests and tools).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            limits: LimitArgs,
        }
        <Defaults as clap::Parser>::parse_from(["defaults"]).limits
    }
}

/// The web (HTTP) listener of a service that serves browsers.
#[derive(clap::Args, Debug, Clone)]
pub struct WebArgs {
    /// Address the web server (HTTP) listens on.
    #[arg(long, env = "HTTP_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,

    /// Connections the web server takes at once; more are closed as soon as
    /// they arrive.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = crate::server::DEFAULT_WEB_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub http_max_connections: usize,
}

/// How a service calls the others, and as whom.
#[derive(clap::Args, Debug, Clone)]
pub struct UpstreamArgs {
    /// This service's Ed25519 private key (PEM): it signs the service's own
    /// tokens (and, in the storefront, the tokens of people who log in).
    #[arg(long, env = "SIGNING_KEY_FILE")]
    pub signing_key_file: PathBuf,

    /// The issuer name on tokens this service signs, as the called services'
    /// --trusted-issuers know it (default: the service's own name).
    #[arg(long, env = "TOKEN_ISSUER")]
    pub token_issuer: Option<String>,

    /// Deadline of each call to another service (shorter when the incoming
    /// call's own deadline comes sooner).
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// How many times an idempotent call that failed UNAVAILABLE is tried
    /// again (with jittered backoff, within its deadline).
    #[arg(long, env = "UPSTREAM_RETRIES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=5))]
    pub upstream_retries: u32,

    /// How often the other services' addresses are resolved again.
    #[arg(long, env = "RESOLVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub resolve_interval: Duration,
}

/// TLS of the gRPC port and of calls to other services (mutual TLS inside
/// the shop). Without a certificate both speak plaintext, as in the book's
/// first chapters.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// PEM certificate chain the service presents, as a server and to the
    /// services it calls; its `spiffe://.../sa/<service>` SAN is the
    /// service's identity. Without it the gRPC port speaks plaintext.
    #[arg(long, env = "TLS_CERT_FILE", requires_all = ["tls_key_file", "tls_ca_file"])]
    pub tls_cert_file: Option<PathBuf>,

    /// The certificate's PEM private key.
    #[arg(long, env = "TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM CA bundle that client certificates and other services'
    /// certificates must chain to.
    #[arg(long, env = "TLS_CA_FILE", requires = "tls_cert_file")]
    pub tls_ca_file: Option<PathBuf>,

    /// "require": every client presents a certificate signed by the CA;
    /// "optional": clients may come without one (a service's token is
    /// still honoured only over that service's own certificate).
    #[arg(long, env = "TLS_CLIENT_AUTH", value_enum, default_value = "require")]
    pub tls_client_auth: crate::tls::ClientAuth,

    /// How often the certificate, key and CA files are read again; a
    /// changed, usable set is used for new connections without a restart.
    #[arg(long, env = "TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    /// Address of a plaintext listener serving nothing but
    /// `grpc.health.v1.Health`, for probes that cannot speak TLS (the
    /// kubelet's native gRPC probe), or "off".
    #[arg(long, env = "HEALTH_LISTEN_ADDR", default_value = "off")]
    pub health_listen: OptionalAddr,
}

impl Default for TlsArgs {
    /// Plaintext, health on the gRPC port only.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            tls: TlsArgs,
        }
        <Defaults as clap::Parser>::parse_from(["defaults"]).tls
    }
}

impl TlsArgs {
    /// The TLS set-up the flags name, files read and checked; `None` for
    /// plaintext.
    pub fn load(&self) -> anyhow::Result<Option<crate::tls::Tls>> {
        let (Some(cert), Some(key), Some(ca)) =
            (&self.tls_cert_file, &self.tls_key_file, &self.tls_ca_file)
        else {
            return Ok(None);
        };
        let files = crate::tls::TlsFiles {
            identity: Some((cert.clone(), key.clone())),
            ca: ca.clone(),
        };
        Ok(Some(crate::tls::Tls::load(files, self.tls_client_auth)?))
    }
}

/// A socket address, or nothing ("off" or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "off" => Ok(OptionalAddr(None)),
            addr => addr
                .parse()
                .map(|a| OptionalAddr(Some(a)))
                .map_err(|e| format!("invalid address {addr:?} (expected host:port or off): {e}")),
        }
    }
}

/// Token verification for the service's own business methods.
#[derive(clap::Args, Debug, Clone)]
pub struct AuthArgs {
    /// Issuers whose tokens are accepted: NAME[:ROLE+ROLE]=PUBLIC_KEY_FILE,
    /// comma-separated. Without roles an issuer may grant any role. Example:
    /// "storefront=/keys/storefront.pub,order:service=/keys/order.pub".
    #[arg(long, env = "TRUSTED_ISSUERS")]
    pub trusted_issuers: String,

    /// The longest a token may live from its issue time (`exp - iat`);
    /// longer ones are refused, however valid their signature. Bounds what
    /// a leaked signing key can mint.
    #[arg(long, env = "TOKEN_MAX_LIFETIME", default_value = "12h", value_parser = parse_duration)]
    pub token_max_lifetime: Duration,
}

impl AuthArgs {
    /// The trusted issuers with their keys read; none at all is an error,
    /// since no token could ever be accepted.
    pub fn issuers(&self) -> anyhow::Result<crate::auth::TrustedIssuers> {
        let issuers = crate::auth::TrustedIssuers::load(&self.trusted_issuers)?;
        if issuers.is_empty() {
            anyhow::bail!("--trusted-issuers is empty: no token could ever be accepted");
        }
        Ok(issuers)
    }
}

/// Log output.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format: "json" (one object per line, for containers), "text"
    /// (for people) or "auto" (text on a terminal, JSON otherwise).
    #[arg(long, env = "LOG_FORMAT", default_value = "auto")]
    pub log_format: crate::telemetry::LogFormat,

    /// Log filter in `tracing` EnvFilter syntax, for example "info,sqlx=warn".
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// The service's PostgreSQL database.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// PostgreSQL URL of the service's own database, for example
    /// postgres://productinfo@db:5432/productinfo. The password may be in the
    /// URL or in --database-password-file.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// File holding the database password (a mounted Secret); overrides any
    /// password in the URL.
    #[arg(long, env = "DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,

    /// Most connections the service opens to its database.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,

    /// How long a call waits for a free connection before failing UNAVAILABLE.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,

    /// How often the health check asks the database whether it answers.
    #[arg(long, env = "DB_HEALTH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub db_health_interval: Duration,

    /// Longest a statement may run before the database cancels it (the call
    /// fails UNAVAILABLE): no slow query holds a connection for long.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,

    /// Longest a statement may wait for a row or table lock.
    #[arg(long, env = "DB_LOCK_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub db_lock_timeout: Duration,

    /// Longest a transaction may sit idle before the database ends it.
    #[arg(long, env = "DB_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub db_idle_in_transaction_timeout: Duration,
}

/// Parses durations such as `250ms`, `2s`, `1m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("2 weeks").is_err());
    }
}
