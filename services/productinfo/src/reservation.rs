//! Stock reservations: the order service takes stock for an order's lines
//! and gives it back if the order fails or is cancelled.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shop_proto::ecommerce::{self, Money, ReservationState, ReservedLine, StockLine};
use shop_runtime::error::FieldViolations;
use uuid::Uuid;

use crate::product::parse_id;

pub const MAX_ORDER_ID: usize = 100;
pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 1_000_000;

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Held,
    Released,
}

impl State {
    /// From the `reservations.state` column ('held' or 'released').
    pub fn from_column(state: &str) -> Self {
        if state == "released" {
            State::Released
        } else {
            State::Held
        }
    }
}

/// One reserved product, with the price and name it was reserved at.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LineRow {
    pub product_id: Uuid,
    pub quantity: i64,
    pub currency: String,
    pub price_minor: i64,
    pub name: String,
}

/// A reservation and its lines (ordered by product id).
#[derive(Debug, Clone)]
pub struct Reservation {
    pub order_id: String,
    pub state: State,
    pub created_at: DateTime<Utc>,
    pub lines: Vec<LineRow>,
}

impl Reservation {
    /// Whether this reservation took exactly `lines` (product → quantity).
    pub fn same_lines(&self, lines: &BTreeMap<Uuid, i64>) -> bool {
        self.lines.len() == lines.len()
            && self
                .lines
                .iter()
                .all(|l| lines.get(&l.product_id) == Some(&l.quantity))
    }
}

impl From<Reservation> for ecommerce::Reservation {
    fn from(r: Reservation) -> Self {
        ecommerce::Reservation {
            order_id: r.order_id,
            state: match r.state {
                State::Held => ReservationState::Held,
                State::Released => ReservationState::Released,
            } as i32,
            lines: r
                .lines
                .into_iter()
                .map(|l| ReservedLine {
                    product_id: l.product_id.to_string(),
                    quantity: l.quantity,
                    unit_price: Some(Money::from_minor(&l.currency, l.price_minor)),
                    name: l.name,
                })
                .collect(),
            create_time: Some(shop_proto::timestamp(r.created_at)),
        }
    }
}

/// Checks an order id used as a reservation key.
pub fn check_order_id(v: &mut FieldViolations, order_id: &str) {
    if order_id.is_empty() {
        v.add("order_id", "must not be empty");
    } else if order_id.len() > MAX_ORDER_ID
        || order_id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        v.add(
            "order_id",
            format!("must be at most {MAX_ORDER_ID} bytes without spaces or control characters"),
        );
    }
}

/// Validates the lines of a reservation and merges repeated products.
pub fn merge_lines(v: &mut FieldViolations, lines: &[StockLine]) -> BTreeMap<Uuid, i64> {
    if lines.is_empty() {
        v.add("lines", "must have at least one line");
    } else if lines.len() > MAX_LINES {
        v.add("lines", format!("must have at most {MAX_LINES} lines"));
    }
    let mut merged = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let field = format!("lines[{i}].product_id");
        let id = parse_id(v, &field, &line.product_id);
        // The order service sends only ids it got from the catalog.
        if id.is_none() && !line.product_id.is_empty() {
            v.add(field, "must be a product id (UUID)");
        }
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            v.add(
                format!("lines[{i}].quantity"),
                format!("must be between 1 and {MAX_QUANTITY}"),
            );
            continue;
        }
        let Some(id) = id else { continue };
        *merged.entry(id).or_insert(0) += line.quantity;
    }
    if merged.values().any(|q| *q > MAX_QUANTITY) {
        v.add(
            "lines",
            format!("the quantities of one product add up to more than {MAX_QUANTITY}"),
        );
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_products_are_merged() {
        let id = Uuid::now_v7();
        let line = |q| StockLine {
            product_id: id.to_string(),
            quantity: q,
        };
        let mut v = FieldViolations::default();
        let merged = merge_lines(&mut v, &[line(2), line(3)]);
        assert!(v.is_empty());
        assert_eq!(merged.get(&id), Some(&5));
    }

    #[test]
    fn bad_lines_are_field_violations() {
        let mut v = FieldViolations::default();
        merge_lines(
            &mut v,
            &[StockLine {
                product_id: "x".into(),
                quantity: 0,
            }],
        );
        check_order_id(&mut v, "has space");
        assert_eq!(
            v.into_status().message(),
            "invalid request: lines[0].product_id: must be a product id (UUID); \
             lines[0].quantity: must be between 1 and 1000000; \
             order_id: must be at most 100 bytes without spaces or control characters"
        );
    }
}
