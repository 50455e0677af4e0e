//! Placing an order (`addOrder`): the shop's core workflow, the one step
//! that changes two services' data, so the one that must never lose or
//! double anything. In order:
//!
//! 1. **Idempotency.** A retry with a known key gets the first order's id;
//!    a different order reusing the key is refused.
//! 2. **Resolve.** Quantities merged per product; products named by name
//!    are looked up in the catalog (by id, the reservation finds them).
//! 3. **Claim.** A `reserving` intent row (the release outbox) for a new
//!    order id: at most one placement per key at a time (one statement,
//!    which also tells whether the key's order was placed meanwhile).
//! 4. **Reserve.** The catalog takes the stock and locks in its prices, in
//!    one statement on its side (keyed by order id, so a repeat is harmless).
//! 5. **Price.** The total from the reserved prices, with checked arithmetic.
//! 6. **Confirm.** The order, its lines and the end of the intent, in one
//!    statement. The release sweep serialises with this on the intent row
//!    ([`db::confirm`]): a placement taking longer than `--abandoned-after`
//!    is released by the sweep and then cannot confirm, so a reservation is
//!    kept by exactly one confirmed order or given back, never both.
//! 7. **Compensate.** Any failure after the catalog may have reserved
//!    records that the reservation must be given back and tries once at
//!    once; the release task retries until the catalog confirms.

use std::collections::{BTreeMap, HashMap, HashSet};

use shop_proto::ecommerce::{Product, Reservation};
use shop_runtime::{deadline::Deadline, error::FieldViolations, pg::Db, upstream::Fault};
use uuid::Uuid;

use crate::{
    catalog::Catalog,
    db::{self, Confirm, Confirmed, PricedLine},
    error::Error,
    order::{self, NewOrder, OrderRecord, ProductRef},
    release,
};

/// How a placement ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// A new order, confirmed and its stock reserved.
    New(Uuid),
    /// A retry of an order already placed with the same key: nothing new.
    Again(Uuid),
}

impl Placed {
    /// The order's id, new or not.
    pub fn id(self) -> Uuid {
        match self {
            Placed::New(id) | Placed::Again(id) => id,
        }
    }
}

/// Places `new` for `customer` (the workflow in the module documentation).
pub async fn place(
    db: &Db,
    catalog: &Catalog,
    customer: &str,
    new: NewOrder,
    deadline: Deadline,
) -> Result<Placed, Error> {
    let key = new.idempotency_key.as_deref();
    let fingerprint = new.fingerprint();
    let earlier = |existing: OrderRecord| again(&existing, &fingerprint);
    if let Some(key) = key
        && let Some(existing) = db::find_by_key(db, customer, key).await?
    {
        return earlier(existing);
    }
    let resolved = resolve(catalog, &new, deadline).await?;

    let order_id = Uuid::now_v7();
    let claim = db::claim(db, order_id, customer, key).await?;
    if claim != db::Claim::Claimed {
        if claim == db::Claim::Placed {
            // Finished between the first look and the claim.
            db::forget_reserving(db, order_id).await?;
        }
        return match key {
            Some(key) => match db::find_by_key(db, customer, key).await? {
                Some(existing) => earlier(existing),
                None => Err(Error::PlacementInFlight),
            },
            None => Err(Error::PlacementInFlight),
        };
    }
    let reservation = match catalog.reserve(order_id, &resolved.merged, deadline).await {
        Ok(r) => r,
        Err(e) if e.fault == Fault::Refused || e.fault == Fault::NotFound || e.never_sent() => {
            // A definite "no", or never asked: nothing was reserved.
            db::forget_reserving(db, order_id).await?;
            if e.fault == Fault::NotFound && resolved.unchecked {
                // Ids the catalog does not have: say which, field by field.
                lookup(catalog, &new, deadline).await?;
            }
            return Err(e.into());
        }
        Err(e) => return Err(compensate(db, catalog, order_id, e.into()).await),
    };
    let priced = match price(&reservation, &new, &resolved.products) {
        Ok(priced) => priced,
        Err(e) => return Err(compensate(db, catalog, order_id, e).await),
    };
    let confirmed = Confirmed {
        id: order_id,
        customer,
        idempotency_key: key,
        fingerprint: &fingerprint,
        description: &new.description,
        destination: &new.destination,
        currency: &priced.currency,
        total_minor: priced.total_minor,
        lines: priced.lines,
    };
    match db::confirm(db, &confirmed).await {
        Ok(Confirm::Stored) => {
            tracing::info!(order.id = %order_id, lines = confirmed.lines.len(), total_minor = confirmed.total_minor, "order confirmed");
            Ok(Placed::New(order_id))
        }
        // The sweep took the intent: it gives the reservation back.
        Ok(Confirm::Abandoned) => Err(Error::PlacementAbandoned),
        Ok(Confirm::DuplicateKey) => {
            let lost = compensate(db, catalog, order_id, Error::PlacementInFlight).await;
            match key {
                Some(key) => match db::find_by_key(db, customer, key).await? {
                    Some(existing) => earlier(existing),
                    None => Err(lost),
                },
                None => Err(lost),
            }
        }
        Err(e) => Err(compensate(db, catalog, order_id, e).await),
    }
}

/// A key seen before: the same order again, or a different one reusing it.
fn again(existing: &OrderRecord, fingerprint: &str) -> Result<Placed, Error> {
    if existing.order.fingerprint == fingerprint {
        Ok(Placed::Again(existing.order.id))
    } else {
        Err(Error::KeyReused)
    }
}

/// The products `new` asks for.
struct Resolved {
    /// What to reserve: product → quantity, over all lines.
    merged: BTreeMap<Uuid, i64>,
    /// The product of each requested line, in the order sent.
    products: Vec<Uuid>,
    /// Not looked up in the catalog: the reservation tells whether they
    /// exist (one call fewer per order).
    unchecked: bool,
}

/// The product lines of `new`. Lines given by product id need no lookup:
/// the reservation finds them (and refuses ids it does not have). Names
/// are looked up in the catalog.
async fn resolve(catalog: &Catalog, new: &NewOrder, deadline: Deadline) -> Result<Resolved, Error> {
    let mut products = Vec::with_capacity(new.requested.len());
    for r in &new.requested {
        match r.product {
            ProductRef::Id(id) => products.push(id),
            ProductRef::Name(_) => return lookup(catalog, new, deadline).await,
        }
    }
    let mut merged: BTreeMap<Uuid, i64> = BTreeMap::new();
    for (r, id) in new.requested.iter().zip(&products) {
        *merged.entry(*id).or_default() += r.quantity;
    }
    let mut v = FieldViolations::default();
    check_quantities(&mut v, &merged);
    v.finish()?;
    Ok(Resolved {
        merged,
        products,
        unchecked: true,
    })
}

fn check_quantities(v: &mut FieldViolations, merged: &BTreeMap<Uuid, i64>) {
    if merged.values().any(|q| *q > order::MAX_QUANTITY) {
        v.add(
            "lines",
            format!(
                "at most {} units of one product per order",
                order::MAX_QUANTITY
            ),
        );
    }
}

/// The product lines of `new`, checked against the catalog.
async fn lookup(catalog: &Catalog, new: &NewOrder, deadline: Deadline) -> Result<Resolved, Error> {
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for r in &new.requested {
        match &r.product {
            ProductRef::Id(id) => ids.push(id.to_string()),
            ProductRef::Name(name) => names.push(name.clone()),
        }
    }
    let found = catalog.products(ids, names, deadline).await?;
    let by_id: HashMap<&str, &Product> =
        found.products.iter().map(|p| (p.id.as_str(), p)).collect();
    let by_name: HashMap<&str, &Product> = found
        .products
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();

    let mut v = FieldViolations::default();
    let mut lines: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut products = Vec::with_capacity(new.requested.len());
    let mut currencies = HashSet::new();
    for r in &new.requested {
        let product = match &r.product {
            ProductRef::Id(id) => by_id.get(id.to_string().as_str()),
            ProductRef::Name(name) => by_name.get(name.as_str()),
        };
        let Some(product) = product else {
            let what = match &r.product {
                ProductRef::Id(id) => id.to_string(),
                ProductRef::Name(name) => format!("{name:?}"),
            };
            v.add(r.field.clone(), format!("no such product: {what}"));
            continue;
        };
        let id = Uuid::parse_str(&product.id)
            .map_err(|_| Error::CatalogBroken("a product id that is not a UUID"))?;
        if let Some(price) = &product.unit_price {
            currencies.insert(price.currency_code.clone());
        }
        *lines.entry(id).or_default() += r.quantity;
        products.push(id);
    }
    if currencies.len() > 1 {
        v.add("lines", ONE_CURRENCY);
    }
    check_quantities(&mut v, &lines);
    v.finish()?;
    Ok(Resolved {
        merged: lines,
        products,
        unchecked: false,
    })
}

/// An order's lines (as the client sent them, in its order) and total at the
/// prices the catalog reserved them at.
struct Priced {
    currency: String,
    total_minor: i64,
    lines: Vec<PricedLine>,
}

const ONE_CURRENCY: &str = "all products of one order must be priced in the same currency";

fn price(reservation: &Reservation, new: &NewOrder, products: &[Uuid]) -> Result<Priced, Error> {
    let mut reserved = HashMap::with_capacity(reservation.lines.len());
    let mut currency = String::new();
    for line in &reservation.lines {
        let price = line.unit_price.clone().unwrap_or_default();
        let unit_price_minor = price
            .to_minor()
            .map_err(|_| Error::CatalogBroken("a reserved price that is not money"))?;
        if !currency.is_empty() && currency != price.currency_code {
            // Lines by id are not looked up first: the reservation is
            // where mixed currencies show (and it is given back).
            let mut v = FieldViolations::default();
            v.add("lines", ONE_CURRENCY);
            return Err(v.into());
        }
        currency = price.currency_code;
        let id = Uuid::parse_str(&line.product_id)
            .map_err(|_| Error::CatalogBroken("a reserved product id that is not a UUID"))?;
        reserved.insert(id, (line.name.as_str(), unit_price_minor));
    }
    let mut total_minor: i64 = 0;
    let mut lines = Vec::with_capacity(new.requested.len());
    for (requested, product_id) in new.requested.iter().zip(products) {
        let (name, unit_price_minor) = *reserved.get(product_id).ok_or(Error::CatalogBroken(
            "a reservation without a requested product",
        ))?;
        total_minor = unit_price_minor
            .checked_mul(requested.quantity)
            .and_then(|l| total_minor.checked_add(l))
            .ok_or(Error::TotalTooLarge)?;
        lines.push(PricedLine {
            product_id: *product_id,
            name: name.to_owned(),
            quantity: requested.quantity,
            unit_price_minor,
            item: requested.item.clone(),
        });
    }
    Ok(Priced {
        currency,
        total_minor,
        lines,
    })
}

/// After `cause`, a failure that leaves the reservation of `order_id`
/// uncertain: records that it must be released, tries once right away, and
/// gives `cause` back.
async fn compensate(db: &Db, catalog: &Catalog, order_id: Uuid, cause: Error) -> Error {
    if let Err(e) = db::must_release(db, order_id, &cause.to_string()).await {
        tracing::warn!(order.id = %order_id, error = %e, "cannot record the release; the abandoned-placement sweep will do it");
    }
    release::release_now(db, catalog, order_id).await;
    cause
}
