//! The one way a service of the shop calls another: [`Upstream`].
//!
//! Built once at start-up and cloned freely (clones share connections).
//! Every call made through it:
//!
//! - goes to the next ready replica, in strict rotation ([`Balanced`]), and
//!   is traced and counted ([`Observed`]);
//! - carries a token: the calling service's own service token (audience: the
//!   called service), or the one the call names ([`Call::on_behalf`], for
//!   the storefront acting for a person);
//! - carries a deadline: what is left of the incoming call's deadline, minus
//!   [`MARGIN`](crate::deadline::MARGIN), and never more than
//!   `--upstream-timeout`. A call with no time left is not sent at all;
//! - fails with an [`UpstreamError`] whose [`Fault`] is decided in one place,
//!   [`Fault::of`], for every service: the caller acts on the fault (pass a
//!   "no" on, say "try later", report a bug), never on raw status codes;
//! - if it is [idempotent](Call::idempotent) and failed `UNAVAILABLE` (or
//!   `RESOURCE_EXHAUSTED` with the server's `grpc-retry-pushback-ms` hint),
//!   is tried again, at most `--upstream-retries` times, after a random
//!   pause (full jitter, growing) or the pause the server asked for, which
//!   must fit in its deadline. The balancer has already moved calls that
//!   never reached a replica; these retries cover a replica that answered
//!   `UNAVAILABLE` itself (draining, say) or was shedding load.

use std::{future::Future, sync::atomic::Ordering, time::Duration};

use tonic::{Code, Request, Response, Status, Streaming, metadata::AsciiMetadataValue};

use crate::{
    auth::{ServiceToken, Signer},
    balance::{BalanceConfig, Balanced, Target},
    config::UpstreamArgs,
    deadline::Deadline,
    metrics::Metrics,
    pg::Lsn,
    telemetry::{Methods, client::Observed},
};

/// How long the service's own tokens live; a fresh one is minted at half-life.
const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(600);

/// The first retry waits up to this long; each further one up to twice as long.
const RETRY_BASE: Duration = Duration::from_millis(25);

/// How a service calls the others, prepared from [`UpstreamArgs`]: its
/// signing key read, its defaults checked.
#[derive(Debug, Clone)]
pub struct Caller {
    signer: Signer,
    timeout: Duration,
    retries: u32,
    resolve_interval: Duration,
    tls: Option<crate::tls::Tls>,
}

impl Caller {
    /// Reads the signing key of service `name` (the issuer unless
    /// `--token-issuer` says otherwise).
    pub fn prepare(args: &UpstreamArgs, name: &str) -> anyhow::Result<Self> {
        let issuer = args.token_issuer.clone().unwrap_or_else(|| name.to_owned());
        Ok(Self {
            signer: Signer::from_file(issuer, &args.signing_key_file)?,
            timeout: args.upstream_timeout,
            retries: args.upstream_retries,
            resolve_interval: args.resolve_interval,
            tls: None,
        })
    }

    /// Calls over TLS as `tls` says ([`Context::tls`](crate::service::Context::tls)):
    /// the service's certificate is presented, and each called service must
    /// prove it is the service named in its [`Peer`]. `None`: plaintext.
    pub fn with_tls(mut self, tls: Option<crate::tls::Tls>) -> Self {
        self.tls = tls;
        self
    }

    /// The key this service signs with (the storefront also signs people's
    /// tokens with it).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }
}

/// Who is called.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The service's name: its tokens' audience, and its name in logs and metrics.
    pub name: &'static str,
    /// The gRPC service whose health says a replica is ready.
    pub health_service: &'static str,
    /// The encoded descriptor sets of its contract (to tell streaming
    /// methods apart in metrics).
    pub contract: &'static [&'static [u8]],
}

/// The client of one other service; `C` is its generated client type.
#[derive(Clone, Debug)]
pub struct Upstream<C> {
    peer: Peer,
    client: C,
    balanced: Balanced,
    token: std::sync::Arc<ServiceToken>,
    timeout: Duration,
    retries: u32,
    retried: metrics::Counter,
    /// The furthest database position this service's writes through this
    /// upstream reached ([`WRITTEN_HEADER`](crate::pg::replica::WRITTEN_HEADER));
    /// sent with every call so reads see those writes even on a replica.
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// How one call is made: within which deadline, as whom, and whether it may
/// be sent twice.
#[derive(Debug, Clone)]
pub struct Call {
    deadline: Deadline,
    timeout: Option<Duration>,
    on_behalf: Option<AsciiMetadataValue>,
    idempotent: bool,
}

impl Call {
    /// A call made while serving a call with `deadline` (or
    /// [`Deadline::NONE`]), as this service, not retried.
    pub fn within(deadline: Deadline) -> Self {
        Self {
            deadline,
            timeout: None,
            on_behalf: None,
            idempotent: false,
        }
    }

    /// Safe to send more than once (a read, or a write keyed so a repeat
    /// changes nothing): retried on `UNAVAILABLE`.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sends `authorization` (`Bearer <token>`) instead of the service's own
    /// token: the called service checks that person's role.
    pub fn on_behalf(mut self, authorization: AsciiMetadataValue) -> Self {
        self.on_behalf = Some(authorization);
        self
    }

    /// Allows `timeout` instead of `--upstream-timeout` (long streams),
    /// still never past the caller's deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a failed call means to the caller, whatever the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The called service has no such thing.
    NotFound,
    /// The request was not valid (the caller passed on bad input, or has a bug).
    Invalid,
    /// A definite "no" worded for the end user (not enough stock, a state
    /// that does not allow it, a conflict to retry later): nothing happened.
    Refused,
    /// The person the call was made for may not do this.
    Denied,
    /// No answer, or not in time: the call may or may not have happened.
    Unavailable,
    /// A bug or a misconfiguration (our own token refused, an internal error).
    Broken,
}

impl Fault {
    /// The one place that sorts the status codes of other services.
    pub fn of(code: Code, on_behalf: bool) -> Fault {
        match code {
            Code::NotFound => Fault::NotFound,
            Code::InvalidArgument => Fault::Invalid,
            Code::FailedPrecondition | Code::AlreadyExists | Code::OutOfRange | Code::Aborted => {
                Fault::Refused
            }
            Code::PermissionDenied if on_behalf => Fault::Denied,
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted
            | Code::Unknown => Fault::Unavailable,
            // Our own token refused, or an upstream bug: nothing the end
            // user can do about it.
            Code::Ok
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::Internal
            | Code::Unimplemented
            | Code::DataLoss => Fault::Broken,
        }
    }
}

/// A failed call to another service.
#[derive(Debug, thiserror::Error)]
#[error("{upstream} answered {}: {}", .status.code(), .status.message())]
pub struct UpstreamError {
    /// The called service.
    pub upstream: &'static str,
    /// What it means to the caller.
    pub fault: Fault,
    /// The status as the called service sent it (with its details).
    pub status: Status,
}

/// Status metadata that marks a failure before anything was sent: no
/// replica could take the call, its deadline had passed, or no token could
/// be made. The called service certainly did nothing.
/// Only this process marks a status so: the balancer strips the header
/// from every answer that came over the network
/// ([`strip_not_sent`]), so no server can make its caller believe a call
/// it received never arrived.
const NOT_SENT: &str = "shop-not-sent";

/// `response` from the network without any [`NOT_SENT`] mark, in its
/// headers (a trailers-only answer) or its trailers.
pub(crate) fn strip_not_sent(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    use http_body_util::BodyExt as _;
    response.headers_mut().remove(NOT_SENT);
    response.map(|body| {
        tonic::body::Body::new(body.map_frame(|frame| match frame.into_trailers() {
            Ok(mut trailers) => {
                trailers.remove(NOT_SENT);
                http_body::Frame::trailers(trailers)
            }
            Err(frame) => frame,
        }))
    })
}

/// `status`, marked as a call that was never sent.
pub(crate) fn not_sent(mut status: Status) -> Status {
    status
        .metadata_mut()
        .insert(NOT_SENT, tonic::metadata::MetadataValue::from_static("1"));
    status
}

impl UpstreamError {
    /// Whether the call certainly never reached the upstream (so it did
    /// nothing there): the caller need not plan for it having happened.
    pub fn never_sent(&self) -> bool {
        self.status.metadata().contains_key(NOT_SENT)
    }

    /// The status for our own caller, in the shop's usual way: a "no" is
    /// passed on with its details, "unavailable" is said in our words, a
    /// bug is logged and opaque.
    pub fn into_status(self) -> Status {
        match self.fault {
            Fault::NotFound | Fault::Invalid | Fault::Refused | Fault::Denied => self.status,
            Fault::Unavailable => {
                tracing::warn!(upstream = self.upstream, code = ?self.status.code(), message = self.status.message(), "upstream unavailable");
                if self.status.code() == Code::DeadlineExceeded {
                    Status::deadline_exceeded(format!("{} did not answer in time", self.upstream))
                } else {
                    Status::unavailable(format!(
                        "{} is unavailable; try again later",
                        self.upstream
                    ))
                }
            }
            Fault::Broken => crate::error::internal(&self),
        }
    }
}

/// Whether a failed idempotent call may be sent again: the upstream was
/// unavailable, or it was busy and said when to come back.
fn retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable
        || (status.code() == Code::ResourceExhausted && crate::pushback::of(status).is_some())
}

/// An answer, or `None` where the called service has no such thing (not
/// found, or an id it cannot even parse).
pub fn found<T>(result: Result<T, UpstreamError>) -> Result<Option<T>, UpstreamError> {
    match result {
        Ok(answer) => Ok(Some(answer)),
        Err(e) if matches!(e.fault, Fault::NotFound | Fault::Invalid) => Ok(None),
        Err(e) => Err(e),
    }
}

impl<C: Clone> Upstream<C> {
    /// A client of `peer` at `target`, calling as `caller`, recording into
    /// `metrics`; `client` wraps the channel in the generated client.
    pub fn new(
        caller: &Caller,
        peer: Peer,
        target: Target,
        metrics: &Metrics,
        client: impl FnOnce(Observed<Balanced>) -> C,
    ) -> Self {
        let balanced = Balanced::new(
            target,
            BalanceConfig {
                refresh: caller.resolve_interval,
                tls: caller.tls.as_ref().map(|tls| {
                    crate::tls::connect::Connector::new(tls.clone(), peer.name)
                        .expect("a peer's name is a DNS name")
                }),
                ..BalanceConfig::new(peer.name, peer.health_service)
            },
        );
        metrics.watch_balancer(peer.name, &balanced);
        // No compression: the messages are small and the network is local,
        // so gzip would cost CPU for nothing (servers still accept it).
        let observed = Observed::new(
            balanced.clone(),
            peer.name,
            metrics,
            Methods::from_descriptor_sets(peer.contract),
        );
        Self {
            peer,
            client: client(observed),
            balanced,
            token: std::sync::Arc::new(ServiceToken::new(
                caller.signer.clone(),
                vec![peer.name.to_owned()],
                SERVICE_TOKEN_TTL,
            )),
            timeout: caller.timeout,
            retries: caller.retries,
            retried: metrics.counter("shop_upstream_retries_total", &[("upstream", peer.name)]),
            written: std::sync::Arc::default(),
        }
    }

    /// Whether some replica is ready to take calls right now.
    pub fn has_ready(&self) -> bool {
        self.balanced.has_ready()
    }

    /// Makes `rpc` with `message`, retrying it as the module documentation
    /// says when `call` is idempotent (the message is copied only then).
    pub async fn call<M, R, F, Fut>(
        &self,
        call: Call,
        message: M,
        rpc: F,
    ) -> Result<R, UpstreamError>
    where
        M: Clone,
        F: Fn(C, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let call = self.bounded(call);
        let mut attempt = 0;
        // Whether an earlier attempt may have reached the upstream: then
        // the call as a whole may have happened, whatever the last says.
        let mut maybe_sent = false;
        let outcome = |result: Result<R, UpstreamError>, maybe_sent: bool| {
            result.map_err(|mut e| {
                if maybe_sent {
                    e.status.metadata_mut().remove(NOT_SENT);
                }
                e
            })
        };
        loop {
            if !(call.idempotent && attempt < self.retries) {
                // The last try sends the message itself, not a copy.
                return outcome(self.send(&call, message, &rpc).await, maybe_sent);
            }
            match self.send(&call, message.clone(), &rpc).await {
                Err(e) if retryable(&e.status) => {
                    maybe_sent |= !e.never_sent();
                    let pause = crate::pushback::of(&e.status).unwrap_or_else(|| {
                        RETRY_BASE
                            .saturating_mul(1 << attempt.min(8))
                            .mul_f64(fastrand::f64())
                    });
                    let fits = call
                        .deadline
                        .remaining()
                        .is_some_and(|left| left > pause + crate::deadline::MARGIN * 2);
                    if !fits {
                        return outcome(Err(e), maybe_sent);
                    }
                    tracing::debug!(
                        upstream = self.peer.name,
                        attempt,
                        pause_ms = pause.as_millis() as u64,
                        "retrying an idempotent call"
                    );
                    self.retried.increment(1);
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                other => return outcome(other, maybe_sent),
            }
        }
    }

    /// The next message of a response stream from this upstream, a failure
    /// mid-stream sorted like any other.
    pub async fn next<T>(&self, stream: &mut Streaming<T>) -> Result<Option<T>, UpstreamError> {
        stream.message().await.map_err(|status| UpstreamError {
            upstream: self.peer.name,
            fault: Fault::of(status.code(), false),
            status,
        })
    }

    /// `call` with one deadline for all its attempts: the caller's, or one
    /// timeout from now, whichever comes first.
    fn bounded(&self, call: Call) -> Call {
        let own = Deadline::after(call.timeout.unwrap_or(self.timeout));
        Call {
            deadline: call.deadline.min(own),
            ..call
        }
    }

    /// One attempt: the request with its timeout and token, sent.
    async fn send<M, R, F, Fut>(&self, call: &Call, message: M, rpc: F) -> Result<R, UpstreamError>
    where
        F: FnOnce(C, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let mut request = Request::new(message);
        let budget = call
            .deadline
            .budget(call.timeout.unwrap_or(self.timeout))
            .map_err(|status| self.error(call, not_sent(status)))?;
        request.set_timeout(budget);
        let authorization = match &call.on_behalf {
            Some(value) => value.clone(),
            None => self
                .token
                .authorization()
                .map_err(|status| self.error(call, not_sent(status)))?,
        };
        request
            .metadata_mut()
            .insert("authorization", authorization);
        let written = self.written.load(Ordering::Relaxed);
        if written != 0 {
            Lsn(written).stamp_read_after(request.metadata_mut());
        }
        rpc(self.client.clone(), request)
            .await
            .map(|response| {
                if let Some(lsn) = Lsn::written(response.metadata()) {
                    self.written.fetch_max(lsn.0, Ordering::Relaxed);
                }
                response.into_inner()
            })
            .map_err(|status| self.error(call, status))
    }

    fn error(&self, call: &Call, status: Status) -> UpstreamError {
        let on_behalf = call.on_behalf.is_some();
        let fault = Fault::of(status.code(), on_behalf);
        if !on_behalf
            && matches!(
                status.code(),
                Code::Unauthenticated | Code::PermissionDenied
            )
        {
            tracing::error!(
                upstream = self.peer.name,
                message = status.message(),
                "the upstream refused this service's own token: check its TRUSTED_ISSUERS (and RESERVE_CALLERS)"
            );
        }
        UpstreamError {
            upstream: self.peer.name,
            fault,
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use tokio::net::TcpListener;
    use tonic_health::pb::{
        HealthCheckRequest, HealthCheckResponse,
        health_check_response::ServingStatus,
        health_client::HealthClient,
        health_server::{Health, HealthServer},
    };

    use super::*;

    /// A health service whose Check answers UNAVAILABLE the first `failures`
    /// times and counts every Check it gets; its Watch says SERVING.
    #[derive(Clone)]
    struct Flaky {
        failures: u32,
        checks: Arc<AtomicU32>,
    }

    #[tonic::async_trait]
    impl Health for Flaky {
        async fn check(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            let n = self.checks.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                return Err(Status::unavailable("draining"));
            }
            Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            }))
        }

        type WatchStream = futures::stream::BoxStream<'static, Result<HealthCheckResponse, Status>>;

        async fn watch(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            use futures::StreamExt as _;
            let serving = HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            };
            Ok(Response::new(
                futures::stream::once(async move { Ok(serving) })
                    .chain(futures::stream::pending())
                    .boxed(),
            ))
        }
    }

    const PEER: Peer = Peer {
        name: "flaky",
        health_service: "",
        contract: &[],
    };

    /// A flaky server failing `failures` times, and an upstream client of it.
    async fn flaky(
        failures: u32,
    ) -> (
        Arc<AtomicU32>,
        Upstream<HealthClient<Observed<Balanced>>>,
        Metrics,
    ) {
        let checks = Arc::new(AtomicU32::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HealthServer::new(Flaky {
                    failures,
                    checks: checks.clone(),
                }))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let metrics = Metrics::new("caller");
        (checks, upstream_of(addr, &metrics), metrics)
    }

    /// An upstream client of the health service at `addr` (two retries).
    fn upstream_of(
        addr: std::net::SocketAddr,
        metrics: &Metrics,
    ) -> Upstream<HealthClient<Observed<Balanced>>> {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = crate::auth::ensure_keypair(dir.path(), "caller").unwrap();
        let caller = Caller::prepare(
            &UpstreamArgs {
                signing_key_file: key,
                token_issuer: None,
                upstream_timeout: Duration::from_secs(5),
                upstream_retries: 2,
                resolve_interval: Duration::from_secs(30),
            },
            "caller",
        )
        .unwrap();
        Upstream::new(
            &caller,
            PEER,
            Target::Static(vec![addr.to_string()]),
            metrics,
            HealthClient::new,
        )
    }

    /// Serves `health` on a free port until the test ends; its address.
    async fn serve(health: impl Health) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HealthServer::new(health))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    }

    async fn check(
        upstream: &Upstream<HealthClient<Observed<Balanced>>>,
        call: Call,
    ) -> Result<HealthCheckResponse, UpstreamError> {
        upstream
            .call(call, HealthCheckRequest::default(), |mut c, r| async move {
                c.check(r).await
            })
            .await
    }

    /// A health service whose Check answers report the database positions
    /// `written` in turn ([`WRITTEN_HEADER`](crate::pg::replica::WRITTEN_HEADER))
    /// and note the position each request asked to read after.
    #[derive(Clone)]
    struct Writer {
        written: Arc<Vec<u64>>,
        asked: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    }

    #[tonic::async_trait]
    impl Health for Writer {
        async fn check(
            &self,
            request: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            let mut asked = self.asked.lock().unwrap();
            asked.push(
                request
                    .metadata()
                    .get(crate::pg::replica::READ_AFTER_HEADER)
                    .map(|v| v.to_str().unwrap().to_owned()),
            );
            let mut response = Response::new(HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            });
            if let Some(&lsn) = self.written.get(asked.len() - 1) {
                Lsn(lsn).stamp_written(response.metadata_mut());
            }
            Ok(response)
        }

        type WatchStream = futures::stream::BoxStream<'static, Result<HealthCheckResponse, Status>>;

        async fn watch(
            &self,
            request: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            Flaky {
                failures: 0,
                checks: Arc::default(),
            }
            .watch(request)
            .await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_ask_to_read_after_the_furthest_write_the_upstream_reported() {
        let writer = Writer {
            // A write, a read (no position), an older position, nothing.
            written: Arc::new(vec![0x1_0000_0010, 0, 0x20]),
            asked: Arc::default(),
        };
        let addr = serve(writer.clone()).await;
        let upstream = upstream_of(addr, &Metrics::new("caller"));
        for _ in 0..4 {
            check(&upstream, Call::within(Deadline::NONE))
                .await
                .unwrap();
        }
        let asked = writer.asked.lock().unwrap().clone();
        let after = Some("1/10".to_owned());
        assert_eq!(asked, vec![None, after.clone(), after.clone(), after]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idempotent_call_is_retried_on_unavailable_and_counted() {
        let (checks, upstream, metrics) = flaky(2).await;

        let answer = check(&upstream, Call::within(Deadline::NONE).idempotent()).await;

        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(
            checks.load(Ordering::SeqCst),
            3,
            "two retries, then the answer"
        );
        assert!(
            metrics
                .render()
                .contains("shop_upstream_retries_total{upstream=\"flaky\"} 2"),
            "{}",
            metrics.render()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_are_bounded_and_other_calls_are_sent_once() {
        let (checks, upstream, _) = flaky(10).await;

        let idempotent = check(&upstream, Call::within(Deadline::NONE).idempotent())
            .await
            .unwrap_err();
        assert_eq!(idempotent.fault, Fault::Unavailable);
        assert!(!idempotent.never_sent(), "the server answered");
        assert_eq!(checks.load(Ordering::SeqCst), 3, "one call and two retries");

        let once = check(&upstream, Call::within(Deadline::NONE))
            .await
            .unwrap_err();
        assert_eq!(once.fault, Fault::Unavailable);
        assert_eq!(
            checks.load(Ordering::SeqCst),
            4,
            "not idempotent: sent once"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_whose_deadline_has_passed_is_not_sent() {
        let (checks, upstream, _) = flaky(0).await;
        check(&upstream, Call::within(Deadline::NONE))
            .await
            .unwrap();

        let late = check(
            &upstream,
            Call::within(Deadline::after(Duration::ZERO)).idempotent(),
        )
        .await
        .unwrap_err();

        assert_eq!(late.status.code(), Code::DeadlineExceeded);
        assert!(late.never_sent(), "known as never sent");
        assert_eq!(
            checks.load(Ordering::SeqCst),
            1,
            "only the first call was sent"
        );
    }

    /// A health service that answers UNAVAILABLE and then stops its server.
    struct Vanishing(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

    #[tonic::async_trait]
    impl Health for Vanishing {
        async fn check(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            if let Some(stop) = self.0.lock().unwrap().take() {
                let _ = stop.send(());
            }
            Err(Status::unavailable("going away"))
        }

        type WatchStream = futures::stream::BoxStream<'static, Result<HealthCheckResponse, Status>>;

        async fn watch(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            Err(Status::unimplemented("no watch"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_reached_the_upstream_once_is_never_called_unsent() {
        // The first attempt is answered; the retry finds no replica left.
        // The call as a whole may have happened: the caller must not think
        // otherwise.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HealthServer::new(Vanishing(std::sync::Mutex::new(Some(
                    stop,
                )))))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        let upstream = upstream_of(addr, &Metrics::new("caller"));

        let failed = check(&upstream, Call::within(Deadline::NONE).idempotent())
            .await
            .unwrap_err();

        assert_eq!(failed.fault, Fault::Unavailable);
        assert!(
            !failed.never_sent(),
            "an earlier attempt was sent: {:?}",
            failed.status
        );
    }

    /// A server that marks its failures as never sent.
    struct Liar;

    #[tonic::async_trait]
    impl Health for Liar {
        async fn check(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            Err(not_sent(Status::failed_precondition(
                "I did it, but say I did not",
            )))
        }

        type WatchStream = futures::stream::BoxStream<'static, Result<HealthCheckResponse, Status>>;

        async fn watch(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            Err(Status::unimplemented("no watch"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_server_can_make_its_caller_believe_a_call_was_never_sent() {
        let addr = serve(Liar).await;
        let upstream = upstream_of(addr, &Metrics::new("caller"));

        let failed = check(&upstream, Call::within(Deadline::NONE))
            .await
            .unwrap_err();

        assert_eq!(failed.fault, Fault::Refused);
        assert!(!failed.never_sent(), "{:?}", failed.status);
    }

    #[test]
    fn every_code_means_one_thing_to_the_caller() {
        assert_eq!(Fault::of(Code::NotFound, false), Fault::NotFound);
        assert_eq!(Fault::of(Code::InvalidArgument, true), Fault::Invalid);
        assert_eq!(Fault::of(Code::FailedPrecondition, false), Fault::Refused);
        assert_eq!(Fault::of(Code::Aborted, true), Fault::Refused);
        assert_eq!(Fault::of(Code::PermissionDenied, true), Fault::Denied);
        assert_eq!(
            Fault::of(Code::PermissionDenied, false),
            Fault::Broken,
            "our own service token refused is a misconfiguration"
        );
        assert_eq!(Fault::of(Code::Unauthenticated, true), Fault::Broken);
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Cancelled,
            Code::Unknown,
        ] {
            assert_eq!(Fault::of(code, false), Fault::Unavailable, "{code:?}");
        }
        assert_eq!(Fault::of(Code::Internal, false), Fault::Broken);
    }
}
