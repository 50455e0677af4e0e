//! Every SQL statement of the storefront: users, sessions, carts and the
//! login-failure counts. Plain async functions over the pool; each one that
//! changes more than one row owns its transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shop_runtime::pg::Db;
use sqlx::Connection as _;
use uuid::Uuid;

use crate::error::Error;

/// A user row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: String,
}

/// Creates a user; a taken email is `EmailTaken`.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "INSERT", db.table = "users"))]
pub async fn create_user(
    db: &Db,
    id: Uuid,
    email: &str,
    name: &str,
    password_hash: &str,
    role: &str,
) -> Result<UserRow, Error> {
    let mut conn = db.acquire().await?;
    sqlx::query_as::<_, UserRow>(
        "INSERT INTO users (id, email, name, password_hash, role) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, email, name, password_hash, role",
    )
    .bind(id)
    .bind(email)
    .bind(name)
    .bind(password_hash)
    .bind(role)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match shop_runtime::pg::violated_constraint(&e) {
        Some("users_email_key") => Error::EmailTaken,
        _ => e.into(),
    })
}

#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "users"))]
pub async fn find_user_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, Error> {
    let mut conn = db.acquire().await?;
    Ok(sqlx::query_as::<_, UserRow>(
        "SELECT id, email, name, password_hash, role FROM users WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(&mut *conn)
    .await?)
}

#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "users"))]
pub async fn get_user(db: &Db, id: Uuid) -> Result<Option<UserRow>, Error> {
    let mut conn = db.acquire().await?;
    Ok(sqlx::query_as::<_, UserRow>(
        "SELECT id, email, name, password_hash, role FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// What the configured first admin's email finds.
pub enum AdminAccount {
    Missing,
    /// An account someone registered: never promoted.
    Customer,
    Admin {
        id: Uuid,
        password_hash: String,
    },
}

pub async fn admin_account(db: &Db, email: &str) -> Result<AdminAccount, Error> {
    Ok(match find_user_by_email(db, email).await? {
        None => AdminAccount::Missing,
        Some(u) if u.role == "admin" => AdminAccount::Admin {
            id: u.id,
            password_hash: u.password_hash,
        },
        Some(_) => AdminAccount::Customer,
    })
}

/// Sets an admin's password and ends its sessions, in one transaction.
pub async fn set_admin_password(db: &Db, id: Uuid, password_hash: &str) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1 AND role = 'admin'")
        .bind(id)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A session row with its user, if logged in.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub expires_at: DateTime<Utc>,
    pub user_id: Option<Uuid>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
}

/// The unexpired session whose id hashes to `id_hash`.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "sessions"))]
pub async fn load_session(db: &Db, id_hash: &[u8]) -> Result<Option<SessionRow>, Error> {
    let mut conn = db.acquire().await?;
    Ok(sqlx::query_as::<_, SessionRow>(
        "SELECT s.expires_at, u.id AS user_id, u.email, u.name, u.role \
         FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = $1 AND s.expires_at > now()",
    )
    .bind(id_hash)
    .fetch_optional(&mut *conn)
    .await?)
}

/// How long sessions last: `ttl` past their last use, never more than
/// `max` past their start.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    pub ttl: Duration,
    pub max: Duration,
}

/// Stores an anonymous session (on its first change: a cart line) unless
/// it is stored already.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "INSERT", db.table = "sessions"))]
pub async fn store_session(db: &Db, id_hash: &[u8], lifetime: Lifetime) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    insert_session(&mut conn, id_hash, None, lifetime, true).await
}

async fn insert_session(
    conn: &mut sqlx::PgConnection,
    id_hash: &[u8],
    user_id: Option<Uuid>,
    lifetime: Lifetime,
    keep_existing: bool,
) -> Result<(), Error> {
    let sql = if keep_existing {
        "INSERT INTO sessions (id_hash, user_id, expires_at) \
         VALUES ($1, $2, now() + make_interval(secs => LEAST($3, $4))) ON CONFLICT DO NOTHING"
    } else {
        "INSERT INTO sessions (id_hash, user_id, expires_at) \
         VALUES ($1, $2, now() + make_interval(secs => LEAST($3, $4)))"
    };
    sqlx::query(sql)
        .bind(id_hash)
        .bind(user_id)
        .bind(lifetime.ttl.as_secs_f64())
        .bind(lifetime.max.as_secs_f64())
        .execute(conn)
        .await?;
    Ok(())
}

/// Pushes a session's expiry `ttl` into the future, but never past its
/// start plus the longest lifetime.
pub async fn extend_session(db: &Db, id_hash: &[u8], lifetime: Lifetime) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query(
        "UPDATE sessions SET expires_at = LEAST(now() + make_interval(secs => $2), \
         created_at + make_interval(secs => $3)) WHERE id_hash = $1",
    )
    .bind(id_hash)
    .bind(lifetime.ttl.as_secs_f64())
    .bind(lifetime.max.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Logs in: a new session for `user_id` replaces the old one (the cookie id
/// changes, so a session id planted before login is worthless), and the old
/// session's cart is merged into the user's cart. One transaction.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "login", db.table = "sessions"))]
pub async fn rotate_session(
    db: &Db,
    old_hash: &[u8],
    new_hash: &[u8],
    user_id: Uuid,
    lifetime: Lifetime,
) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    insert_session(&mut tx, new_hash, Some(user_id), lifetime, false).await?;
    let user_cart = cart_id_in(&mut tx, &CartOwner::User(user_id)).await?;
    // Sum quantities of products in both carts (at most 99 each).
    sqlx::query(
        "INSERT INTO cart_items (cart_id, product_id, quantity) \
         SELECT $1, i.product_id, i.quantity FROM cart_items i \
         JOIN carts c ON c.id = i.cart_id WHERE c.session_hash = $2 \
         ON CONFLICT (cart_id, product_id) DO UPDATE \
         SET quantity = LEAST(99, cart_items.quantity + EXCLUDED.quantity)",
    )
    .bind(user_cart)
    .bind(old_hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(old_hash)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete_session(db: &Db, id_hash: &[u8]) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes expired sessions (their anonymous carts go with them) and
/// attempts older than `window`.
pub async fn delete_expired(db: &Db, window: Duration) -> Result<u64, Error> {
    let mut conn = db.acquire().await?;
    let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM attempts WHERE at < now() - make_interval(secs => $1)")
        .bind(window.as_secs_f64())
        .execute(&mut *conn)
        .await?;
    Ok(sessions)
}

/// An advisory lock id for `key` (the first 8 bytes of its SHA-256).
fn lock_id(key: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// Takes the transaction-scoped advisory locks of `keys`, lowest id first
/// (so two transactions wanting the same two never wait for each other).
async fn lock_keys(tx: &mut sqlx::PgConnection, keys: &[&str]) -> Result<(), Error> {
    let mut ids: Vec<i64> = keys.iter().map(|k| lock_id(k)).collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Attempts under each key within `window`.
async fn counts(
    tx: &mut sqlx::PgConnection,
    keys: &[&str],
    window: Duration,
) -> Result<Vec<i64>, Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT key, count(*) FROM attempts \
         WHERE key = ANY($1) AND at > now() - make_interval(secs => $2) GROUP BY key",
    )
    .bind(keys)
    .bind(window.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    Ok(keys
        .iter()
        .map(|k| rows.iter().find(|(key, _)| key == k).map_or(0, |r| r.1))
        .collect())
}

/// Counts one registration from `key` if fewer than `max` were made in
/// `window`; whether it was counted.
pub async fn count_registration(
    db: &Db,
    key: &str,
    max: i64,
    window: Duration,
) -> Result<bool, Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    lock_keys(&mut tx, &[key]).await?;
    if counts(&mut tx, &[key], window).await?[0] >= max {
        return Ok(false);
    }
    sqlx::query("INSERT INTO attempts (key) VALUES ($1)")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// A login attempt counted before its password is checked.
#[derive(Debug)]
pub struct Attempt {
    /// Its rows, one per key.
    ids: Vec<i64>,
    email_key: String,
    email_client_key: String,
    /// Failures for the email, from anywhere, before this attempt.
    pub email_failures: i64,
}

/// Whether a login attempt may go on.
pub enum Admitted {
    Yes(Attempt),
    No,
}

/// Counts a login attempt for `email` from `client` (as a failure until
/// [`login_succeeded`] says otherwise) unless that client is over its
/// limits. One transaction holding the email's and the client's locks:
/// concurrent attempts are counted one after another.
pub async fn begin_login(
    db: &Db,
    email: &str,
    client: &str,
    policy: &crate::accounts::Policy,
) -> Result<Admitted, Error> {
    let email_key = format!("email:{email}");
    let email_client_key = format!("email-client:{email}|{client}");
    let client_key = format!("client:{client}");
    let keys = [
        email_key.as_str(),
        email_client_key.as_str(),
        client_key.as_str(),
    ];
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    lock_keys(&mut tx, &[&email_key, &client_key]).await?;
    let [by_email, by_email_client, by_client] = counts(&mut tx, &keys, policy.window)
        .await?
        .try_into()
        .unwrap_or([0; 3]);
    if by_email_client >= policy.failures_per_email_client
        || by_client >= policy.failures_per_client
    {
        return Ok(Admitted::No);
    }
    let ids: Vec<i64> =
        sqlx::query_scalar("INSERT INTO attempts (key) SELECT unnest($1::text[]) RETURNING id")
            .bind(&keys[..])
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Admitted::Yes(Attempt {
        ids,
        email_key,
        email_client_key,
        email_failures: by_email,
    }))
}

/// The attempt was right: it is no failure, and the email's failures (from
/// this client and from anywhere) are forgiven.
pub async fn login_succeeded(db: &Db, attempt: &Attempt) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query("DELETE FROM attempts WHERE id = ANY($1) OR key IN ($2, $3)")
        .bind(&attempt.ids)
        .bind(&attempt.email_key)
        .bind(&attempt.email_client_key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The attempt could not be checked (the shop was busy): it does not count.
pub async fn forget_attempt(db: &Db, attempt: &Attempt) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query("DELETE FROM attempts WHERE id = ANY($1)")
        .bind(&attempt.ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Distinct products one cart may hold: what one order may hold.
pub const MAX_CART_LINES: i64 = 100;

/// Whose cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOwner {
    User(Uuid),
    /// An anonymous browser session, by the hash of its id.
    Session(Vec<u8>),
}

/// `owner`'s cart, made if it has none yet.
async fn cart_id_in(conn: &mut sqlx::PgConnection, owner: &CartOwner) -> Result<Uuid, Error> {
    let sql = match owner {
        CartOwner::User(_) => {
            "INSERT INTO carts (id, user_id, session_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET updated_at = now() RETURNING id"
        }
        CartOwner::Session(_) => {
            "INSERT INTO carts (id, user_id, session_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (session_hash) DO UPDATE SET updated_at = now() RETURNING id"
        }
    };
    let (user, session) = owner_columns(owner);
    Ok(sqlx::query_scalar(sql)
        .bind(Uuid::now_v7())
        .bind(user)
        .bind(session)
        .fetch_one(&mut *conn)
        .await?)
}

/// (product id, quantity) in `owner`'s cart, oldest first.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "cart_items"))]
pub async fn cart_items(db: &Db, owner: &CartOwner) -> Result<Vec<(Uuid, i32)>, Error> {
    let mut conn = db.acquire().await?;
    let (user, session) = owner_columns(owner);
    Ok(sqlx::query_as(
        "SELECT i.product_id, i.quantity FROM cart_items i JOIN carts c ON c.id = i.cart_id \
         WHERE (c.user_id = $1 OR c.session_hash = $2) ORDER BY i.added_at, i.product_id",
    )
    .bind(user)
    .bind(session)
    .fetch_all(&mut *conn)
    .await?)
}

fn owner_columns(owner: &CartOwner) -> (Option<Uuid>, Option<&[u8]>) {
    match owner {
        CartOwner::User(id) => (Some(*id), None),
        CartOwner::Session(hash) => (None, Some(hash.as_slice())),
    }
}

/// How one product's line in a cart changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartChange {
    /// This many more units (at most 99 in all).
    Add(i32),
    /// Exactly this many units; 0 removes the line.
    Set(i32),
}

/// Changes `product`'s line in `owner`'s cart.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "UPSERT", db.table = "cart_items"))]
pub async fn change_cart(
    db: &Db,
    owner: &CartOwner,
    product: Uuid,
    change: CartChange,
) -> Result<(), Error> {
    let (sql, quantity) = match change {
        CartChange::Add(n) => (
            "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, LEAST(99, $3)) \
             ON CONFLICT (cart_id, product_id) DO UPDATE \
             SET quantity = LEAST(99, cart_items.quantity + EXCLUDED.quantity)",
            Some(n),
        ),
        CartChange::Set(0) => (
            "DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2",
            None,
        ),
        CartChange::Set(n) => (
            "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, $3) \
             ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = EXCLUDED.quantity",
            Some(n),
        ),
    };
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    // The upsert locks the cart's row: changes to one cart run one at a time.
    let cart = cart_id_in(&mut tx, owner).await?;
    if quantity.is_some() {
        let (lines, has): (i64, bool) = sqlx::query_as(
            "SELECT count(*), coalesce(bool_or(product_id = $2), false) \
             FROM cart_items WHERE cart_id = $1",
        )
        .bind(cart)
        .bind(product)
        .fetch_one(&mut *tx)
        .await?;
        if !has && lines >= MAX_CART_LINES {
            return Err(Error::CartFull);
        }
    }
    let mut query = sqlx::query(sql).bind(cart).bind(product);
    if let Some(quantity) = quantity {
        query = query.bind(quantity);
    }
    query.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Empties `owner`'s cart.
pub async fn clear_cart(db: &Db, owner: &CartOwner) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    let (user, session) = owner_columns(owner);
    sqlx::query(
        "DELETE FROM cart_items WHERE cart_id IN \
         (SELECT id FROM carts WHERE user_id = $1 OR session_hash = $2)",
    )
    .bind(user)
    .bind(session)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
