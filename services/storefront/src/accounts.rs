//! Accounts: registration, login and the first admin, shared by the web
//! pages and the gRPC API.
//!
//! - Passwords are hashed with Argon2id (the `argon2` crate's defaults,
//!   OWASP's recommendation), on a blocking thread: hashing is slow on
//!   purpose.
//! - Login never tells an unknown email from a wrong password: same message,
//!   and an unknown email still costs one hash verification, so timing does
//!   not tell either.
//! - Failed logins are counted per email and per client address in the
//!   database (so every replica sees them): more than [`MAX_FAILURES_PER_EMAIL`]
//!   or [`MAX_FAILURES_PER_CLIENT`] in [`FAILURE_WINDOW`] locks further
//!   attempts until the window passes, whether or not the password is right.

use std::{sync::OnceLock, time::Duration};

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use shop_runtime::pg::Db;
use shop_runtime::{auth::Role, error::FieldViolations};
use uuid::Uuid;

use crate::{
    db::{self, UserRow},
    error::Error,
};

pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 128;
pub const MAX_EMAIL: usize = 254;
pub const MAX_NAME: usize = 100;
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
pub const MAX_FAILURES_PER_CLIENT: i64 = 30;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

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

/// An Argon2id hash of `password` in PHC string form.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(anyhow::anyhow!("hashing failed: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(anyhow::Error::new(e).context("the hashing task failed")))?
}

/// Whether `password` matches `hash` (a PHC string).
async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// A hash of a password nobody has, verified against when the email is
/// unknown so that answering takes as long as for a real account.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(Uuid::new_v4().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Creates a customer account.
pub async fn register(pool: &Db, email: &str, password: &str, name: &str) -> Result<User, Error> {
    let mut v = FieldViolations::default();
    let email = check_email(&mut v, email);
    check_password(&mut v, password);
    let name = name.trim();
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        v.add("name", format!("must be at most {MAX_NAME} characters"));
    }
    v.finish()?;
    let hash = hash_password(password.to_owned()).await?;
    let row = db::create_user(pool, Uuid::now_v7(), &email, name, &hash, "customer").await?;
    tracing::info!(user.id = %row.id, "account registered");
    Ok(row.into())
}

/// Checks email and password, honouring the rate limit. `client` is the
/// caller's address (or another stable key for where the attempt comes from).
pub async fn login(pool: &Db, email: &str, password: &str, client: &str) -> Result<User, Error> {
    let email = email.trim().to_lowercase();
    let email_key = format!("email:{email}");
    let client_key = format!("client:{client}");
    let (by_email, by_client) =
        db::recent_failures(pool, &email_key, &client_key, FAILURE_WINDOW).await?;
    if by_email >= MAX_FAILURES_PER_EMAIL || by_client >= MAX_FAILURES_PER_CLIENT {
        tracing::warn!("login refused: too many failures");
        return Err(Error::RateLimited);
    }
    let user = db::find_user_by_email(pool, &email).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
    let matches = verify_password(password.to_owned(), hash).await;
    match user {
        Some(user) if matches => {
            db::clear_failures(pool, &email_key).await?;
            Ok(user.into())
        }
        _ => {
            db::record_failure(pool, &[&email_key, &client_key]).await?;
            Err(Error::WrongCredentials)
        }
    }
}

/// Creates the configured first admin if missing (an existing account with
/// that email is made admin; its password is left alone).
pub async fn ensure_admin(pool: &Db, email: &str, password: &str) -> Result<(), Error> {
    let mut v = FieldViolations::default();
    let email = check_email(&mut v, email);
    check_password(&mut v, password);
    v.finish()?;
    let hash = hash_password(password.to_owned()).await?;
    if db::ensure_admin(pool, Uuid::now_v7(), &email, &hash).await? {
        tracing::info!("first admin account created");
    }
    Ok(())
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

    #[tokio::test]
    async fn hashes_verify_only_their_password() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".into(), hash.clone()).await);
        assert!(!verify_password("wrong horse battery".into(), hash).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }
}
