//! Every SQL statement of the catalog. Plain async functions over the pool;
//! each one that changes more than one row owns its transaction.
//!
//! Stock never goes negative and is never sold twice: reservations lock the
//! product rows they touch (`FOR UPDATE`, always in id order, so two
//! reservations never deadlock), check every line, and only then take the
//! stock, all in one transaction.

use std::collections::BTreeMap;

use shop_runtime::pg::Db;
use sqlx::{Connection as _, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    error::{Error, Shortage},
    product::{Cursor, Filter, NewProduct, ProductRow},
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
pub async fn get_product(db: &Db, id: Uuid) -> Result<Option<ProductRow>, Error> {
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
    db: &Db,
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

/// Up to `limit` products matching `filter`, ordered by (name, id), starting
/// after `after`. Callers page through big results; nothing here loads more
/// than `limit` rows.
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "SELECT", db.table = "products", limit))]
pub async fn list_products(
    db: &Db,
    filter: &Filter,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<ProductRow>, Error> {
    Ok(db
        .read(|mut conn| async move {
            sqlx::query_as::<_, ProductRow>(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products \
                  WHERE ($1::text IS NULL OR name ILIKE $1 OR description ILIKE $1 OR category ILIKE $1) \
                    AND ($2::text IS NULL OR category = $2) \
                    AND ($3::text IS NULL OR (name, id) > ($3, $4)) \
                  ORDER BY name, id \
                  LIMIT $5"
            ))
            .bind(filter.pattern.as_deref())
            .bind(filter.category.as_deref())
            .bind(after.map(|c| c.name.as_str()))
            .bind(after.map(|c| c.id).unwrap_or_default())
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
        })
        .await?)
}

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
#[tracing::instrument(skip_all, fields(db.system = "postgresql", db.operation = "reserve", db.table = "reservations", lines = lines.len()))]
pub async fn reserve(
    db: &Db,
    order_id: &str,
    lines: &BTreeMap<Uuid, i64>,
) -> Result<Reservation, Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;

    // Claim the order id first. A concurrent twin waits here on the primary
    // key until we commit, then finds our row and is answered from it.
    let claimed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "INSERT INTO reservations (order_id, state) VALUES ($1, 'held') \
         ON CONFLICT (order_id) DO NOTHING RETURNING created_at",
    )
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(created_at) = claimed else {
        let existing = load_reservation(&mut tx, order_id, false)
            .await?
            .ok_or_else(|| Error::NotFound(format!("reservation {order_id}")))?;
        tx.rollback().await?;
        return match existing.state {
            State::Released => Err(Error::ReservationReleased(order_id.to_owned())),
            State::Held if existing.same_lines(lines) => Ok(existing),
            State::Held => Err(Error::ReservationDiffers(order_id.to_owned())),
        };
    };

    let ids: Vec<Uuid> = lines.keys().copied().collect();
    let products: Vec<(Uuid, String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, name, currency, price_minor, stock FROM products \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    if products.len() != ids.len() {
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !products.iter().any(|p| p.0 == **id))
            .map(|id| format!("product {id}"))
            .collect();
        return Err(Error::NotFound(missing.join(", ")));
    }
    let shortages: Vec<Shortage> = products
        .iter()
        .filter_map(|(id, _, _, _, stock)| {
            let requested = lines[id];
            let available = (*stock)?;
            (available < requested).then(|| Shortage {
                product_id: id.to_string(),
                requested,
                available,
            })
        })
        .collect();
    if !shortages.is_empty() {
        // Dropping the transaction rolls back the claim too: the order id
        // stays free for a retry once stock is back.
        return Err(Error::InsufficientStock(shortages));
    }

    let quantities: Vec<i64> = ids.iter().map(|id| lines[id]).collect();
    // Untracked products (stock NULL) stay untracked: NULL - n is NULL.
    sqlx::query(
        "UPDATE products p SET stock = p.stock - l.quantity, updated_at = now() \
         FROM unnest($1::uuid[], $2::bigint[]) AS l(id, quantity) WHERE p.id = l.id",
    )
    .bind(&ids)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    let tracked: Vec<bool> = products.iter().map(|p| p.4.is_some()).collect();
    let reserved: Vec<LineRow> = products
        .into_iter()
        .map(|(product_id, name, currency, price_minor, _)| LineRow {
            quantity: lines[&product_id],
            product_id,
            currency,
            price_minor,
            name,
        })
        .collect();
    sqlx::query(
        "INSERT INTO reservation_lines (order_id, product_id, quantity, currency, price_minor, name, tracked) \
         SELECT $1, * FROM unnest($2::uuid[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::bool[])",
    )
    .bind(order_id)
    .bind(&ids)
    .bind(&quantities)
    .bind(reserved.iter().map(|l| l.currency.clone()).collect::<Vec<_>>())
    .bind(reserved.iter().map(|l| l.price_minor).collect::<Vec<_>>())
    .bind(reserved.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
    .bind(&tracked)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reservation {
        order_id: order_id.to_owned(),
        state: State::Held,
        created_at,
        lines: reserved,
    })
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
    let existing = load_reservation(&mut tx, order_id, true)
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

async fn load_reservation(
    tx: &mut Transaction<'_, Postgres>,
    order_id: &str,
    lock: bool,
) -> Result<Option<Reservation>, Error> {
    let query = if lock {
        "SELECT state, created_at FROM reservations WHERE order_id = $1 FOR UPDATE"
    } else {
        "SELECT state, created_at FROM reservations WHERE order_id = $1"
    };
    let Some((state, created_at)): Option<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as(query)
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
        state: if state == "released" {
            State::Released
        } else {
            State::Held
        },
        created_at,
        lines,
    }))
}
