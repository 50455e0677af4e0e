//! Checkout, shared by the web shop and the gRPC API: the cart becomes an
//! order placed with the order service on the person's behalf (their own
//! token), then the cart is emptied. The order service prices every line
//! from the catalog and reserves the stock; this only passes what was
//! chosen, and an idempotency key so a double submit places one order.

use shop_proto::ecommerce::{Order, OrderLine};
use shop_runtime::pg::Db;
use shop_runtime::{deadline::Deadline, error::FieldViolations};

use crate::{
    accounts::User,
    db::{self, CartOwner},
    error::Error,
    upstream::Upstreams,
};

pub const MAX_DESTINATION: usize = 200;
pub const MAX_KEY: usize = 100;

/// Places `user`'s cart as an order to `destination`; returns the order id.
pub async fn checkout(
    pool: &Db,
    upstreams: &Upstreams,
    deadline: Deadline,
    user: &User,
    destination: &str,
    idempotency_key: &str,
) -> Result<String, Error> {
    let owner = CartOwner::User(user.id);
    let destination = destination.trim();
    let mut v = FieldViolations::default();
    if destination.is_empty() {
        v.add("destination", "tell us where to deliver");
    } else if destination.chars().count() > MAX_DESTINATION
        || destination
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        v.add(
            "destination",
            format!("must be at most {MAX_DESTINATION} characters"),
        );
    }
    if idempotency_key.len() > MAX_KEY {
        v.add(
            "idempotency_key",
            format!("must be at most {MAX_KEY} bytes"),
        );
    }
    let items = db::cart_items(pool, &owner).await?;
    if items.is_empty() {
        v.add("cart", "the cart is empty");
    }
    v.finish()?;
    let order = Order {
        lines: items
            .iter()
            .map(|(product_id, quantity)| OrderLine {
                product_id: product_id.to_string(),
                quantity: i64::from(*quantity),
                ..Default::default()
            })
            .collect(),
        destination: destination.to_owned(),
        idempotency_key: idempotency_key.to_owned(),
        ..Default::default()
    };
    let id = upstreams.add_order(deadline, user, order).await?;
    db::clear_cart(pool, &owner).await?;
    tracing::info!(order.id = %id, "checked out");
    Ok(id)
}
