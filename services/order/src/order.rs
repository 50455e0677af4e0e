//! Orders as the service sees them: validated requests, database rows, and
//! their translation to the wire messages.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use shop_proto::ecommerce::{Money, Order, OrderLine, OrderStatus};
use shop_runtime::error::FieldViolations;
use uuid::Uuid;

pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 1000;
pub const MAX_DESTINATION: usize = 200;
pub const MAX_DESCRIPTION: usize = 1000;
pub const MAX_KEY: usize = 100;
pub const MAX_ITEM: usize = 200;
pub const MAX_REASON: usize = 200;

/// How a request names a product.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProductRef {
    Id(Uuid),
    Name(String),
}

/// One requested line, with the request field it came from (for errors).
#[derive(Debug, Clone)]
pub struct Requested {
    pub field: String,
    pub product: ProductRef,
    pub quantity: i64,
    /// A book-style item exactly as the client sent it; it is what the
    /// order's `items` show.
    pub item: Option<String>,
}

/// A validated `addOrder` request.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub idempotency_key: Option<String>,
    pub destination: String,
    pub description: String,
    pub requested: Vec<Requested>,
}

impl NewOrder {
    /// Checks every field. Items come from `lines` or, as in the book, from
    /// `items` (ids or names, one unit each); not both. The book's clients
    /// send their own `id`: it becomes the idempotency key.
    pub fn from_proto(order: Order) -> Result<Self, FieldViolations> {
        let mut v = FieldViolations::default();
        let key = if !order.idempotency_key.is_empty() {
            Some(("idempotency_key", order.idempotency_key))
        } else if !order.id.is_empty() {
            Some(("id", order.id))
        } else {
            None
        };
        if let Some((field, key)) = &key
            && (key.len() > MAX_KEY || key.chars().any(char::is_control))
        {
            v.add(*field, format!("must be at most {MAX_KEY} bytes of text"));
        }
        let destination = order.destination.trim().to_owned();
        v.check_text("destination", &destination, MAX_DESTINATION, true);
        v.check_text("description", &order.description, MAX_DESCRIPTION, false);

        let mut requested = Vec::new();
        match (order.lines.is_empty(), order.items.is_empty()) {
            (true, true) => {
                v.add(
                    "lines",
                    "an order needs at least one line (or book-style items)",
                );
            }
            (false, false) => {
                v.add("items", "send either lines or items, not both");
            }
            (false, true) => {
                if order.lines.len() > MAX_LINES {
                    v.add("lines", format!("at most {MAX_LINES} lines"));
                }
                for (i, line) in order.lines.iter().enumerate() {
                    let field = format!("lines[{i}].product_id");
                    let Ok(id) = Uuid::parse_str(&line.product_id) else {
                        v.add(field, "must be a product id (UUID)");
                        continue;
                    };
                    if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                        v.add(
                            format!("lines[{i}].quantity"),
                            format!("must be between 1 and {MAX_QUANTITY}"),
                        );
                        continue;
                    }
                    requested.push(Requested {
                        field,
                        product: ProductRef::Id(id),
                        quantity: line.quantity,
                        item: None,
                    });
                }
            }
            (true, false) => {
                if order.items.len() > MAX_LINES {
                    v.add("items", format!("at most {MAX_LINES} items"));
                }
                for (i, sent) in order.items.iter().enumerate() {
                    let field = format!("items[{i}]");
                    let item = sent.trim();
                    if item.is_empty() || sent.len() > MAX_ITEM {
                        v.add(
                            field,
                            format!("must be a product id or name (1 to {MAX_ITEM} bytes)"),
                        );
                        continue;
                    }
                    let product = match Uuid::parse_str(item) {
                        Ok(id) => ProductRef::Id(id),
                        Err(_) => ProductRef::Name(item.to_owned()),
                    };
                    requested.push(Requested {
                        field,
                        product,
                        quantity: 1,
                        item: Some(sent.clone()),
                    });
                }
            }
        }
        if !v.is_empty() {
            return Err(v);
        }
        Ok(NewOrder {
            idempotency_key: key.map(|(_, k)| k),
            destination,
            description: order.description,
            requested,
        })
    }

    /// A digest of what was asked for, to tell a retry (same fingerprint)
    /// from a different order reusing an idempotency key.
    pub fn fingerprint(&self) -> String {
        let mut merged: BTreeMap<&ProductRef, i64> = BTreeMap::new();
        for r in &self.requested {
            *merged.entry(&r.product).or_default() += r.quantity;
        }
        let mut hash = Sha256::new();
        hash.update(self.destination.as_bytes());
        hash.update([0]);
        hash.update(self.description.as_bytes());
        for (product, quantity) in merged {
            hash.update([0]);
            match product {
                ProductRef::Id(id) => hash.update(id.as_bytes()),
                ProductRef::Name(name) => hash.update(name.as_bytes()),
            }
            hash.update(quantity.to_be_bytes());
        }
        format!("{:x}", hash.finalize())
    }
}

/// An order id from a request field: `None` for a string that cannot be an
/// order's id (not a UUID, say the book's "102"), which is simply an id no
/// order has, so callers answer NOT_FOUND. Only an empty id is invalid.
pub fn parse_id(v: &mut FieldViolations, field: &str, value: &str) -> Option<Uuid> {
    let value = value.trim();
    if value.is_empty() {
        v.add(field, "must not be empty");
        return None;
    }
    Uuid::parse_str(value).ok()
}

/// Where an order is in its life (the `status` column; the database's
/// CHECK constraint allows exactly these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum OrderState {
    Confirmed,
    Shipped,
    Cancelled,
}

impl OrderState {
    /// Whether nothing more can happen to the order.
    pub fn is_final(self) -> bool {
        matches!(self, OrderState::Shipped | OrderState::Cancelled)
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrderState::Confirmed => "confirmed",
            OrderState::Shipped => "shipped",
            OrderState::Cancelled => "cancelled",
        })
    }
}

/// A row of `orders`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub customer: String,
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    pub status: OrderState,
    pub status_reason: String,
    pub description: String,
    pub destination: String,
    pub currency: String,
    pub total_minor: i64,
    pub shipment_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of `order_lines`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LineRow {
    pub order_id: Uuid,
    pub line_no: i32,
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    /// The book-style item as sent; `None` for lines sent as `lines`.
    pub item: Option<String>,
}

impl LineRow {
    /// What the order's `items` show for this line: the item as the client
    /// sent it, or the product's name.
    pub fn item(&self) -> &str {
        self.item.as_deref().unwrap_or(&self.name)
    }
}

/// An order with its lines.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub order: OrderRow,
    pub lines: Vec<LineRow>,
}

impl From<OrderRecord> for Order {
    fn from(record: OrderRecord) -> Self {
        let OrderRecord { order, lines } = record;
        let currency = order.currency.clone();
        let total = Money::from_minor(&currency, order.total_minor);
        Order {
            id: order.id.to_string(),
            items: lines.iter().map(|l| l.item().to_owned()).collect(),
            description: order.description,
            price: total.to_legacy_price(),
            destination: order.destination,
            lines: lines
                .into_iter()
                .map(|l| OrderLine {
                    product_id: l.product_id.to_string(),
                    quantity: l.quantity,
                    unit_price: Some(Money::from_minor(&currency, l.unit_price_minor)),
                    name: l.name,
                    line_total: Some(Money::from_minor(
                        &currency,
                        l.unit_price_minor.saturating_mul(l.quantity),
                    )),
                })
                .collect(),
            total: Some(total),
            status: match order.status {
                OrderState::Confirmed => OrderStatus::Confirmed,
                OrderState::Shipped => OrderStatus::Shipped,
                OrderState::Cancelled => OrderStatus::Cancelled,
            } as i32,
            customer: order.customer,
            create_time: Some(shop_proto::timestamp(order.created_at)),
            update_time: Some(shop_proto::timestamp(order.updated_at)),
            idempotency_key: order.idempotency_key.unwrap_or_default(),
            status_reason: order.status_reason,
            shipment_id: order.shipment_id.map(|s| s.to_string()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_proto::ecommerce::OrderLine;

    #[test]
    fn a_book_order_lists_items_by_name_and_its_id_is_the_idempotency_key() {
        let order = NewOrder::from_proto(Order {
            id: "101".into(),
            items: vec!["iPhone XS".into(), "Mac Book Pro".into()],
            destination: "San Jose, CA".into(),
            price: 2300.0,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(order.idempotency_key.as_deref(), Some("101"));
        assert_eq!(order.requested.len(), 2);
        assert_eq!(
            order.requested[0].product,
            ProductRef::Name("iPhone XS".into())
        );
        assert_eq!(order.requested[1].field, "items[1]");
    }

    #[test]
    fn bad_orders_get_a_violation_per_field() {
        let v = NewOrder::from_proto(Order {
            destination: " ".into(),
            lines: vec![
                OrderLine {
                    product_id: "nope".into(),
                    quantity: 1,
                    ..Default::default()
                },
                OrderLine {
                    product_id: Uuid::now_v7().to_string(),
                    quantity: 0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            v.fields(),
            ["destination", "lines[0].product_id", "lines[1].quantity"]
        );
        let empty = NewOrder::from_proto(Order {
            destination: "Home".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(empty.fields(), ["lines"]);
    }

    #[test]
    fn the_fingerprint_ignores_line_order_and_splitting_but_not_content() {
        let id = Uuid::now_v7();
        let order = |lines: Vec<(Uuid, i64)>, destination: &str| {
            NewOrder::from_proto(Order {
                destination: destination.into(),
                lines: lines
                    .into_iter()
                    .map(|(id, quantity)| OrderLine {
                        product_id: id.to_string(),
                        quantity,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .unwrap()
            .fingerprint()
        };
        let other = Uuid::now_v7();
        assert_eq!(
            order(vec![(id, 2), (other, 1)], "Home"),
            order(vec![(other, 1), (id, 1), (id, 1)], "Home")
        );
        assert_ne!(order(vec![(id, 2)], "Home"), order(vec![(id, 3)], "Home"));
        assert_ne!(order(vec![(id, 2)], "Home"), order(vec![(id, 2)], "Work"));
    }
}
