//! Accounts: registration, login and the first admin, shared by the web
//! pages and the gRPC API.
//!
//! - Passwords are hashed with Argon2id (the `argon2` crate's defaults,
//!   OWASP's recommendation: 19 MiB, two passes) on a blocking thread, at
//!   most [`Hasher`]'s permits at once: each hash holds 19 MiB, and
//!   unbounded they took the storefront past its memory limit. A call that
//!   gets no permit within a short wait is refused ([`Error::Busy`]).
//! - Login never tells an unknown email from a wrong password: same message,
//!   and an unknown email still costs one hash verification.
//! - Every sign-in attempt is counted before its password is checked, in one
//!   transaction holding a lock per email and per client, so concurrent
//!   attempts cannot all slip under a limit. Per client and email
//!   ([`Policy::failures_per_email_client`]) and per client
//!   ([`Policy::failures_per_client`]) the attempts are capped: past the cap,
//!   `RateLimited` until the window passes. Per email alone nothing is
//!   locked (anyone could lock the owner out): each attempt past the free
//!   ones waits longer, up to [`MAX_EMAIL_DELAY`], whoever makes it.
//! - Registrations are capped per client the same way.
//! - The first admin (`ADMIN_EMAIL`) is created with the configured password,
//!   and that password is set again at every start; an existing customer
//!   account with that email is never promoted (start fails instead).

use std::{sync::Arc, time::Duration};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use shop_runtime::{auth::Role, error::FieldViolations, metrics::Metrics, pg::Db};
use tokio::sync::{OnceCell, Semaphore};
use uuid::Uuid;

use crate::{
    db::{self, AdminAccount, Admitted, UserRow},
    error::Error,
};

pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 128;
pub const MAX_EMAIL: usize = 254;
pub const MAX_NAME: usize = 100;
/// Failed logins for one email from anywhere before each further attempt
/// waits ([`email_delay`]).
pub const FREE_FAILURES_PER_EMAIL: i64 = 5;
/// The longest an attempt waits for its email's failures.
pub const MAX_EMAIL_DELAY: Duration = Duration::from_secs(10);
/// How long attempts and registrations count against their limits.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// The limits on sign-in attempts and registrations.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failed logins one client may make for one email in [`Policy::window`].
    pub failures_per_email_client: i64,
    /// Failed logins one client may make in all in the window.
    pub failures_per_client: i64,
    /// Accounts one client may register in the window.
    pub registrations_per_client: i64,
    pub window: Duration,
}

/// A user as the rest of the storefront sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            email: row.email,
            name: row.name,
            role: if row.role == "admin" {
                Role::Admin
            } else {
                Role::Customer
            },
        }
    }
}

impl User {
    /// A greeting name: the name, or the part of the email before the @.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            self.email.split('@').next().unwrap_or(&self.email)
        } else {
            &self.name
        }
    }
}

/// The normalised email, or a field violation.
pub fn check_email(v: &mut FieldViolations, email: &str) -> String {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && email.matches('@').count() == 1
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        v.add("email", "must be an email address such as ana@example.com");
    }
    email
}

/// Password rules: length only (NIST SP 800-63B), no composition rules.
pub fn check_password(v: &mut FieldViolations, password: &str) {
    let chars = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&chars) {
        v.add(
            "password",
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long"),
        );
    }
}

/// How long a login attempt waits when its email already has `failures`
/// failures in the window: nothing for the first few, then one second,
/// doubling, up to [`MAX_EMAIL_DELAY`].
pub fn email_delay(failures: i64) -> Duration {
    let over = failures - FREE_FAILURES_PER_EMAIL;
    if over < 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << over.min(6)).min(MAX_EMAIL_DELAY)
}

/// How long a hashing thread keeps its Argon2 memory without a hash to do.
const KEEP_MEMORY: Duration = Duration::from_secs(2);

/// A hashing job for the hasher's threads, given the thread's Argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Argon2 hashing and verification, at most `permits` at once, each on a
/// thread of its own that keeps its 19 MiB of Argon2 memory while hashes
/// keep coming and gives it back after [`KEEP_MEMORY`] without one. A hash
/// that allocated and freed its memory on whatever thread ran it left the C
/// allocator holding several such blocks per thread (half a gigabyte after
/// a burst of logins); now the hashing memory is at most the permits times
/// 19 MiB, whatever comes, and none when nobody logs in.
#[derive(Clone)]
pub struct Hasher {
    jobs: flume::Sender<Job>,
    permits: Arc<Semaphore>,
    wait: Duration,
    /// A hash of a password nobody has, verified against when the email is
    /// unknown so that answering costs what it costs for a real account.
    decoy: Arc<OnceCell<String>>,
    hashes: metrics::Counter,
    verifications: metrics::Counter,
    busy: metrics::Counter,
}

impl Hasher {
    /// `permits` hashes at once (each holds 19 MiB); a call waits at most
    /// `wait` for one.
    pub fn new(permits: usize, wait: Duration, metrics: &Metrics) -> Self {
        let count = |op: &'static str| metrics.counter("shop_password_hashes_total", &[("op", op)]);
        let permits = permits.max(1);
        // Every thread waits on the queue by itself (so each can give its
        // memory back on its own clock).
        let (jobs, queue) = flume::unbounded::<Job>();
        for n in 0..permits {
            let queue = queue.clone();
            // The threads end when the last Hasher clone (the sender) goes.
            let _ = std::thread::Builder::new()
                .name(format!("hasher-{n}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        match queue.recv_timeout(KEEP_MEMORY) {
                            Ok(job) => job(&mut memory),
                            // Idle: the block goes back to the system (a
                            // block this size is its own mapping).
                            Err(flume::RecvTimeoutError::Timeout) => memory = Vec::new(),
                            Err(flume::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                });
        }
        Self {
            jobs,
            permits: Arc::new(Semaphore::new(permits)),
            wait,
            decoy: Arc::default(),
            hashes: count("hash"),
            verifications: count("verify"),
            busy: metrics.counter("shop_password_hashes_refused_total", &[]),
        }
    }

    /// The permits for a machine with `cores` cores: one per core, at most
    /// two (38 MiB of hashing inside a 128 MiB pod; two hashes at once are
    /// some forty logins a second, and replicas add more).
    pub fn permits_for(cores: usize) -> usize {
        cores.clamp(1, 2)
    }

    /// Runs `work` on a hashing thread once a permit is free, counting it
    /// in `done`.
    async fn run<T: Send + 'static>(
        &self,
        done: &metrics::Counter,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit =
            match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    self.busy.increment(1);
                    return Err(Error::Busy);
                }
            };
        done.increment(1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(work(memory));
            drop(permit);
        });
        // A job waits for a thread only while one finishes: there are as
        // many threads as permits.
        self.jobs
            .send(job)
            .map_err(|_| Error::Internal(anyhow::anyhow!("the hashing threads are gone")))?;
        rx.await
            .map_err(|_| Error::Internal(anyhow::anyhow!("a hashing job failed")))
    }

    /// An Argon2id hash of `password` in PHC string form (`$argon2id$...`).
    pub async fn hash(&self, password: String) -> Result<String, Error> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)
            .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness for a salt: {e}")))?;
        self.run(&self.hashes, move |memory| {
            phc_hash(memory, password.as_bytes(), &salt)
                .map_err(|e| Error::Internal(anyhow::anyhow!("hashing failed: {e}")))
        })
        .await?
    }

    /// Whether `password` matches `hash` (a PHC string).
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, Error> {
        self.run(&self.verifications, move |memory| {
            phc_verify(memory, password.as_bytes(), &hash)
        })
        .await
    }

    async fn decoy(&self) -> Result<String, Error> {
        self.decoy
            .get_or_try_init(|| self.hash(Uuid::new_v4().to_string()))
            .await
            .cloned()
    }
}

/// `memory` with at least `blocks` blocks (grown once, then reused).
fn blocks(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

/// Argon2id with the crate's default parameters, into a PHC string.
fn phc_hash(
    memory: &mut Vec<Block>,
    password: &[u8],
    salt: &[u8],
) -> argon2::password_hash::Result<String> {
    use argon2::password_hash::phc::{Output, ParamsString, Salt};
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon.hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        blocks(memory, params.block_count()),
    )?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(Salt::new(salt)?),
        hash: Some(Output::new(&out)?),
    }
    .to_string())
}

/// Whether `password` matches the PHC string `hash`, with the parameters
/// written in it (compared in constant time).
fn phc_verify(memory: &mut Vec<Block>, password: &[u8], hash: &str) -> bool {
    let mut check = || -> Option<bool> {
        let phc = PasswordHash::new(hash).ok()?;
        let algorithm = Algorithm::try_from(phc.algorithm.as_str()).ok()?;
        let version = Version::try_from(phc.version.unwrap_or(Version::V0x13.into())).ok()?;
        let params = Params::try_from(&phc).ok()?;
        let (salt, expected) = (phc.salt?, phc.hash?);
        // A stored hash asking for more than a gigabyte is not ours.
        if params.block_count() > 1 << 20 {
            return None;
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(
                password,
                &salt,
                &mut out,
                blocks(memory, params.block_count()),
            )
            .ok()?;
        Some(argon2::password_hash::phc::Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

/// Registration, login and the first admin over the database.
#[derive(Clone)]
pub struct Accounts {
    pub db: Db,
    pub hasher: Hasher,
    pub policy: Policy,
}

impl Accounts {
    /// Creates a customer account; `client` is where the request comes from.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: &str,
        client: &str,
    ) -> Result<User, Error> {
        let mut v = FieldViolations::default();
        let email = check_email(&mut v, email);
        check_password(&mut v, password);
        let name = name.trim();
        if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            v.add("name", format!("must be at most {MAX_NAME} characters"));
        }
        v.finish()?;
        let key = format!("register:{client}");
        if !db::count_registration(
            &self.db,
            &key,
            self.policy.registrations_per_client,
            self.policy.window,
        )
        .await?
        {
            tracing::warn!("registration refused: too many from one client");
            return Err(Error::TooManyRegistrations);
        }
        let hash = self.hasher.hash(password.to_owned()).await?;
        let row =
            db::create_user(&self.db, Uuid::now_v7(), &email, name, &hash, "customer").await?;
        tracing::info!(user.id = %row.id, "account registered");
        Ok(row.into())
    }

    /// Checks email and password under the limits of the module
    /// documentation. `client` is the caller's address.
    pub async fn login(&self, email: &str, password: &str, client: &str) -> Result<User, Error> {
        let email = email.trim().to_lowercase();
        let attempt = match db::begin_login(&self.db, &email, client, &self.policy).await? {
            Admitted::Yes(attempt) => attempt,
            Admitted::No => {
                tracing::warn!("login refused: too many failures");
                return Err(Error::RateLimited);
            }
        };
        let delay = email_delay(attempt.email_failures);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let user = db::find_user_by_email(&self.db, &email).await?;
        let hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => self.hasher.decoy().await?,
        };
        let matches = match self.hasher.verify(password.to_owned(), hash).await {
            Ok(matches) => matches,
            Err(e) => {
                // Not a failure of the person's: the attempt does not count.
                db::forget_attempt(&self.db, &attempt).await?;
                return Err(e);
            }
        };
        match user {
            Some(user) if matches => {
                db::login_succeeded(&self.db, &attempt).await?;
                Ok(user.into())
            }
            _ => Err(Error::WrongCredentials),
        }
    }

    /// Creates the configured first admin, or sets its password again; an
    /// existing customer account with that email is an error.
    pub async fn ensure_admin(&self, email: &str, password: &str) -> Result<(), Error> {
        let mut v = FieldViolations::default();
        let email = check_email(&mut v, email);
        check_password(&mut v, password);
        v.finish()?;
        match db::admin_account(&self.db, &email).await? {
            AdminAccount::Missing => {
                let hash = self.hasher.hash(password.to_owned()).await?;
                db::create_user(&self.db, Uuid::now_v7(), &email, "", &hash, "admin").await?;
                tracing::info!("first admin account created");
            }
            AdminAccount::Customer => return Err(Error::AdminEmailTaken(email)),
            AdminAccount::Admin { id, password_hash } => {
                if !self
                    .hasher
                    .verify(password.to_owned(), password_hash)
                    .await?
                {
                    let hash = self.hasher.hash(password.to_owned()).await?;
                    db::set_admin_password(&self.db, id, &hash).await?;
                    tracing::info!("the first admin's password changed; its sessions ended");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        let mut v = FieldViolations::default();
        assert_eq!(check_email(&mut v, "  Ana@Example.COM "), "ana@example.com");
        assert!(v.is_empty());
        for bad in [
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            let mut v = FieldViolations::default();
            check_email(&mut v, bad);
            assert!(!v.is_empty(), "{bad} accepted");
        }
    }

    #[test]
    fn passwords_need_ten_characters() {
        let mut v = FieldViolations::default();
        check_password(&mut v, "correct horse");
        assert!(v.is_empty());
        check_password(&mut v, "short");
        assert!(!v.is_empty());
    }

    #[test]
    fn an_emails_failures_slow_its_attempts_down_up_to_a_bound() {
        assert_eq!(email_delay(0), Duration::ZERO);
        assert_eq!(email_delay(4), Duration::ZERO);
        assert_eq!(email_delay(5), Duration::from_secs(1));
        assert_eq!(email_delay(7), Duration::from_secs(4));
        assert_eq!(email_delay(1_000), MAX_EMAIL_DELAY);
    }

    fn hasher(permits: usize, wait: Duration) -> Hasher {
        Hasher::new(permits, wait, &Metrics::new("storefront"))
    }

    #[tokio::test]
    async fn hashes_verify_only_their_password_and_read_the_crates_own() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let h = hasher(2, Duration::from_secs(5));
        let hash = h.hash("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        // The crate's own verifier agrees, and ours reads the crate's hashes
        // (those stored before this hasher).
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", hash.as_str())
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(b"stored before".as_slice())
            .unwrap()
            .to_string();
        assert!(
            h.verify("stored before".into(), theirs.clone())
                .await
                .unwrap()
        );
        assert!(!h.verify("stored after".into(), theirs).await.unwrap());
        assert!(
            h.verify("correct horse battery".into(), hash.clone())
                .await
                .unwrap()
        );
        assert!(!h.verify("wrong horse battery".into(), hash).await.unwrap());
        assert!(!h.verify("x".into(), "not a hash".into()).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_permits_hash_at_once_and_the_rest_are_refused_busy() {
        let h = hasher(2, Duration::from_millis(50));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls = (0..12).map(|_| {
            let (h, running, peak) = (h.clone(), running.clone(), peak.clone());
            tokio::spawn(async move {
                h.run(&h.hashes.clone(), move |_| {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = running.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    running.fetch_sub(1, SeqCst);
                })
                .await
            })
        });
        let results = futures::future::join_all(calls).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r.as_ref().unwrap(), Err(Error::Busy)))
            .count();
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(
            busy, 10,
            "two ran; the others waited 50 ms and were refused"
        );
    }
}
