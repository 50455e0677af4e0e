//! Every SQL statement of the catalog. Plain async functions over the pool;
//! each one that changes more than one row owns its transaction.
//!
//! Stock never goes negative and is never sold twice: reservations lock the
//! product rows they touch (`FOR UPDATE`, always in id order, so two
//! reservations never deadlock), check every line, and only then take the
//! stock, all in one transaction.

use std::collections::BTreeMap;

use shop_runtime::pg::{Db, ReadAt};
use sqlx::{Connection as _, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    error::{Error, Shortage},
    product::{self, Cursor, Filter, NewProduct, Phase, ProductRow},
    reservation::{LineRow, Reservation, State},
};

/// The columns of [`ProductRow`].
macro_rules! product_columns {
    () => {
        "id, name, description, currency, price_minor, stock, image_url, category, created_at, updated_at"
    };
}

/// Inserts a product. A taken id or name is `AlreadyExists`.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "INSERT", db.table = "products"))]
pub async fn insert_product(db: &Db, p: &NewProduct) -> Result<ProductRow, Error> {
    let mut conn = db.acquire().await?;
    sqlx::query_as::<_, ProductRow>(concat!(
        "INSERT INTO products (id, name, description, currency, price_minor, stock, image_url, category) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
        product_columns!()
    ))
    .bind(p.id)
    .bind(&p.name)
    .bind(&p.description)
    .bind(&p.currency)
    .bind(p.price_minor)
    .bind(p.stock)
    .bind(&p.image_url)
    .bind(&p.category)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match shop_runtime::pg::violated_constraint(&e) {
        Some("products_pkey") => Error::IdTaken(p.id),
        Some("products_name_key") => Error::NameTaken(p.name.clone()),
        _ => e.into(),
    })
}

/// `getProduct`'s statement (the benchmark runs it through pgbench too).
pub const GET_PRODUCT_SQL: &str = concat!(
    "SELECT ",
    product_columns!(),
    " FROM products WHERE id = $1"
);

/// One product by id.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "products"))]
pub async fn get_product(db: &ReadAt<'_>, id: Uuid) -> Result<Option<ProductRow>, Error> {
    Ok(db
        .read(|mut conn| async move {
            sqlx::query_as::<_, ProductRow>(GET_PRODUCT_SQL)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
        })
        .await?)
}

/// Products matching any of `ids` or `names`, each once.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "products", ids = ids.len(), names = names.len()))]
pub async fn get_products(
    db: &ReadAt<'_>,
    ids: &[Uuid],
    names: &[String],
) -> Result<Vec<ProductRow>, Error> {
    Ok(db
        .read(|mut conn| async move {
            sqlx::query_as::<_, ProductRow>(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id = ANY($1) OR name = ANY($2)"
            ))
            .bind(ids)
            .bind(names)
            .fetch_all(&mut *conn)
            .await
        })
        .await?)
}

/// Up to `limit` products matching `filter`, starting after `after`, each
/// with where it stands in the listing. Callers page through big results;
/// nothing here loads more than `limit` rows, and every statement is served
/// by an index (`tests/api/search.rs` checks the plans on a big catalog):
///
/// - without a query, in (name, id) order (`products_name_key`, or
///   `products_category_name` for a category);
/// - with one, best matches first: names that start with it, in lower-case
///   order (`products_name_lower`), then the other products that contain it
///   in name, description or category, in (name, id) order (the trigram
///   index `products_search`). A query shorter than three characters (too
///   short for trigrams) matches name starts only.
///
/// Search statements are not kept prepared: planned with the query itself,
/// PostgreSQL picks between walking the name index (a common word) and the
/// trigram index (a rare one), which a generic plan cannot.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "products", limit))]
pub async fn list_products<'a>(
    db: &ReadAt<'_>,
    filter: &Filter,
    after: Option<&'a Cursor>,
    limit: i64,
) -> Result<Vec<Found>, Error> {
    let Some(query) = filter.query.as_deref() else {
        let rows = db
            .read(|mut conn| async move {
                sqlx::query_as::<_, ProductRow>(ALL_SQL)
                    .persistent(false)
                    .bind(filter.category.as_deref())
                    .bind(after.map(|c| c.name.as_str()))
                    .bind(after.map(|c| c.id).unwrap_or_default())
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await
            })
            .await?;
        return Ok(found(rows, Phase::Names));
    };
    let escaped = &product::escape_like(query);
    let part = |sql: &'static str, after: Option<&'a Cursor>, limit: i64| async move {
        db.read(|mut conn| async move {
            sqlx::query_as::<_, ProductRow>(sql)
                .persistent(false)
                .bind(escaped)
                .bind(filter.category.as_deref())
                .bind(after.map(|c| c.name.as_str()))
                .bind(after.map(|c| c.id).unwrap_or_default())
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
        })
        .await
    };
    let mut listed = Vec::new();
    if after.is_none_or(|c| c.phase == Phase::Names) {
        listed = found(part(NAME_STARTS_SQL, after, limit).await?, Phase::Names);
    }
    let rest = limit - listed.len() as i64;
    if rest == 0 || query.chars().count() < product::MIN_TRIGRAM_QUERY {
        return Ok(listed);
    }
    let after = after.filter(|c| c.phase == Phase::Contains);
    listed.extend(found(
        part(CONTAINS_SQL, after, rest).await?,
        Phase::Contains,
    ));
    Ok(listed)
}

/// A product a listing found, and which part of the listing it came from
/// (where the next page starts: [`Cursor::after`]).
#[derive(Debug)]
pub struct Found {
    pub row: ProductRow,
    pub phase: Phase,
}

fn found(rows: Vec<ProductRow>, phase: Phase) -> Vec<Found> {
    rows.into_iter().map(|row| Found { row, phase }).collect()
}

/// Every product (of a category, if given), in (name, id) order.
pub const ALL_SQL: &str = concat!(
    "SELECT ",
    product_columns!(),
    " FROM products \
      WHERE ($1::text IS NULL OR category = $1) \
        AND ($2::text IS NULL OR (name, id) > ($2, $3)) \
      ORDER BY name, id \
      LIMIT $4"
);

/// Products whose name starts with `$1` (LIKE-escaped), in case-folded
/// byte order.
pub const NAME_STARTS_SQL: &str = concat!(
    "SELECT ",
    product_columns!(),
    " FROM products \
      WHERE lower(name) COLLATE \"C\" LIKE lower($1) || '%' \
        AND ($2::text IS NULL OR category = $2) \
        AND ($3::text IS NULL OR (lower(name) COLLATE \"C\", id) > (lower($3) COLLATE \"C\", $4)) \
      ORDER BY lower(name) COLLATE \"C\", id \
      LIMIT $5"
);

/// Products containing `$1` (LIKE-escaped) in name, description or
/// category whose name does not start with it, in (name, id) order. The
/// matched expression is the trigram index's.
pub const CONTAINS_SQL: &str = concat!(
    "SELECT ",
    product_columns!(),
    " FROM products \
      WHERE (name || ' ' || description || ' ' || category) ILIKE '%' || $1 || '%' \
        AND lower(name) COLLATE \"C\" NOT LIKE lower($1) || '%' \
        AND ($2::text IS NULL OR category = $2) \
        AND ($3::text IS NULL OR (name, id) > ($3, $4)) \
      ORDER BY name, id \
      LIMIT $5"
);

/// Adds `delta` to a product's stock and records who did it and why.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "UPDATE", db.table = "products", delta))]
pub async fn adjust_stock(
    db: &Db,
    id: Uuid,
    delta: i64,
    reason: &str,
    actor: &str,
) -> Result<ProductRow, Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    let current: Option<Option<i64>> =
        sqlx::query_scalar("SELECT stock FROM products WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(stock) = current else {
        return Err(Error::NotFound(format!("product {id}")));
    };
    // An untracked product starts tracking with a positive delta.
    let Some(stock) = stock.or((delta > 0).then_some(0)) else {
        return Err(Error::StockNotTracked {
            product_id: id.to_string(),
            removing: -delta,
        });
    };
    let Some(after) = stock.checked_add(delta).filter(|s| *s >= 0) else {
        return Err(Error::StockWouldGoNegative {
            product_id: id.to_string(),
            stock,
            removing: -delta,
        });
    };
    if after > crate::product::MAX_STOCK {
        return Err(Error::Invalid({
            let mut v = shop_runtime::error::FieldViolations::default();
            v.add(
                "delta",
                format!("stock would exceed {}", crate::product::MAX_STOCK),
            );
            v
        }));
    }
    let row = sqlx::query_as::<_, ProductRow>(concat!(
        "UPDATE products SET stock = $2, updated_at = now() WHERE id = $1 RETURNING ",
        product_columns!()
    ))
    .bind(id)
    .bind(after)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO stock_adjustments (product_id, delta, stock_after, reason, actor) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(delta)
    .bind(after)
    .bind(reason)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Takes stock for every line of `order_id`, all or nothing; see
/// `reserveStock` in the contract. `lines` maps product id → quantity.
/// One round trip: the `reserve_stock` function (migration 0003) claims
/// the order id, locks the products in id order, checks and takes.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "reserve", db.table = "reservations", lines = lines.len()))]
pub async fn reserve(
    db: &Db,
    order_id: &str,
    lines: &BTreeMap<Uuid, i64>,
) -> Result<Reservation, Error> {
    type Row = (
        bool,
        String,
        chrono::DateTime<chrono::Utc>,
        Option<Uuid>,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let ids: Vec<Uuid> = lines.keys().copied().collect();
    let quantities: Vec<i64> = lines.values().copied().collect();
    let mut conn = db.acquire().await?;
    let rows: Vec<Row> = match sqlx::query_as("SELECT * FROM reserve_stock($1, $2, $3)")
        .bind(order_id)
        .bind(&ids)
        .bind(&quantities)
        .fetch_all(&mut *conn)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return Err(refusal(&e).unwrap_or_else(|| e.into())),
    };
    let Some((fresh, state, created_at, ..)) = rows.first() else {
        return Err(Error::NotFound(format!("reservation {order_id}")));
    };
    let (fresh, state, created_at) = (*fresh, State::from_column(state), *created_at);
    let reservation = Reservation {
        order_id: order_id.to_owned(),
        state,
        created_at,
        lines: rows
            .into_iter()
            .filter_map(
                |(_, _, _, product_id, quantity, currency, price_minor, name)| {
                    Some(LineRow {
                        product_id: product_id?,
                        quantity: quantity?,
                        currency: currency?,
                        price_minor: price_minor?,
                        name: name?,
                    })
                },
            )
            .collect(),
    };
    if fresh {
        return Ok(reservation);
    }
    match reservation.state {
        State::Released => Err(Error::ReservationReleased(order_id.to_owned())),
        State::Held if reservation.same_lines(lines) => Ok(reservation),
        State::Held => Err(Error::ReservationDiffers(order_id.to_owned())),
    }
}

/// The refusals `reserve_stock` raises (unknown products, not enough stock),
/// read from the error's code and detail.
fn refusal(error: &sqlx::Error) -> Option<Error> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let detail = pg.detail().unwrap_or_default();
    match pg.code() {
        "SH404" => Some(Error::NotFound(
            detail
                .split(',')
                .map(|id| format!("product {id}"))
                .collect::<Vec<_>>()
                .join(", "),
        )),
        "SH409" => {
            let short: Vec<(String, i64, i64)> = serde_json::from_str(detail).ok()?;
            Some(Error::InsufficientStock(
                short
                    .into_iter()
                    .map(|(product_id, requested, available)| Shortage {
                        product_id,
                        requested,
                        available,
                    })
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// Gives `order_id`'s stock back; see `releaseStock` in the contract.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "release", db.table = "reservations"))]
pub async fn release(db: &Db, order_id: &str) -> Result<Reservation, Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    // An order that releases before it ever reserved leaves a tombstone, so a
    // late reservation (say, a retry that was still in flight) cannot take
    // stock nobody will give back.
    let tombstone: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "INSERT INTO reservations (order_id, state, released_at) VALUES ($1, 'released', now()) \
         ON CONFLICT (order_id) DO NOTHING RETURNING created_at",
    )
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(created_at) = tombstone {
        tx.commit().await?;
        return Ok(Reservation {
            order_id: order_id.to_owned(),
            state: State::Released,
            created_at,
            lines: Vec::new(),
        });
    }
    let existing = load_reservation(&mut tx, order_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("reservation {order_id}")))?;
    if existing.state == State::Released {
        tx.rollback().await?;
        return Ok(existing);
    }
    let ids: Vec<Uuid> = existing.lines.iter().map(|l| l.product_id).collect();
    sqlx::query("SELECT id FROM products WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    // Only what was taken goes back: a line of a product that did not track
    // stock when it was reserved gives nothing back, even if the product
    // tracks stock now.
    sqlx::query(
        "UPDATE products p SET stock = p.stock + l.quantity, updated_at = now() \
         FROM reservation_lines l WHERE l.order_id = $1 AND l.tracked AND p.id = l.product_id",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE reservations SET state = 'released', released_at = now() WHERE order_id = $1",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reservation {
        state: State::Released,
        ..existing
    })
}

/// `order_id`'s reservation, its row locked until `tx` ends.
async fn load_reservation(
    tx: &mut Transaction<'_, Postgres>,
    order_id: &str,
) -> Result<Option<Reservation>, Error> {
    let Some((state, created_at)): Option<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT state, created_at FROM reservations WHERE order_id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(&mut **tx)
            .await?
    else {
        return Ok(None);
    };
    let lines = sqlx::query_as::<_, LineRow>(
        "SELECT product_id, quantity, currency, price_minor, name FROM reservation_lines \
         WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(Some(Reservation {
        order_id: order_id.to_owned(),
        state: State::from_column(&state),
        created_at,
        lines,
    }))
}
