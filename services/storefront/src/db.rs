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

/// Creates an admin with `email` unless one exists; an existing customer
/// with that email becomes admin. Returns whether an account was created.
pub async fn ensure_admin(
    db: &Db,
    id: Uuid,
    email: &str,
    password_hash: &str,
) -> Result<bool, Error> {
    let mut conn = db.acquire().await?;
    let created = sqlx::query(
        "INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, $3, 'admin') \
         ON CONFLICT (email) DO UPDATE SET role = 'admin' RETURNING (xmax = 0)",
    )
    .bind(id)
    .bind(email)
    .bind(password_hash)
    .fetch_one(&mut *conn)
    .await?;
    Ok(sqlx::Row::try_get::<bool, _>(&created, 0).unwrap_or(false))
}

/// A session row with its user, if logged in.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub csrf_token: String,
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
        "SELECT s.csrf_token, s.expires_at, u.id AS user_id, u.email, u.name, u.role \
         FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = $1 AND s.expires_at > now()",
    )
    .bind(id_hash)
    .fetch_optional(&mut *conn)
    .await?)
}

#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "INSERT", db.table = "sessions"))]
pub async fn create_session(
    db: &Db,
    id_hash: &[u8],
    user_id: Option<Uuid>,
    csrf_token: &str,
    ttl: Duration,
) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    insert_session(&mut conn, id_hash, user_id, csrf_token, ttl).await
}

async fn insert_session(
    conn: &mut sqlx::PgConnection,
    id_hash: &[u8],
    user_id: Option<Uuid>,
    csrf_token: &str,
    ttl: Duration,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(id_hash)
    .bind(user_id)
    .bind(csrf_token)
    .bind(ttl.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(())
}

/// Pushes a session's expiry `ttl` into the future.
pub async fn extend_session(db: &Db, id_hash: &[u8], ttl: Duration) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query(
        "UPDATE sessions SET expires_at = now() + make_interval(secs => $2) WHERE id_hash = $1",
    )
    .bind(id_hash)
    .bind(ttl.as_secs_f64())
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
    csrf_token: &str,
    ttl: Duration,
) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    insert_session(&mut tx, new_hash, Some(user_id), csrf_token, ttl).await?;
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

/// Removes expired sessions (their anonymous carts go with them) and old
/// login failures.
pub async fn delete_expired(db: &Db, failure_window: Duration) -> Result<u64, Error> {
    let mut conn = db.acquire().await?;
    let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM login_failures WHERE failed_at < now() - make_interval(secs => $1)")
        .bind(failure_window.as_secs_f64())
        .execute(&mut *conn)
        .await?;
    Ok(sessions)
}

/// Failed logins within `window` for an email key and a client key.
pub async fn recent_failures(
    db: &Db,
    email_key: &str,
    client_key: &str,
    window: Duration,
) -> Result<(i64, i64), Error> {
    let mut conn = db.acquire().await?;
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE key = $1), count(*) FILTER (WHERE key = $2) \
         FROM login_failures \
         WHERE key IN ($1, $2) AND failed_at > now() - make_interval(secs => $3)",
    )
    .bind(email_key)
    .bind(client_key)
    .bind(window.as_secs_f64())
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn record_failure(db: &Db, keys: &[&str]) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query("INSERT INTO login_failures (key) SELECT unnest($1::text[])")
        .bind(keys)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn clear_failures(db: &Db, key: &str) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query("DELETE FROM login_failures WHERE key = $1")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

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
    let cart = cart_id_in(&mut tx, owner).await?;
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
