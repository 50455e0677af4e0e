//! The contract's messages as people and programs see them.
//!
//! JSON: one struct per message with the proto's field names in
//! snake_case; money is `{"currency_code": "EUR", "amount": "19.99"}` (an
//! exact decimal string, never a float), times are RFC 3339 strings, enums
//! are their short names (`CONFIRMED`); the book's legacy float prices are
//! left out. Tables: the same data in columns.

use chrono::{DateTime, SecondsFormat, Utc};
use prost_types::Timestamp;
use serde::Serialize;
use shop_proto::{
    ecommerce::{
        Cart, CombinedShipment, Money, Order, OrderStatus, Product, Reservation, ReservationState,
        Session, UpdateOrdersResult,
    },
    money::minor_digits,
};

use super::output::{Align, Format, Printer, Rows, Table};

/// `19.99` for 19 units and 990000000 nanos: exact, with at least the
/// currency's decimals (`5.00 USD`, `500 JPY`).
pub fn amount(money: &Money) -> String {
    let negative = money.units < 0 || money.nanos < 0;
    let nanos = i64::from(money.nanos).unsigned_abs();
    let units = money.units.unsigned_abs() + nanos / 1_000_000_000;
    let mut fraction = format!("{:09}", nanos % 1_000_000_000);
    let digits = minor_digits(&money.currency_code).unwrap_or(2) as usize;
    while fraction.len() > digits && fraction.ends_with('0') {
        fraction.pop();
    }
    let sign = if negative { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{units}")
    } else {
        format!("{sign}{units}.{fraction}")
    }
}

/// `19.99 EUR`, or empty when there is no amount.
pub fn money_text(money: Option<&Money>) -> String {
    money
        .map(|m| format!("{} {}", amount(m), m.currency_code))
        .unwrap_or_default()
}

/// An exact amount and its currency.
#[derive(Serialize)]
pub struct MoneyJson {
    pub currency_code: String,
    pub amount: String,
}

fn money_json(money: Option<&Money>) -> Option<MoneyJson> {
    money.map(|m| MoneyJson {
        currency_code: m.currency_code.clone(),
        amount: amount(m),
    })
}

fn datetime(t: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// RFC 3339 to the second, for tables.
pub fn time_text(t: Option<&Timestamp>) -> String {
    t.and_then(datetime)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// RFC 3339 with as many fractional digits as needed, for JSON.
fn time_json(t: Option<&Timestamp>) -> Option<String> {
    t.and_then(datetime)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn status_name(status: i32) -> &'static str {
    match OrderStatus::try_from(status) {
        Ok(OrderStatus::Confirmed) => "CONFIRMED",
        Ok(OrderStatus::Shipped) => "SHIPPED",
        Ok(OrderStatus::Cancelled) => "CANCELLED",
        _ => "UNSPECIFIED",
    }
}

fn state_name(state: i32) -> &'static str {
    match ReservationState::try_from(state) {
        Ok(ReservationState::Held) => "HELD",
        Ok(ReservationState::Released) => "RELEASED",
        _ => "UNSPECIFIED",
    }
}

/// `{"id": "..."}`: the reply of addProduct and addOrder.
#[derive(Serialize)]
pub struct Id<'a> {
    pub id: &'a str,
}

/// Prints an id returned by an add call.
pub fn print_id(p: &Printer, id: &str) -> anyhow::Result<()> {
    match p.format {
        Format::Json => p.json(&Id { id }),
        Format::Table | Format::Id => p.line(id),
    }
}

#[derive(Serialize)]
pub struct ProductJson {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub unit_price: Option<MoneyJson>,
    pub stock: i64,
    pub image_url: String,
    pub create_time: Option<String>,
    pub update_time: Option<String>,
}

pub fn product_json(p: &Product) -> ProductJson {
    ProductJson {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        category: p.category.clone(),
        unit_price: money_json(p.unit_price.as_ref()),
        stock: p.stock,
        image_url: p.image_url.clone(),
        create_time: time_json(p.create_time.as_ref()),
        update_time: time_json(p.update_time.as_ref()),
    }
}

/// One product in full.
pub fn print_product(p: &Printer, product: &Product) -> anyhow::Result<()> {
    match p.format {
        Format::Json => p.json(&product_json(product)),
        Format::Id => p.line(&product.id),
        Format::Table => p.details(&[
            ("id", product.id.clone()),
            ("name", product.name.clone()),
            ("description", product.description.clone()),
            ("price", money_text(product.unit_price.as_ref())),
            ("stock", product.stock.to_string()),
            ("category", product.category.clone()),
            ("image", product.image_url.clone()),
            ("created", time_text(product.create_time.as_ref())),
            ("updated", time_text(product.update_time.as_ref())),
        ]),
    }
}

const PRODUCT_COLUMNS: [(&str, usize, Align); 5] = [
    ("ID", 36, Align::Left),
    ("NAME", 24, Align::Left),
    ("PRICE", 13, Align::Right),
    ("STOCK", 6, Align::Right),
    ("CATEGORY", 0, Align::Left),
];

fn product_row(p: &Product) -> Vec<String> {
    vec![
        p.id.clone(),
        p.name.clone(),
        money_text(p.unit_price.as_ref()),
        p.stock.to_string(),
        p.category.clone(),
    ]
}

/// Products in an aligned table.
pub fn product_table<'a>(products: impl IntoIterator<Item = &'a Product>) -> Table {
    let columns: Vec<(&'static str, Align)> =
        PRODUCT_COLUMNS.iter().map(|(h, _, a)| (*h, *a)).collect();
    let mut table = Table::new(&columns);
    for p in products {
        table.push(product_row(p));
    }
    table
}

/// Products as a stream delivers them, one row each.
#[derive(Debug)]
pub struct ProductRows(Rows);

impl ProductRows {
    pub fn new() -> Self {
        ProductRows(Rows::new(&PRODUCT_COLUMNS))
    }

    pub fn print(&mut self, p: &Printer, product: &Product) -> anyhow::Result<()> {
        match p.format {
            Format::Json => p.json(&product_json(product)),
            Format::Id => p.line(&product.id),
            Format::Table => self.0.print(&product_row(product)),
        }
    }

    pub fn count(&self) -> usize {
        self.0.count()
    }
}

#[derive(Serialize)]
pub struct ReservedLineJson {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Option<MoneyJson>,
}

#[derive(Serialize)]
pub struct ReservationJson {
    pub order_id: String,
    pub state: &'static str,
    pub lines: Vec<ReservedLineJson>,
    pub create_time: Option<String>,
}

pub fn print_reservation(p: &Printer, r: &Reservation) -> anyhow::Result<()> {
    match p.format {
        Format::Json => p.json(&ReservationJson {
            order_id: r.order_id.clone(),
            state: state_name(r.state),
            lines: r
                .lines
                .iter()
                .map(|l| ReservedLineJson {
                    product_id: l.product_id.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: money_json(l.unit_price.as_ref()),
                })
                .collect(),
            create_time: time_json(r.create_time.as_ref()),
        }),
        Format::Id => p.line(&r.order_id),
        Format::Table => {
            p.details(&[
                ("order", r.order_id.clone()),
                ("state", state_name(r.state).to_owned()),
                ("created", time_text(r.create_time.as_ref())),
            ])?;
            if r.lines.is_empty() {
                return Ok(());
            }
            let mut table = Table::new(&[
                ("PRODUCT", Align::Left),
                ("NAME", Align::Left),
                ("QTY", Align::Right),
                ("UNIT PRICE", Align::Right),
            ]);
            for l in &r.lines {
                table.push(vec![
                    l.product_id.clone(),
                    l.name.clone(),
                    l.quantity.to_string(),
                    money_text(l.unit_price.as_ref()),
                ]);
            }
            p.line("")?;
            p.table(&table)
        }
    }
}

#[derive(Serialize)]
pub struct OrderLineJson {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Option<MoneyJson>,
    pub line_total: Option<MoneyJson>,
}

#[derive(Serialize)]
pub struct OrderJson {
    pub id: String,
    pub status: &'static str,
    pub customer: String,
    pub destination: String,
    pub description: String,
    pub items: Vec<String>,
    pub lines: Vec<OrderLineJson>,
    pub total: Option<MoneyJson>,
    pub idempotency_key: String,
    pub status_reason: String,
    pub shipment_id: String,
    pub create_time: Option<String>,
    pub update_time: Option<String>,
}

pub fn order_json(o: &Order) -> OrderJson {
    OrderJson {
        id: o.id.clone(),
        status: status_name(o.status),
        customer: o.customer.clone(),
        destination: o.destination.clone(),
        description: o.description.clone(),
        items: o.items.clone(),
        lines: o
            .lines
            .iter()
            .map(|l| OrderLineJson {
                product_id: l.product_id.clone(),
                name: l.name.clone(),
                quantity: l.quantity,
                unit_price: money_json(l.unit_price.as_ref()),
                line_total: money_json(l.line_total.as_ref()),
            })
            .collect(),
        total: money_json(o.total.as_ref()),
        idempotency_key: o.idempotency_key.clone(),
        status_reason: o.status_reason.clone(),
        shipment_id: o.shipment_id.clone(),
        create_time: time_json(o.create_time.as_ref()),
        update_time: time_json(o.update_time.as_ref()),
    }
}

/// One order in full: its fields, then its lines.
pub fn print_order(p: &Printer, o: &Order) -> anyhow::Result<()> {
    match p.format {
        Format::Json => p.json(&order_json(o)),
        Format::Id => p.line(&o.id),
        Format::Table => {
            p.details(&[
                ("id", o.id.clone()),
                ("status", status_name(o.status).to_owned()),
                ("reason", o.status_reason.clone()),
                ("shipment", o.shipment_id.clone()),
                ("customer", o.customer.clone()),
                ("destination", o.destination.clone()),
                ("description", o.description.clone()),
                ("total", money_text(o.total.as_ref())),
                ("idempotency key", o.idempotency_key.clone()),
                ("created", time_text(o.create_time.as_ref())),
                ("updated", time_text(o.update_time.as_ref())),
            ])?;
            if !o.lines.is_empty() {
                let mut table = Table::new(&[
                    ("PRODUCT", Align::Left),
                    ("NAME", Align::Left),
                    ("QTY", Align::Right),
                    ("UNIT PRICE", Align::Right),
                    ("TOTAL", Align::Right),
                ]);
                for l in &o.lines {
                    table.push(vec![
                        l.product_id.clone(),
                        l.name.clone(),
                        l.quantity.to_string(),
                        money_text(l.unit_price.as_ref()),
                        money_text(l.line_total.as_ref()),
                    ]);
                }
                p.line("")?;
                p.table(&table)?;
            } else if !o.items.is_empty() {
                p.details(&[("items", o.items.join(", "))])?;
            }
            Ok(())
        }
    }
}

/// `2 x Green Tea, 1 x Mug`.
fn items_text(o: &Order) -> String {
    if o.lines.is_empty() {
        return o.items.join(", ");
    }
    o.lines
        .iter()
        .map(|l| {
            let name = if l.name.is_empty() {
                &l.product_id
            } else {
                &l.name
            };
            format!("{} x {name}", l.quantity)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Orders as a stream delivers them (searchOrders), one row each.
#[derive(Debug)]
pub struct OrderRows(Rows);

impl OrderRows {
    pub fn new() -> Self {
        OrderRows(Rows::new(&[
            ("ID", 36, Align::Left),
            ("STATUS", 9, Align::Left),
            ("TOTAL", 13, Align::Right),
            ("DESTINATION", 14, Align::Left),
            ("CREATED", 20, Align::Left),
            ("ITEMS", 0, Align::Left),
        ]))
    }

    pub fn print(&mut self, p: &Printer, o: &Order) -> anyhow::Result<()> {
        match p.format {
            Format::Json => p.json(&order_json(o)),
            Format::Id => p.line(&o.id),
            Format::Table => self.0.print(&[
                o.id.clone(),
                status_name(o.status).to_owned(),
                money_text(o.total.as_ref()),
                o.destination.clone(),
                time_text(o.create_time.as_ref()),
                items_text(o),
            ]),
        }
    }

    pub fn count(&self) -> usize {
        self.0.count()
    }
}

/// An order's status changes as watchOrder delivers them, one row each.
#[derive(Debug)]
pub struct StatusRows(Rows);

impl StatusRows {
    pub fn new() -> Self {
        StatusRows(Rows::new(&[
            ("UPDATED", 20, Align::Left),
            ("ORDER", 36, Align::Left),
            ("STATUS", 9, Align::Left),
            ("DETAIL", 0, Align::Left),
        ]))
    }

    pub fn print(&mut self, p: &Printer, o: &Order) -> anyhow::Result<()> {
        match p.format {
            Format::Json => p.json(&order_json(o)),
            Format::Id => p.line(&o.id),
            Format::Table => {
                let detail = if !o.shipment_id.is_empty() {
                    format!("shipment {}", o.shipment_id)
                } else {
                    o.status_reason.clone()
                };
                self.0.print(&[
                    time_text(o.update_time.as_ref().or(o.create_time.as_ref())),
                    o.id.clone(),
                    status_name(o.status).to_owned(),
                    detail,
                ])
            }
        }
    }
}

#[derive(Serialize)]
pub struct ShipmentJson {
    pub id: String,
    pub status: String,
    pub destination: String,
    pub reason: String,
    pub orders_list: Vec<OrderJson>,
    pub create_time: Option<String>,
}

/// Combined shipments as processOrders delivers them, one row each.
#[derive(Debug)]
pub struct ShipmentRows(Rows);

impl ShipmentRows {
    pub fn new() -> Self {
        ShipmentRows(Rows::new(&[
            ("SHIPMENT", 36, Align::Left),
            ("STATUS", 8, Align::Left),
            ("DESTINATION", 14, Align::Left),
            ("ORDERS", 0, Align::Left),
        ]))
    }

    pub fn print(&mut self, p: &Printer, s: &CombinedShipment) -> anyhow::Result<()> {
        let ids: Vec<&str> = s.orders_list.iter().map(|o| o.id.as_str()).collect();
        match p.format {
            Format::Json => p.json(&ShipmentJson {
                id: s.id.clone(),
                status: s.status.clone(),
                destination: s.destination.clone(),
                reason: s.reason.clone(),
                orders_list: s.orders_list.iter().map(order_json).collect(),
                create_time: time_json(s.create_time.as_ref()),
            }),
            Format::Id if s.id.is_empty() => Ok(()),
            Format::Id => p.line(&s.id),
            Format::Table => {
                let mut orders = ids.join(",");
                if !s.reason.is_empty() {
                    orders = format!("{orders} ({})", s.reason);
                }
                let id = if s.id.is_empty() { "-" } else { &s.id };
                self.0.print(&[
                    id.to_owned(),
                    s.status.clone(),
                    s.destination.clone(),
                    orders,
                ])
            }
        }
    }

    pub fn count(&self) -> usize {
        self.0.count()
    }
}

#[derive(Serialize)]
pub struct UpdateFailureJson {
    pub id: String,
    pub code: String,
    pub message: String,
}

#[derive(Serialize)]
pub struct UpdateJson {
    pub summary: String,
    pub updated_ids: Vec<String>,
    pub failed: Vec<UpdateFailureJson>,
}

/// updateOrders' reply: the book's summary and, when the service sent
/// them, the per-order results.
pub fn print_update(
    p: &Printer,
    summary: &str,
    result: Option<&UpdateOrdersResult>,
) -> anyhow::Result<()> {
    let empty = UpdateOrdersResult::default();
    let r = result.unwrap_or(&empty);
    match p.format {
        Format::Json => p.json(&UpdateJson {
            summary: summary.to_owned(),
            updated_ids: r.updated_ids.clone(),
            failed: r
                .failed
                .iter()
                .map(|f| UpdateFailureJson {
                    id: f.id.clone(),
                    code: f.code.clone(),
                    message: f.message.clone(),
                })
                .collect(),
        }),
        Format::Id => r.updated_ids.iter().try_for_each(|id| p.line(id)),
        Format::Table if result.is_none() => p.line(summary),
        Format::Table => {
            let mut table = Table::new(&[
                ("ORDER", Align::Left),
                ("RESULT", Align::Left),
                ("DETAIL", Align::Left),
            ]);
            for id in &r.updated_ids {
                table.push(vec![id.clone(), "UPDATED".into(), String::new()]);
            }
            for f in &r.failed {
                table.push(vec![f.id.clone(), f.code.clone(), f.message.clone()]);
            }
            p.table(&table)
        }
    }
}

#[derive(Serialize)]
pub struct UserJson {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
}

#[derive(Serialize)]
pub struct SessionJson {
    pub token: String,
    pub expire_time: Option<String>,
    pub user: Option<UserJson>,
}

pub fn print_session(p: &Printer, s: &Session) -> anyhow::Result<()> {
    match p.format {
        Format::Json => p.json(&SessionJson {
            token: s.token.clone(),
            expire_time: time_json(s.expire_time.as_ref()),
            user: s.user.as_ref().map(|u| UserJson {
                id: u.id.clone(),
                email: u.email.clone(),
                name: u.name.clone(),
                role: u.role.clone(),
            }),
        }),
        Format::Id => p.line(&s.token),
        Format::Table => {
            let user = s.user.clone().unwrap_or_default();
            p.details(&[
                ("user", user.id),
                ("email", user.email),
                ("name", user.name),
                ("role", user.role),
                ("expires", time_text(s.expire_time.as_ref())),
                ("token", s.token.clone()),
            ])
        }
    }
}

#[derive(Serialize)]
pub struct CartLineJson {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Option<MoneyJson>,
    pub line_total: Option<MoneyJson>,
    pub stock: i64,
    pub image_url: String,
}

#[derive(Serialize)]
pub struct CartJson {
    pub lines: Vec<CartLineJson>,
    pub total: Option<MoneyJson>,
    pub unavailable_product_ids: Vec<String>,
}

pub fn print_cart(p: &Printer, cart: &Cart) -> anyhow::Result<()> {
    match p.format {
        Format::Json => p.json(&CartJson {
            lines: cart
                .lines
                .iter()
                .map(|l| CartLineJson {
                    product_id: l.product_id.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: money_json(l.unit_price.as_ref()),
                    line_total: money_json(l.line_total.as_ref()),
                    stock: l.stock,
                    image_url: l.image_url.clone(),
                })
                .collect(),
            total: money_json(cart.total.as_ref()),
            unavailable_product_ids: cart.unavailable_product_ids.clone(),
        }),
        Format::Id => cart.lines.iter().try_for_each(|l| p.line(&l.product_id)),
        Format::Table => {
            if cart.lines.is_empty() {
                p.line("The cart is empty.")?;
            } else {
                let mut table = Table::new(&[
                    ("PRODUCT", Align::Left),
                    ("NAME", Align::Left),
                    ("QTY", Align::Right),
                    ("UNIT PRICE", Align::Right),
                    ("TOTAL", Align::Right),
                    ("STOCK", Align::Right),
                ]);
                for l in &cart.lines {
                    table.push(vec![
                        l.product_id.clone(),
                        l.name.clone(),
                        l.quantity.to_string(),
                        money_text(l.unit_price.as_ref()),
                        money_text(l.line_total.as_ref()),
                        l.stock.to_string(),
                    ]);
                }
                p.table(&table)?;
                p.line("")?;
                p.details(&[("total", money_text(cart.total.as_ref()))])?;
            }
            if !cart.unavailable_product_ids.is_empty() {
                p.details(&[("unavailable", cart.unavailable_product_ids.join(", "))])?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(code: &str, units: i64, nanos: i32) -> Money {
        Money {
            currency_code: code.into(),
            units,
            nanos,
        }
    }

    #[test]
    fn amounts_keep_the_currency_decimals_and_never_round() {
        assert_eq!(amount(&money("EUR", 19, 990_000_000)), "19.99");
        assert_eq!(amount(&money("USD", 5, 0)), "5.00");
        assert_eq!(amount(&money("JPY", 500, 0)), "500");
        assert_eq!(amount(&money("KWD", 1, 5_000_000)), "1.005");
        assert_eq!(amount(&money("USD", -1, -500_000_000)), "-1.50");
        assert_eq!(amount(&money("USD", 0, -50_000_000)), "-0.05");
        assert_eq!(amount(&money("USD", 1, 1)), "1.000000001");
        assert_eq!(
            money_text(Some(&money("EUR", 19, 990_000_000))),
            "19.99 EUR"
        );
        assert_eq!(money_text(None), "");
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        let t = Timestamp {
            seconds: 1_700_000_000,
            nanos: 250_000_000,
        };
        assert_eq!(time_text(Some(&t)), "2023-11-14T22:13:20Z");
        assert_eq!(
            time_json(Some(&t)).as_deref(),
            Some("2023-11-14T22:13:20.250Z")
        );
        assert_eq!(time_text(None), "");
    }

    #[test]
    fn order_json_uses_short_status_names_and_exact_money() {
        let order = Order {
            id: "o1".into(),
            status: OrderStatus::Shipped as i32,
            total: Some(money("USD", 25, 0)),
            ..Default::default()
        };
        let json = serde_json::to_value(order_json(&order)).expect("json");
        assert_eq!(json["status"], "SHIPPED");
        assert_eq!(json["total"]["amount"], "25.00");
        assert_eq!(json["total"]["currency_code"], "USD");
        assert_eq!(json["create_time"], serde_json::Value::Null);
    }
}
