//! Every SQL statement of the order service. Plain async functions over the
//! pool; each one that changes more than one row owns its transaction.
//! Reading many orders takes two queries (orders, then all their lines),
//! never one per order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shop_runtime::pg::Db;
use sqlx::{Connection as _, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    error::Error,
    order::{LineRow, OrderRecord, OrderRow, OrderState},
};

macro_rules! order_columns {
    () => {
        "o.id, o.customer, o.idempotency_key, o.fingerprint, o.status, o.status_reason, \
         o.description, o.destination, o.currency, o.total_minor, o.shipment_id, \
         o.created_at, o.updated_at"
    };
}

/// Attaches their lines to `orders` with one query.
async fn with_lines<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    orders: Vec<OrderRow>,
) -> Result<Vec<OrderRecord>, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let lines = sqlx::query_as::<_, LineRow>(
        "SELECT order_id, line_no, product_id, name, quantity, unit_price_minor, item \
         FROM order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_no",
    )
    .bind(&ids)
    .fetch_all(executor)
    .await?;
    let mut by_order: HashMap<Uuid, Vec<LineRow>> = HashMap::new();
    for line in lines {
        by_order.entry(line.order_id).or_default().push(line);
    }
    Ok(orders
        .into_iter()
        .map(|order| OrderRecord {
            lines: by_order.remove(&order.id).unwrap_or_default(),
            order,
        })
        .collect())
}

/// One order with its lines.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "orders"))]
pub async fn get(db: &Db, id: Uuid) -> Result<Option<OrderRecord>, Error> {
    // A read: run again on a new connection if a kept one was broken by a
    // database restart.
    Ok(db
        .read(|mut conn| async move {
            let order = sqlx::query_as::<_, OrderRow>(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders o WHERE o.id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(with_lines(&mut *conn, order.into_iter().collect())
                .await?
                .pop())
        })
        .await?)
}

/// The order a customer placed with an idempotency key, if any.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "orders"))]
pub async fn find_by_key(db: &Db, customer: &str, key: &str) -> Result<Option<OrderRecord>, Error> {
    let mut conn = db.acquire().await?;
    let order = sqlx::query_as::<_, OrderRow>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders o WHERE o.customer = $1 AND o.idempotency_key = $2"
    ))
    .bind(customer)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(with_lines(&mut *conn, order.into_iter().collect())
        .await?
        .pop())
}

/// Where a search continues: after this (created_at, id).
pub type SearchCursor = (DateTime<Utc>, Uuid);

/// Which end of the orders a search starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first (`searchOrders`).
    Oldest,
    /// Newest first (`listOrders`, the web pages).
    Newest,
}

/// More orders than this matching a search (of everyone's orders) makes
/// them common: reading the orders in date order and keeping the matches
/// finds a page sooner than collecting every match from the indexes.
const MANY_MATCHES: i64 = 10_000;

/// The shortest query the trigram indexes can serve.
const MIN_TRIGRAM_QUERY: usize = 3;

/// Up to `limit` orders after `after` in `direction`, of `customer` (or of
/// everyone), whose description, destination or lines (names, items as
/// sent, product ids) contain `query` (or all). Two ways, so that every
/// search is served by an index (`tests/api/search.rs` checks the plans):
///
/// - a customer's orders, a common query or none: the orders in date order
///   (`orders_customer_created`, `orders_created`), keeping the matches;
/// - everyone's orders and a rarer query: the matching ids from the
///   trigram indexes (`orders_search`, `order_lines_search`), at most
///   [`MANY_MATCHES`], then those orders in date order.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "orders", limit))]
pub async fn search(
    db: &Db,
    customer: Option<&str>,
    query: Option<&str>,
    after: Option<SearchCursor>,
    limit: i64,
    direction: Direction,
) -> Result<Vec<OrderRecord>, Error> {
    let pattern = query.map(like_pattern);
    let pattern = pattern.as_deref();
    // A read: run again on a new connection if a kept one was broken by a
    // database restart.
    Ok(db
        .read(|mut conn| async move {
            let ids: Option<Vec<Uuid>> = match (customer, query, pattern) {
                (None, Some(query), Some(pattern))
                    if query.chars().count() >= MIN_TRIGRAM_QUERY =>
                {
                    let ids: Vec<Uuid> = sqlx::query_scalar(MATCHING_IDS_SQL)
                        .persistent(false)
                        .bind(pattern)
                        .bind(MANY_MATCHES + 1)
                        .fetch_all(&mut *conn)
                        .await?;
                    (ids.len() as i64 <= MANY_MATCHES).then_some(ids)
                }
                _ => None,
            };
            let sql = match (&ids, direction) {
                (Some(_), Direction::Oldest) => BY_IDS_OLDEST_SQL,
                (Some(_), Direction::Newest) => BY_IDS_NEWEST_SQL,
                (None, Direction::Oldest) => WALK_OLDEST_SQL,
                (None, Direction::Newest) => WALK_NEWEST_SQL,
            };
            let statement = sqlx::query_as::<_, OrderRow>(sql).persistent(false);
            let statement = match ids {
                Some(ids) => statement.bind(ids),
                None => statement.bind(customer).bind(pattern),
            };
            let orders = statement
                .bind(after.map(|a| a.0))
                .bind(after.map(|a| a.1).unwrap_or_default())
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
            with_lines(&mut *conn, orders).await
        })
        .await?)
}

/// The SQL `LIKE` pattern matching `query` anywhere, its own `\`, `%` and
/// `_` taken literally.
pub fn like_pattern(query: &str) -> String {
    let mut pattern = String::from("%");
    for c in query.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The ids of orders whose own text or lines match `$1`, at most `$2`;
/// each side is the expression of its trigram index.
pub const MATCHING_IDS_SQL: &str = "\
    SELECT id FROM orders WHERE (description || ' ' || destination) ILIKE $1 \
    UNION \
    SELECT order_id FROM order_lines \
     WHERE (name || ' ' || coalesce(item, '') || ' ' || product_id::text) ILIKE $1 \
    LIMIT $2";

/// Orders of `$1` (or everyone) matching `$2` (or all), in date order from
/// `($3, $4)` on, at most `$5`.
macro_rules! walk_sql {
    ($after:literal, $order:literal) => {
        concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders o \
              WHERE ($1::text IS NULL OR o.customer = $1) \
                AND ($2::text IS NULL \
                     OR (o.description || ' ' || o.destination) ILIKE $2 \
                     OR EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id \
                                AND (l.name || ' ' || coalesce(l.item, '') || ' ' || l.product_id::text) ILIKE $2)) \
                AND ($3::timestamptz IS NULL OR (o.created_at, o.id) ",
            $after,
            " ($3, $4)) \
              ORDER BY ",
            $order,
            " LIMIT $5"
        )
    };
}
pub const WALK_OLDEST_SQL: &str = walk_sql!(">", "o.created_at, o.id");
pub const WALK_NEWEST_SQL: &str = walk_sql!("<", "o.created_at DESC, o.id DESC");

/// The orders `$1` in date order from `($2, $3)` on, at most `$4`.
macro_rules! by_ids_sql {
    ($after:literal, $order:literal) => {
        concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders o \
              WHERE o.id = ANY($1) \
                AND ($2::timestamptz IS NULL OR (o.created_at, o.id) ",
            $after,
            " ($2, $3)) \
              ORDER BY ",
            $order,
            " LIMIT $4"
        )
    };
}
pub const BY_IDS_OLDEST_SQL: &str = by_ids_sql!(">", "o.created_at, o.id");
pub const BY_IDS_NEWEST_SQL: &str = by_ids_sql!("<", "o.created_at DESC, o.id DESC");

/// What claiming a new order id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The intent is written: go on and reserve.
    Claimed,
    /// Another placement with the same key is in flight.
    Busy,
    /// Claimed, but the key's order exists already (it was confirmed since
    /// the caller looked): forget the claim and answer with that order.
    Placed,
}

/// Writes the `reserving` intent of `order_id`, at most one per customer and
/// key, and in the same statement looks whether the key already has its
/// order.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "INSERT", db.table = "reservation_intents"))]
pub async fn claim(
    db: &Db,
    order_id: Uuid,
    customer: &str,
    key: Option<&str>,
) -> Result<Claim, Error> {
    let mut conn = db.acquire().await?;
    let (claimed, placed): (bool, bool) = sqlx::query_as(
        "WITH claim AS ( \
             INSERT INTO reservation_intents (order_id, customer, idempotency_key, state) \
             VALUES ($1, $2, $3, 'reserving') ON CONFLICT DO NOTHING RETURNING 1) \
         SELECT EXISTS (SELECT 1 FROM claim), \
                $3::text IS NOT NULL AND EXISTS ( \
                    SELECT 1 FROM orders WHERE customer = $2 AND idempotency_key = $3)",
    )
    .bind(order_id)
    .bind(customer)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    Ok(match (claimed, placed) {
        (true, false) => Claim::Claimed,
        (true, true) => Claim::Placed,
        (false, _) => Claim::Busy,
    })
}

/// The catalog said no: nothing is reserved, forget the attempt.
pub async fn forget_reserving(db: &Db, order_id: Uuid) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query("DELETE FROM reservation_intents WHERE order_id = $1 AND state = 'reserving'")
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The reservation of `order_id` must be given back; the release task
/// retries until the catalog confirms.
pub async fn must_release(db: &Db, order_id: Uuid, why: &str) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query(
        "INSERT INTO reservation_intents (order_id, customer, state, last_error, next_attempt_at) \
         VALUES ($1, '', 'releasing', $2, now() + make_interval(secs => $3)) \
         ON CONFLICT (order_id) DO UPDATE SET state = 'releasing', last_error = $2, updated_at = now(), \
         next_attempt_at = EXCLUDED.next_attempt_at",
    )
    .bind(order_id)
    .bind(why)
    .bind(RELEASE_LEASE.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A confirmed order to store.
pub struct Confirmed<'a> {
    pub id: Uuid,
    pub customer: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub fingerprint: &'a str,
    pub description: &'a str,
    pub destination: &'a str,
    pub currency: &'a str,
    pub total_minor: i64,
    pub lines: Vec<PricedLine>,
}

/// One line of a confirmed order, at the price it was reserved at.
pub struct PricedLine {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    /// The book-style item as sent, if the line came as one.
    pub item: Option<String>,
}

/// How storing a confirmed order went.
pub enum Confirm {
    Stored,
    /// The release task already gave this reservation up as abandoned.
    Abandoned,
    /// Another placement with the same key won the race.
    DuplicateKey,
}

/// Stores a confirmed order and closes its reservation intent, in one
/// statement. The intent must still be 'reserving': the release task and
/// this function serialise on that row, so a reservation is either kept by
/// a confirmed order or released, never both.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "INSERT", db.table = "orders", lines = order.lines.len()))]
pub async fn confirm(db: &Db, order: &Confirmed<'_>) -> Result<Confirm, Error> {
    let mut conn = db.acquire().await?;
    // One statement, so one round trip and all or nothing: the intent ends
    // and the order with its lines appears (`store_order`, migration 0003);
    // no intent, nothing written.
    let stored: Result<Option<bool>, sqlx::Error> = sqlx::query_scalar(
        "DELETE FROM reservation_intents WHERE order_id = $1 AND state = 'reserving' \
         RETURNING store_order($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(order.id)
    .bind(order.customer)
    .bind(order.idempotency_key)
    .bind(order.fingerprint)
    .bind(order.description)
    .bind(order.destination)
    .bind(order.currency)
    .bind(order.total_minor)
    .bind(order.lines.iter().map(|l| l.product_id).collect::<Vec<_>>())
    .bind(
        order
            .lines
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(order.lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
    .bind(
        order
            .lines
            .iter()
            .map(|l| l.unit_price_minor)
            .collect::<Vec<_>>(),
    )
    .bind(
        order
            .lines
            .iter()
            .map(|l| l.item.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_optional(&mut *conn)
    .await;
    match stored {
        Ok(Some(_)) => Ok(Confirm::Stored),
        Ok(None) => Ok(Confirm::Abandoned),
        Err(e)
            if shop_runtime::pg::violated_constraint(&e)
                == Some("orders_customer_idempotency_key") =>
        {
            Ok(Confirm::DuplicateKey)
        }
        Err(e) => Err(e.into()),
    }
}

/// The items an `updateOrders` message sends back with its changes.
#[derive(Debug, Default)]
pub struct SentItems {
    /// Book-style items, if sent.
    pub items: Vec<String>,
    /// (product id, quantity) lines, if sent.
    pub lines: Vec<(String, i64)>,
}

impl SentItems {
    /// Whether what was sent is what `lines` hold: the same items (as the
    /// order shows them) and the same lines, in the same order. What was not
    /// sent is not compared.
    fn match_lines(&self, lines: &[LineRow]) -> bool {
        let items_same = self.items.is_empty()
            || self
                .items
                .iter()
                .map(String::as_str)
                .eq(lines.iter().map(LineRow::item));
        let lines_same = self.lines.is_empty()
            || self
                .lines
                .iter()
                .map(|(id, q)| (id.trim().to_owned(), *q))
                .eq(lines.iter().map(|l| (l.product_id.to_string(), l.quantity)));
        items_same && lines_same
    }
}

/// How an update went.
#[derive(Debug, PartialEq, Eq)]
pub enum Update {
    Updated,
    NotFound,
    /// Shipped or cancelled: nothing changed.
    Final(OrderState),
    /// The items sent differ from the order's: nothing changed.
    ItemsChanged,
}

/// Changes the destination and/or description of a confirmed order, if the
/// items `sent` with them are the order's own (items never change).
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "UPDATE", db.table = "orders"))]
pub async fn update_details(
    db: &Db,
    id: Uuid,
    destination: Option<&str>,
    description: Option<&str>,
    sent: &SentItems,
) -> Result<Update, Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    let status: Option<OrderState> =
        sqlx::query_scalar("SELECT status FROM orders WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(status) = status else {
        return Ok(Update::NotFound);
    };
    if !sent.items.is_empty() || !sent.lines.is_empty() {
        let lines = sqlx::query_as::<_, LineRow>(
            "SELECT order_id, line_no, product_id, name, quantity, unit_price_minor, item \
             FROM order_lines WHERE order_id = $1 ORDER BY line_no",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        if !sent.match_lines(&lines) {
            return Ok(Update::ItemsChanged);
        }
    }
    if status != OrderState::Confirmed {
        return Ok(Update::Final(status));
    }
    sqlx::query(
        "UPDATE orders SET destination = COALESCE($2, destination), \
                           description = COALESCE($3, description), updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(destination)
    .bind(description)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Update::Updated)
}

/// What cancelling found.
pub enum Cancel {
    /// Now cancelled; its stock must be released.
    Cancelled(OrderRecord),
    /// It already was; nothing changed.
    AlreadyCancelled(OrderRecord),
    /// Shipped orders cannot be cancelled.
    Shipped,
    NotFound,
}

/// Cancels a confirmed order of `customer` (any customer's when `None`) and
/// records, in the same transaction, that its stock must be released.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "UPDATE", db.table = "orders"))]
pub async fn cancel(
    db: &Db,
    id: Uuid,
    customer: Option<&str>,
    reason: &str,
) -> Result<Cancel, Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    let status: Option<OrderState> = sqlx::query_scalar(
        "SELECT status FROM orders WHERE id = $1 AND ($2::text IS NULL OR customer = $2) FOR UPDATE",
    )
    .bind(id)
    .bind(customer)
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match status {
        None => return Ok(Cancel::NotFound),
        Some(OrderState::Shipped) => return Ok(Cancel::Shipped),
        Some(OrderState::Cancelled) => Cancel::AlreadyCancelled,
        Some(OrderState::Confirmed) => {
            sqlx::query(
                "UPDATE orders SET status = 'cancelled', status_reason = $2, updated_at = now() \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO reservation_intents (order_id, customer, state, last_error, next_attempt_at) \
                 VALUES ($1, '', 'releasing', 'cancelled', now() + make_interval(secs => $2)) \
                 ON CONFLICT (order_id) DO UPDATE SET state = 'releasing', updated_at = now(), \
                 next_attempt_at = EXCLUDED.next_attempt_at",
            )
            .bind(id)
            .bind(RELEASE_LEASE.as_secs_f64())
            .execute(&mut *tx)
            .await?;
            Cancel::Cancelled
        }
    };
    let record = load_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(match record {
        Some(r) => outcome(r),
        None => Cancel::NotFound,
    })
}

async fn load_in(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<Option<OrderRecord>, Error> {
    let order = sqlx::query_as::<_, OrderRow>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders o WHERE o.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(with_lines(&mut **tx, order.into_iter().collect())
        .await?
        .pop())
}

/// A stored shipment and the orders that left in it.
pub struct Shipment {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub orders: Vec<OrderRecord>,
}

/// Ships whichever of `ids` are still confirmed, in one new shipment to
/// `destination`. `None` when none of them could ship.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "INSERT", db.table = "shipments", orders = ids.len()))]
pub async fn ship(db: &Db, destination: &str, ids: &[Uuid]) -> Result<Option<Shipment>, Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    let id = Uuid::now_v7();
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO shipments (id, destination) VALUES ($1, $2) RETURNING created_at",
    )
    .bind(id)
    .bind(destination)
    .fetch_one(&mut *tx)
    .await?;
    let shipped: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE orders SET status = 'shipped', shipment_id = $1, updated_at = now() \
         WHERE id = ANY($2) AND status = 'confirmed' RETURNING id",
    )
    .bind(id)
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    if shipped.is_empty() {
        tx.rollback().await?;
        return Ok(None);
    }
    let orders = sqlx::query_as::<_, OrderRow>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders o WHERE o.id = ANY($1) ORDER BY o.created_at, o.id"
    ))
    .bind(&shipped)
    .fetch_all(&mut *tx)
    .await?;
    let orders = with_lines(&mut *tx, orders).await?;
    tx.commit().await?;
    Ok(Some(Shipment {
        id,
        created_at,
        orders,
    }))
}

/// Reservations due for release: placements abandoned for longer than
/// `abandoned_after` are turned into releases first.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "UPDATE", db.table = "reservation_intents"))]
pub async fn due_releases(
    db: &Db,
    abandoned_after: std::time::Duration,
    limit: i64,
) -> Result<Vec<Uuid>, Error> {
    let mut conn = db.acquire().await?;
    sqlx::query(
        "UPDATE reservation_intents SET state = 'releasing', last_error = 'abandoned', updated_at = now() \
         WHERE state = 'reserving' AND created_at < now() - make_interval(secs => $1)",
    )
    .bind(abandoned_after.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    // Claimed: other replicas' sweeps pass these by until the lease ends.
    Ok(sqlx::query_scalar(
        "UPDATE reservation_intents r SET next_attempt_at = now() + make_interval(secs => $2) \
         FROM (SELECT order_id FROM reservation_intents \
               WHERE state = 'releasing' AND next_attempt_at <= now() \
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due \
         WHERE r.order_id = due.order_id RETURNING r.order_id",
    )
    .bind(limit)
    .bind(RELEASE_LEASE.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?)
}

/// How long a release, once claimed by one replica (its sweep, or the call
/// that cancelled the order), is left to it before another replica may try:
/// far longer than one release call with its retries takes.
pub const RELEASE_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The catalog confirmed the release.
pub async fn released(db: &Db, order_id: Uuid) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query("DELETE FROM reservation_intents WHERE order_id = $1 AND state = 'releasing'")
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The release failed; it will be tried again later.
pub async fn release_failed(db: &Db, order_id: Uuid, error: &str) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    sqlx::query(
        "UPDATE reservation_intents SET attempts = attempts + 1, last_error = $2, updated_at = now(), \
         next_attempt_at = now() WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
