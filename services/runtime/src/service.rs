//! The one skeleton every service of the shop starts, runs and stops
//! through. A service says only what is its own, as a [`Service`]: its
//! flags and how they are checked, its routes, its background tasks.
//! Everything else is written here, once:
//!
//! - **`main`** ([`main`]): the `serve`, `migrate` and `check-config`
//!   subcommands, logs first, one clear line on stderr when it fails, exit
//!   codes 0, 1 and 2 (unusable log settings).
//! - **Configuration parsed once** ([`prepare`]): flags become a
//!   [`Prepared`] service (URLs parsed, keys and password files read) or a
//!   clear error. `check-config` runs exactly that and nothing else, so it
//!   accepts what `serve` accepts.
//! - **Run** ([`Prepared::run`]): migrations if asked, the database pool and
//!   its health check, the service's own start-up ([`Service::start`]),
//!   then every listener served ([`Server::serve`](crate::server::Server::serve))
//!   until the shutdown signal.
//! - **One task group** ([`Context::spawn`]): every background task of the
//!   service (health check, outbox worker, LISTEN connection, cleanup) is
//!   owned here and stopped in one order, after the listeners.
//! - **One drain for every listener**, gRPC and HTTP alike (see
//!   [`crate::server`]): NOT_SERVING, keep serving for `--drain-delay`,
//!   stop accepting, `--shutdown-grace` for calls in flight, cut the rest;
//!   then the tasks stop and the database closes.
//!
//! Tests call the same code: [`Service::run`] with listeners bound to port 0
//! and a oneshot as the signal.

use std::{future::Future, net::SocketAddr, path::Path, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use sqlx::{migrate::Migrator, postgres::PgConnectOptions};
use tokio::{net::TcpListener, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::{
    auth::{AuthInterceptor, Verifier},
    config::{Config, DbArgs, LimitArgs, LogArgs, ServerArgs, TlsArgs, WebArgs},
    health::HealthRegistry,
    metrics::Metrics,
    pg::{self, Db},
    server::{ServeOptions, Server},
};

/// What makes one service of the shop: everything the skeleton does not do
/// the same way for all of them.
pub trait Service: Sized + Send + 'static {
    /// The name the service answers to in token audiences, logs and metrics.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// The gRPC service (`package.Service`) whose health follows the database.
    const GRPC_SERVICE: &'static str;
    /// The encoded descriptor sets of the contract the service implements
    /// (for reflection and for telling streaming methods apart).
    const DESCRIPTOR_SETS: &'static [&'static [u8]];

    /// The service's schema migrations (`sqlx::migrate!()`: embedded in
    /// the binary).
    const MIGRATOR: &'static Migrator;

    /// The service's own flags, after the ones every service has.
    type Args: clap::Args + Clone + std::fmt::Debug + Send;

    /// The web listener, for a service that serves HTTP to browsers.
    fn web(_args: &Self::Args) -> Option<&WebArgs> {
        None
    }

    /// Turns the service's own flags into what it runs with (files read,
    /// values checked), contacting nothing: `check-config` is this.
    fn prepare(args: Self::Args) -> anyhow::Result<Self>;

    /// Builds the service's routes (and web pages) over the shared parts,
    /// spawning its background tasks into `ctx`.
    fn start(self, ctx: &mut Context) -> impl Future<Output = anyhow::Result<Endpoints>> + Send;

    /// Prepares `config` and serves on `listeners` until `shutdown`
    /// completes, then drains and stops: what `serve` does, with the
    /// listeners and the signal given (tests bind port 0 and pass a oneshot).
    fn run(
        config: Config<Self::Args>,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move { prepare::<Self>(config)?.run(listeners, shutdown).await }
    }
}

/// What a service serves: gRPC routes (its own services, with their auth;
/// health and reflection are added) and, optionally, a web router.
pub struct Endpoints {
    pub grpc: Routes,
    pub web: Option<axum::Router>,
}

impl Endpoints {
    /// gRPC only.
    pub fn grpc(routes: Routes) -> Self {
        Self {
            grpc: routes,
            web: None,
        }
    }
}

/// What a service's start-up gets to build on.
pub struct Context {
    /// The service's database.
    pub db: Db,
    /// How to reach the database outside the pool (say, for LISTEN).
    pub db_options: PgConnectOptions,
    /// Where every layer and collector records.
    pub metrics: Metrics,
    /// What `grpc.health.v1.Health` reports.
    pub health: HealthRegistry,
    /// Cancelled when the listeners stop accepting: long-lived streams end
    /// then, so calls in flight can finish within the grace period.
    pub stopping: CancellationToken,
    /// Slots for the service's bulk streams (`--max-bulk-streams`): take
    /// one for each search stream and keep it in the stream.
    pub bulk_streams: crate::slots::Slots,
    /// The largest request message, in bytes (`--max-message-size`): give
    /// it to each generated server's `max_decoding_message_size`, which
    /// also bounds what a compressed message may grow to.
    pub max_message_size: usize,
    /// The service's TLS (`None`: plaintext): give it to every
    /// [`Caller`](crate::upstream::Caller), so calls to other services
    /// present the service's certificate.
    pub tls: Option<crate::tls::Tls>,
    verifier: Arc<Verifier>,
    tasks: Tasks,
    db_args: crate::config::DbArgs,
    /// Read replicas' connections, closed with the database's.
    replica_dbs: Vec<Db>,
}

impl Context {
    /// The interceptor that verifies every call's token.
    pub fn auth(&self) -> AuthInterceptor {
        AuthInterceptor::new(self.verifier.clone())
    }

    /// Like [`auth`](Self::auth), for services with methods open to
    /// anonymous callers (they check for a principal themselves).
    pub fn auth_allowing_anonymous(&self) -> AuthInterceptor {
        AuthInterceptor::allowing_anonymous(self.verifier.clone())
    }

    /// Runs `task` in the background until the service stops: it is
    /// dropped at its next await point once the listeners have closed, so
    /// a task must leave nothing half-done that matters at an await (the
    /// shop's tasks keep their work in the database and pick it up again).
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(name, task);
    }

    /// Where the service's reads go ([`pg::Reads`]): on the read-only
    /// replica at `replica_url` (same password file, timeouts and pool
    /// size as the service's database) while it is within `max_lag` of the
    /// primary, else on the primary; its monitor runs as a background
    /// task. Without a URL, every read is on the primary.
    pub fn reads(
        &mut self,
        replica_url: Option<&str>,
        max_lag: std::time::Duration,
    ) -> anyhow::Result<pg::Reads> {
        let Some(url) = replica_url else {
            return Ok(pg::Reads::primary_only(self.db.clone()));
        };
        let args = crate::config::DbArgs {
            database_url: url.to_owned(),
            // A replica that cannot give a connection within a second (a
            // new one included: connecting and authenticating) is skipped:
            // the read runs on the primary instead of waiting longer.
            db_acquire_timeout: self
                .db_args
                .db_acquire_timeout
                .min(std::time::Duration::from_secs(1)),
            ..self.db_args.clone()
        };
        let options = pg::connect_options(
            &args,
            self.db_options.get_application_name().unwrap_or_default(),
        )
        .map_err(|e| anyhow::anyhow!("read replica: {e:#}"))?;
        let replica = pg::Db::new(&args, options, None);
        self.replica_dbs.push(replica.clone());
        let reads = pg::Reads::with_replica(self.db.clone(), replica, max_lag, &self.metrics);
        self.spawn("read replica monitor", reads.clone().monitor());
        Ok(reads)
    }
}

/// The background tasks of one service, stopped together.
struct Tasks {
    set: JoinSet<()>,
    stop: CancellationToken,
}

impl Tasks {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.set.spawn(async move {
            tokio::select! {
                () = task => tracing::debug!(task = name, "background task finished"),
                () = stop.cancelled() => tracing::debug!(task = name, "background task stopped"),
            }
        });
    }

    /// Stops every task and waits for them until `by`; what is still
    /// running then is aborted.
    async fn stop(mut self, by: Instant) {
        self.stop.cancel();
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout_at(by, all).await.is_err() {
            tracing::warn!(
                "background tasks still running at the end of the grace period were cut"
            );
            self.set.shutdown().await;
        }
    }
}

/// The sockets a service serves on, bound before it starts (tests bind
/// port 0 and read the addresses back).
pub struct Listeners {
    pub grpc: TcpListener,
    /// The web listener (services with [`Service::web`] only).
    pub web: Option<TcpListener>,
    /// `/metrics`, when served.
    pub metrics: Option<TcpListener>,
    /// Plaintext `grpc.health.v1` only, for probes that cannot do TLS.
    pub health: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address the configuration names.
    pub async fn bind(
        server: &ServerArgs,
        web: Option<&WebArgs>,
        tls: &TlsArgs,
    ) -> anyhow::Result<Self> {
        let optional = async |addr: Option<SocketAddr>, what: &str| match addr {
            Some(addr) => listen(addr, what).await.map(Some),
            None => Ok(None),
        };
        Ok(Self {
            grpc: listen(server.listen, "gRPC").await?,
            web: optional(web.map(|w| w.http_listen), "the web shop").await?,
            metrics: optional(server.metrics_addr.0, "metrics").await?,
            health: optional(tls.health_listen.0, "plaintext health").await?,
        })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> std::io::Result<Addrs> {
        let addr = |l: &Option<TcpListener>| l.as_ref().map(TcpListener::local_addr).transpose();
        Ok(Addrs {
            grpc: self.grpc.local_addr()?,
            web: addr(&self.web)?,
            metrics: addr(&self.metrics)?,
            health: addr(&self.health)?,
        })
    }
}

async fn listen(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

/// Where a service listens, as its address file (`--addr-file`) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    pub grpc: SocketAddr,
    pub web: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// The plaintext health-only listener.
    pub health: Option<SocketAddr>,
}

impl Addrs {
    /// The file's text: one `name=address` line per listener.
    pub fn to_file_text(&self) -> String {
        let mut text = format!("grpc={}\n", self.grpc);
        if let Some(web) = self.web {
            text.push_str(&format!("web={web}\n"));
        }
        if let Some(metrics) = self.metrics {
            text.push_str(&format!("metrics={metrics}\n"));
        }
        if let Some(health) = self.health {
            text.push_str(&format!("health={health}\n"));
        }
        text
    }

    /// Reads an address file; `None` until it is complete (it has its
    /// `grpc=` line).
    pub fn read(path: &Path) -> Option<Addrs> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut addrs: [Option<SocketAddr>; 4] = [None; 4];
        for line in text.lines() {
            let (name, addr) = line.split_once('=')?;
            let addr = addr.trim().parse().ok()?;
            match name.trim() {
                "grpc" => addrs[0] = Some(addr),
                "web" => addrs[1] = Some(addr),
                "metrics" => addrs[2] = Some(addr),
                "health" => addrs[3] = Some(addr),
                _ => {}
            }
        }
        Some(Addrs {
            grpc: addrs[0]?,
            web: addrs[1],
            metrics: addrs[2],
            health: addrs[3],
        })
    }
}

/// A service with its configuration parsed and checked: what
/// `check-config` approves and `serve` runs.
pub struct Prepared<S> {
    service: S,
    server: ServerArgs,
    limits: LimitArgs,
    web: Option<WebArgs>,
    db: DbArgs,
    db_options: PgConnectOptions,
    verifier: Arc<Verifier>,
    migrate: bool,
    tls_args: TlsArgs,
    tls: Option<crate::tls::Tls>,
}

/// Parses and checks `config` for service `S`, contacting nothing.
pub fn prepare<S: Service>(config: Config<S::Args>) -> anyhow::Result<Prepared<S>> {
    let db_options = pg::connect_options(&config.db, S::NAME)?;
    let verifier = Arc::new(Verifier::new(
        S::NAME,
        config.auth.issuers()?,
        config.auth.token_max_lifetime,
    ));
    let web = S::web(&config.service).cloned();
    let tls = config.tls.load()?;
    if let Some(file) = &config.server.faults_file
        && let Ok(text) = std::fs::read_to_string(file)
    {
        // A missing file is no faults (it may be mounted later); a bad one
        // is refused here so `check-config` catches it.
        crate::fault::Faults::parse(S::NAME, &text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    }
    let mut limits = config.limits;
    if limits.max_in_flight == 0 {
        // Two calls per connection: every connection stays busy while a
        // call is between queries, and few wait for one. Measured (`make
        // bench`, 2,000 callers): four per connection served no more and
        // doubled the admitted calls' p99; one per connection refused
        // addOrder at 16 callers, whose calls spend time upstream.
        limits.max_in_flight = 2 * config.db.db_max_connections.max(1);
    }
    Ok(Prepared {
        service: S::prepare(config.service)?,
        server: config.server,
        limits,
        web,
        db: config.db,
        db_options,
        verifier,
        migrate: config.migrate,
        tls_args: config.tls,
        tls,
    })
}

impl<S: Service> Prepared<S> {
    /// Binds the listeners the configuration names.
    pub async fn listen(&self) -> anyhow::Result<Listeners> {
        Listeners::bind(&self.server, self.web.as_ref(), &self.tls_args).await
    }

    /// Serves on `listeners` until `shutdown` completes, then drains (see
    /// the module documentation) and stops.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        if self.migrate {
            pg::migrate(&self.db_options, S::MIGRATOR).await?;
        }
        let server = Server::new(S::NAME, S::DESCRIPTOR_SETS);
        let stopping = CancellationToken::new();
        let db = Db::new(&self.db, self.db_options.clone(), Some(&server.metrics));
        let mut ctx = Context {
            db: db.clone(),
            db_options: self.db_options.clone(),
            metrics: server.metrics.clone(),
            health: server.health.clone(),
            stopping: stopping.clone(),
            max_message_size: self.limits.max_message_size as usize,
            bulk_streams: crate::slots::Slots::new(
                self.limits.max_bulk_streams as usize,
                "searches",
            ),
            tls: self.tls.clone(),
            verifier: self.verifier,
            tasks: Tasks {
                set: JoinSet::new(),
                stop: CancellationToken::new(),
            },
            db_args: self.db.clone(),
            replica_dbs: Vec::new(),
        };
        ctx.spawn(
            "database health check",
            pg::health_check(
                self.db_options,
                S::MIGRATOR,
                server.health.clone(),
                vec![String::new(), S::GRPC_SERVICE.to_owned()],
                self.db.db_health_interval,
            ),
        );
        if let Some(tls) = &self.tls {
            ctx.spawn(
                "TLS files reload",
                tls.clone().watch(self.tls_args.tls_reload_interval),
            );
            server.metrics.watch_tls(tls);
        }
        let faults = self.server.faults_file.clone().map(|file| {
            let board = crate::fault::Switchboard::default();
            ctx.spawn(
                "fault flags",
                board.clone().watch(S::NAME, file, server.health.clone()),
            );
            board
        });
        let started = self.service.start(&mut ctx).await;
        let tasks = ctx.tasks;
        let replica_dbs = ctx.replica_dbs;
        let result = match started {
            Ok(endpoints) => {
                let mut options = ServeOptions::new(&self.server, self.limits.clone());
                options.tls = self.tls;
                options.faults = faults;
                if let Some(web) = &self.web {
                    options.web_max_connections = web.http_max_connections;
                }
                server
                    .serve(listeners, endpoints, options, shutdown, stopping)
                    .await
            }
            Err(e) => Err(e),
        };
        // The listeners are closed and calls have finished (or were cut):
        // now the tasks, then the database.
        tasks
            .stop(Instant::now() + self.server.shutdown_grace)
            .await;
        db.close().await;
        for replica in replica_dbs {
            replica.close().await;
        }
        result
    }
}

/// The command line of service `S` (for `--help`, and for tests that check
/// its flags do not clash).
pub fn command<S: Service>() -> clap::Command {
    Cli::<S::Args>::command().name(S::NAME).about(S::ABOUT)
}

/// The whole `main` of service `S`: parses the command line, installs
/// logging, runs the subcommand and turns the outcome into an exit code.
pub async fn main<S: Service>() -> ExitCode {
    let cli = Cli::<S::Args>::from_arg_matches(&command::<S>().get_matches())
        .unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(config) => {
            let log = config.log.clone();
            with_logs(S::NAME, &log, async move {
                let prepared = prepare::<S>(*config)?;
                let listeners = prepared.listen().await?;
                prepared
                    .run(listeners, crate::server::shutdown_signal())
                    .await
            })
            .await
        }
        Command::Migrate { db, log } => {
            with_logs(S::NAME, &log, async move {
                pg::migrate(&pg::connect_options(&db, S::NAME)?, S::MIGRATOR).await?;
                tracing::info!("migrations applied");
                Ok(())
            })
            .await
        }
        Command::CheckConfig(config) => {
            let log = config.log.clone();
            with_logs(S::NAME, &log, async move {
                prepare::<S>(*config)?;
                println!("{}: configuration OK", S::NAME);
                Ok(())
            })
            .await
        }
    }
}

/// A service's command line.
#[derive(clap::Parser, Debug)]
#[command(version)]
struct Cli<A: clap::Args> {
    #[command(subcommand)]
    command: Command<A>,
}

#[derive(clap::Subcommand, Debug)]
enum Command<A: clap::Args> {
    /// Serve gRPC (with health and reflection), the web shop where there is
    /// one, and /metrics, until SIGTERM or SIGINT.
    Serve(Box<Config<A>>),
    /// Apply the database migrations and exit (run by a Kubernetes Job
    /// before each install or upgrade).
    Migrate {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Check the serving configuration (flags, environment, key and password
    /// files, database URL, upstream targets) and exit 0 if `serve` would
    /// accept it; nothing is contacted.
    CheckConfig(Box<Config<A>>),
}

/// Installs logging and tracing per `log` for service `name`, runs
/// `command`, flushes traces, and turns the outcome into the process exit
/// code (0 success, 1 failure, 2 unusable log settings).
async fn with_logs(
    name: &str,
    log: &LogArgs,
    command: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let telemetry = match crate::telemetry::init(log, name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match command.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Spans still buffered are exported before the process ends.
    telemetry.shutdown().await;
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_files_round_trip_and_need_their_grpc_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addr");
        let addrs = Addrs {
            grpc: "127.0.0.1:7101".parse().unwrap(),
            web: Some("127.0.0.1:8080".parse().unwrap()),
            metrics: None,
            health: Some("127.0.0.1:7102".parse().unwrap()),
        };
        std::fs::write(&path, addrs.to_file_text()).unwrap();
        assert_eq!(Addrs::read(&path), Some(addrs));

        std::fs::write(&path, "web=127.0.0.1:8080\n").unwrap();
        assert_eq!(Addrs::read(&path), None, "not complete without grpc=");
        assert_eq!(Addrs::read(&dir.path().join("missing")), None);
    }
}
