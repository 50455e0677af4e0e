//! The templates' data: one struct per page (askama checks every field at
//! compile time and escapes every value), and view models that turn wire
//! messages into display text.

use askama::Template;
use shop_proto::{
    ecommerce::{CombinedShipment, Order, OrderStatus, Product},
    money::format_minor,
};

use super::{AppState, Session};
use crate::cart::Priced;

/// What the layout around every page shows.
pub struct Layout {
    pub query: String,
    pub cart_count: i64,
    pub user: Option<UserView>,
    pub csrf: String,
    pub notice: Option<&'static str>,
}

pub struct UserView {
    pub name: String,
    pub email: String,
    pub is_admin: bool,
}

impl Layout {
    /// The layout for `session`, with `query` in the search box.
    pub async fn new(session: &Session, state: &AppState, query: &str) -> Layout {
        let cart_count = crate::db::cart_items(&state.pool, &session.cart_owner())
            .await
            .map(|items| items.iter().map(|(_, q)| i64::from(*q)).sum())
            .unwrap_or(0);
        Layout {
            query: query.to_owned(),
            cart_count,
            user: session.user.as_ref().map(|u| UserView {
                name: u.display_name().to_owned(),
                email: u.email.clone(),
                is_admin: u.role == shop_runtime::auth::Role::Admin,
            }),
            csrf: session.csrf.clone(),
            notice: None,
        }
    }

    /// Shows the message for a `?notice=` code (only known codes: no text
    /// from the address bar reaches the page).
    pub fn with_notice(mut self, code: Option<&str>) -> Layout {
        self.notice = code.and_then(|c| match c {
            "added" => Some("Added to your cart."),
            "updated" => Some("Cart updated."),
            "welcome" => Some("Welcome back!"),
            "registered" => Some("Your account is ready. Welcome!"),
            "logged-out" => Some("You are logged out."),
            "product-added" => Some("Product added to the catalog."),
            "stock-adjusted" => Some("Stock adjusted."),
            "cancelled" => Some("Order cancelled; its items are back in stock."),
            _ => None,
        });
        self
    }
}

pub struct ProductView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub price: String,
    /// `None`: the catalog does not track this product's stock.
    pub stock: Option<i64>,
    pub image_url: String,
    pub category: String,
}

impl ProductView {
    /// Whether it can be put in a cart: in stock, or not tracked.
    pub fn available(&self) -> bool {
        self.stock.is_none_or(|n| n > 0)
    }

    /// "12 in stock", or "In stock" for a product whose stock is not tracked.
    pub fn stock_label(&self) -> String {
        match self.stock {
            Some(n) => format!("{n} in stock"),
            None => "In stock".into(),
        }
    }

    /// The admin's view: the count, or that it is not tracked.
    pub fn stock_count(&self) -> String {
        match self.stock {
            Some(n) => n.to_string(),
            None => "not tracked".into(),
        }
    }
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        ProductView {
            price: money(p.unit_price.as_ref()),
            id: p.id,
            name: p.name,
            description: p.description,
            stock: p.stock,
            image_url: if p.image_url.is_empty() {
                crate::cart::PLACEHOLDER_IMAGE.into()
            } else {
                p.image_url
            },
            category: p.category,
        }
    }
}

pub struct OrderLineView {
    pub name: String,
    pub quantity: i64,
    pub unit_price: String,
    pub total: String,
}

pub struct OrderView {
    pub id: String,
    pub placed: String,
    pub customer: String,
    pub items: String,
    pub destination: String,
    pub total: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub lines: Vec<OrderLineView>,
    pub cancellable: bool,
    pub shippable: bool,
}

/// Display label and CSS class of an order status.
pub fn status_label(status: i32) -> (&'static str, &'static str) {
    match OrderStatus::try_from(status) {
        Ok(OrderStatus::Confirmed) => ("Confirmed", "confirmed"),
        Ok(OrderStatus::Shipped) => ("Shipped", "shipped"),
        Ok(OrderStatus::Cancelled) => ("Cancelled", "cancelled"),
        _ => ("Unknown", ""),
    }
}

fn money(m: Option<&shop_proto::ecommerce::Money>) -> String {
    m.and_then(|m| {
        m.to_minor()
            .ok()
            .map(|minor| format_minor(&m.currency_code, minor))
    })
    .unwrap_or_default()
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        let (status, status_class) = status_label(o.status);
        let placed = o
            .create_time
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        let confirmed = o.status == OrderStatus::Confirmed as i32;
        OrderView {
            items: o
                .lines
                .iter()
                .map(|l| format!("{} × {}", l.quantity, l.name))
                .collect::<Vec<_>>()
                .join(", "),
            lines: o
                .lines
                .iter()
                .map(|l| OrderLineView {
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: money(l.unit_price.as_ref()),
                    total: money(l.line_total.as_ref()),
                })
                .collect(),
            total: money(o.total.as_ref()),
            id: o.id,
            placed,
            customer: o.customer,
            destination: o.destination,
            status,
            status_class,
            cancellable: confirmed,
            shippable: confirmed,
        }
    }
}

pub struct ShipmentView {
    pub status: String,
    pub status_class: &'static str,
    pub summary: String,
}

impl From<CombinedShipment> for ShipmentView {
    fn from(s: CombinedShipment) -> Self {
        let shipped = s.status == "SHIPPED";
        let summary = if shipped {
            format!("{} order(s) to {}", s.orders_list.len(), s.destination)
        } else {
            format!(
                "order {}: {}",
                s.orders_list
                    .first()
                    .map(|o| o.id.as_str())
                    .unwrap_or_default(),
                s.reason
            )
        };
        ShipmentView {
            status_class: if shipped { "shipped" } else { "rejected" },
            status: s.status,
            summary,
        }
    }
}

/// Messages per form field, from field violations.
#[derive(Default)]
pub struct FormErrors {
    pub name: Vec<String>,
    pub email: Vec<String>,
    pub password: Vec<String>,
    pub description: Vec<String>,
    pub price: Vec<String>,
    pub stock: Vec<String>,
    pub category: Vec<String>,
    pub image_url: Vec<String>,
    /// Anything that maps to no field above.
    pub other: Vec<String>,
}

impl FormErrors {
    /// Sorts the violations of a status (ours or an upstream's) by field.
    pub fn from_status(status: &tonic::Status) -> FormErrors {
        let mut errors = FormErrors::default();
        let violations = tonic_types::StatusExt::get_details_bad_request(status)
            .map(|b| b.field_violations)
            .unwrap_or_default();
        if violations.is_empty() {
            errors.other.push(status.message().to_owned());
        }
        for v in violations {
            let slot = match v.field.as_str() {
                "name" => &mut errors.name,
                "email" => &mut errors.email,
                "password" => &mut errors.password,
                "description" => &mut errors.description,
                f if f == "price" || f.starts_with("unit_price") => &mut errors.price,
                "stock" => &mut errors.stock,
                "category" => &mut errors.category,
                "image_url" => &mut errors.image_url,
                _ => &mut errors.other,
            };
            slot.push(v.description);
        }
        errors
    }
}

#[derive(Template)]
#[template(path = "catalog.html")]
pub struct CatalogPage {
    pub layout: Layout,
    pub category: String,
    pub categories: Vec<String>,
    pub products: Vec<ProductView>,
    pub back: String,
    pub first_page: bool,
    pub first_url: String,
    pub next_url: Option<String>,
}

#[derive(Template)]
#[template(path = "product.html")]
pub struct ProductPage {
    pub layout: Layout,
    pub product: ProductView,
}

#[derive(Template)]
#[template(path = "cart.html")]
pub struct CartPage {
    pub layout: Layout,
    pub cart: Priced,
}

#[derive(Template)]
#[template(path = "checkout.html")]
pub struct CheckoutPage {
    pub layout: Layout,
    pub cart: Priced,
    pub ordering_available: bool,
    pub idempotency_key: String,
    pub destination: String,
    pub destination_error: Option<String>,
    pub problem: Option<String>,
    pub short: Vec<String>,
}

#[derive(Template)]
#[template(path = "orders.html")]
pub struct OrdersPage {
    pub layout: Layout,
    pub orders: Vec<OrderView>,
    /// The link to the next, older page, if there is one.
    pub older: Option<String>,
    pub problem: Option<String>,
}

#[derive(Template)]
#[template(path = "order.html")]
pub struct OrderPage {
    pub layout: Layout,
    pub order: OrderView,
    pub placed: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub email: String,
    pub next: String,
    pub problem: Option<String>,
}

#[derive(Template)]
#[template(path = "register.html")]
pub struct RegisterPage {
    pub layout: Layout,
    pub name: String,
    pub email: String,
    pub next: String,
    pub problem: Option<String>,
    pub errors: FormErrors,
}

/// The add-product form's values, echoed back after an error.
#[derive(Default, serde::Deserialize)]
pub struct ProductForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub price: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub stock: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub image_url: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage {
    pub layout: Layout,
    pub products: Vec<ProductView>,
    pub next_url: Option<String>,
    pub form: ProductForm,
    pub errors: FormErrors,
    pub problem: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_orders.html")]
pub struct AdminOrdersPage {
    pub layout: Layout,
    pub query: String,
    pub orders: Vec<OrderView>,
    /// The link to the next, older page, if there is one.
    pub older: Option<String>,
    pub shipments: Vec<ShipmentView>,
    pub problem: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
    pub retry: String,
}
