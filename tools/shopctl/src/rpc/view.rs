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
use shop_proto::ecommerce::{
    Cart, CombinedShipment, Money, Order, OrderStatus, Product, Reservation, ReservationState,
    Session, UpdateOrdersResult,
};

use super::output::{Align, Format, Printer, Rows, Table};

/// `19.99 EUR`, or empty when there is no amount.
pub fn money_text(money: Option<&Money>) -> String {
    money
        .map(|m| format!("{} {}", m.amount(), m.currency_code))
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
        amount: m.amount(),
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
    /// `null`: the product does not track stock.
    pub stock: Option<i64>,
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
            ("stock", stock_text(product.stock)),
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
        stock_text(p.stock),
        p.category.clone(),
    ]
}

/// A product's stock, or "-" when it is not tracked.
fn stock_text(stock: Option<i64>) -> String {
    stock.map_or_else(|| "-".into(), |n| n.to_string())
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

/// Products as a stream or pages deliver them, one row each.
pub fn product_rows() -> Listing<Product, ProductJson> {
    Listing::new(
        &PRODUCT_COLUMNS,
        product_row,
        |p| p.id.as_str(),
        product_json,
    )
}

/// What a line of a reservation, an order or a cart shows: the product,
/// how many, at what price; orders and carts add a line total, carts the
/// product's stock and picture.
#[derive(Serialize)]
pub struct LineJson {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Option<MoneyJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_total: Option<MoneyJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

impl LineJson {
    fn new(product_id: &str, name: &str, quantity: i64, unit_price: Option<&Money>) -> Self {
        LineJson {
            product_id: product_id.to_owned(),
            name: name.to_owned(),
            quantity,
            unit_price: money_json(unit_price),
            line_total: None,
            stock: None,
            image_url: None,
        }
    }
}

/// `lines` as a table: product, name, quantity, unit price, and the line
/// total and stock where the lines have them.
fn lines_table(p: &Printer, lines: &[LineJson]) -> anyhow::Result<()> {
    let totals = lines.iter().any(|l| l.line_total.is_some());
    let stock = lines.iter().any(|l| l.stock.is_some());
    let mut columns = vec![
        ("PRODUCT", Align::Left),
        ("NAME", Align::Left),
        ("QTY", Align::Right),
        ("UNIT PRICE", Align::Right),
    ];
    if totals {
        columns.push(("TOTAL", Align::Right));
    }
    if stock {
        columns.push(("STOCK", Align::Right));
    }
    let mut table = Table::new(&columns);
    let money = |m: &Option<MoneyJson>| {
        m.as_ref()
            .map(|m| format!("{} {}", m.amount, m.currency_code))
            .unwrap_or_default()
    };
    for l in lines {
        let mut row = vec![
            l.product_id.clone(),
            l.name.clone(),
            l.quantity.to_string(),
            money(&l.unit_price),
        ];
        if totals {
            row.push(money(&l.line_total));
        }
        if stock {
            row.push(l.stock.map(|s| s.to_string()).unwrap_or_default());
        }
        table.push(row);
    }
    p.table(&table)
}

#[derive(Serialize)]
pub struct ReservationJson {
    pub order_id: String,
    pub state: &'static str,
    pub lines: Vec<LineJson>,
    pub create_time: Option<String>,
}

pub fn print_reservation(p: &Printer, r: &Reservation) -> anyhow::Result<()> {
    let json = ReservationJson {
        order_id: r.order_id.clone(),
        state: state_name(r.state),
        lines: r
            .lines
            .iter()
            .map(|l| LineJson::new(&l.product_id, &l.name, l.quantity, l.unit_price.as_ref()))
            .collect(),
        create_time: time_json(r.create_time.as_ref()),
    };
    match p.format {
        Format::Json => p.json(&json),
        Format::Id => p.line(&r.order_id),
        Format::Table => {
            p.details(&[
                ("order", r.order_id.clone()),
                ("state", state_name(r.state).to_owned()),
                ("created", time_text(r.create_time.as_ref())),
            ])?;
            if json.lines.is_empty() {
                return Ok(());
            }
            p.line("")?;
            lines_table(p, &json.lines)
        }
    }
}

#[derive(Serialize)]
pub struct OrderJson {
    pub id: String,
    pub status: &'static str,
    pub customer: String,
    pub destination: String,
    pub description: String,
    pub items: Vec<String>,
    pub lines: Vec<LineJson>,
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
            .map(|l| LineJson {
                line_total: money_json(l.line_total.as_ref()),
                ..LineJson::new(&l.product_id, &l.name, l.quantity, l.unit_price.as_ref())
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
    let json = order_json(o);
    match p.format {
        Format::Json => p.json(&json),
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
            if !json.lines.is_empty() {
                p.line("")?;
                lines_table(p, &json.lines)?;
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
pub fn order_rows() -> Listing<Order, OrderJson> {
    let row = |o: &Order| {
        vec![
            o.id.clone(),
            status_name(o.status).to_owned(),
            money_text(o.total.as_ref()),
            o.destination.clone(),
            time_text(o.create_time.as_ref()),
            items_text(o),
        ]
    };
    const COLUMNS: [(&str, usize, Align); 6] = [
        ("ID", 36, Align::Left),
        ("STATUS", 9, Align::Left),
        ("TOTAL", 13, Align::Right),
        ("DESTINATION", 14, Align::Left),
        ("CREATED", 20, Align::Left),
        ("ITEMS", 0, Align::Left),
    ];
    Listing::new(&COLUMNS, row, |o| o.id.as_str(), order_json)
}

/// An order's status changes as watchOrder delivers them, one row each.
pub fn status_rows() -> Listing<Order, OrderJson> {
    let row = |o: &Order| {
        let detail = if !o.shipment_id.is_empty() {
            format!("shipment {}", o.shipment_id)
        } else {
            o.status_reason.clone()
        };
        vec![
            time_text(o.update_time.as_ref().or(o.create_time.as_ref())),
            o.id.clone(),
            status_name(o.status).to_owned(),
            detail,
        ]
    };
    const COLUMNS: [(&str, usize, Align); 4] = [
        ("UPDATED", 20, Align::Left),
        ("ORDER", 36, Align::Left),
        ("STATUS", 9, Align::Left),
        ("DETAIL", 0, Align::Left),
    ];
    Listing::new(&COLUMNS, row, |o| o.id.as_str(), order_json)
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

fn shipment_json(s: &CombinedShipment) -> ShipmentJson {
    ShipmentJson {
        id: s.id.clone(),
        status: s.status.clone(),
        destination: s.destination.clone(),
        reason: s.reason.clone(),
        orders_list: s.orders_list.iter().map(order_json).collect(),
        create_time: time_json(s.create_time.as_ref()),
    }
}

/// Combined shipments (and rejections, which have no id) as processOrders
/// delivers them, one row each.
pub fn shipment_rows() -> Listing<CombinedShipment, ShipmentJson> {
    let row = |s: &CombinedShipment| {
        let ids: Vec<&str> = s.orders_list.iter().map(|o| o.id.as_str()).collect();
        let mut orders = ids.join(",");
        if !s.reason.is_empty() {
            orders = format!("{orders} ({})", s.reason);
        }
        let id = if s.id.is_empty() { "-" } else { &s.id };
        vec![
            id.to_owned(),
            s.status.clone(),
            s.destination.clone(),
            orders,
        ]
    };
    const COLUMNS: [(&str, usize, Align); 4] = [
        ("SHIPMENT", 36, Align::Left),
        ("STATUS", 8, Align::Left),
        ("DESTINATION", 14, Align::Left),
        ("ORDERS", 0, Align::Left),
    ];
    Listing::new(&COLUMNS, row, |s| s.id.as_str(), shipment_json)
}

/// Messages as a stream delivers them, one at a time: a JSON object
/// (`J`), an id (nothing for a message without one), or a row of a
/// fixed-width table.
pub struct Listing<T, J> {
    rows: Rows,
    row: fn(&T) -> Vec<String>,
    id: fn(&T) -> &str,
    json: fn(&T) -> J,
}

impl<T, J: Serialize> Listing<T, J> {
    fn new(
        columns: &[(&'static str, usize, Align)],
        row: fn(&T) -> Vec<String>,
        id: fn(&T) -> &str,
        json: fn(&T) -> J,
    ) -> Self {
        Listing {
            rows: Rows::new(columns),
            row,
            id,
            json,
        }
    }

    /// Prints `message` as the output format says.
    pub fn print(&mut self, p: &Printer, message: &T) -> anyhow::Result<()> {
        match p.format {
            Format::Json => p.json(&(self.json)(message)),
            Format::Id => match (self.id)(message) {
                "" => Ok(()),
                id => p.line(id),
            },
            Format::Table => self.rows.print(&(self.row)(message)),
        }
    }

    /// How many messages were printed.
    pub fn count(&self) -> usize {
        self.rows.count()
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
pub struct CartJson {
    pub lines: Vec<LineJson>,
    pub total: Option<MoneyJson>,
    pub unavailable_product_ids: Vec<String>,
}

pub fn print_cart(p: &Printer, cart: &Cart) -> anyhow::Result<()> {
    let json = CartJson {
        lines: cart
            .lines
            .iter()
            .map(|l| LineJson {
                line_total: money_json(l.line_total.as_ref()),
                stock: l.stock,
                image_url: Some(l.image_url.clone()),
                ..LineJson::new(&l.product_id, &l.name, l.quantity, l.unit_price.as_ref())
            })
            .collect(),
        total: money_json(cart.total.as_ref()),
        unavailable_product_ids: cart.unavailable_product_ids.clone(),
    };
    match p.format {
        Format::Json => p.json(&json),
        Format::Id => cart.lines.iter().try_for_each(|l| p.line(&l.product_id)),
        Format::Table => {
            if json.lines.is_empty() {
                p.line("The cart is empty.")?;
            } else {
                lines_table(p, &json.lines)?;
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

    #[test]
    fn money_is_its_exact_amount_and_currency() {
        assert_eq!(
            money_text(Some(&Money::from_minor("EUR", 1999))),
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
            total: Some(Money::from_minor("USD", 2500)),
            ..Default::default()
        };
        let json = serde_json::to_value(order_json(&order)).expect("json");
        assert_eq!(json["status"], "SHIPPED");
        assert_eq!(json["total"]["amount"], "25.00");
        assert_eq!(json["total"]["currency_code"], "USD");
        assert_eq!(json["create_time"], serde_json::Value::Null);
    }
}
