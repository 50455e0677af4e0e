//! Carts priced with the catalog's current prices: what the cart page, the
//! gRPC `getCart` and checkout show. One catalog call per cart (a batch),
//! never one per line; money in integer minor units.

use shop_proto::{
    ecommerce::{self, Money},
    money::format_minor,
};
use shop_runtime::{deadline::Deadline, pg::Db};
use uuid::Uuid;

use crate::{
    db::{self, CartOwner},
    error::Error,
    upstream::Upstreams,
};

/// Shown for products without a picture.
pub const PLACEHOLDER_IMAGE: &str = "/static/products/placeholder.svg";

/// One cart line with its current price.
#[derive(Debug, Clone)]
pub struct Line {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i32,
    pub currency: String,
    pub unit_minor: i64,
    pub line_minor: i64,
    /// `None`: the catalog does not track this product's stock.
    pub stock: Option<i64>,
    pub image_url: String,
}

impl Line {
    pub fn unit_price(&self) -> String {
        format_minor(&self.currency, self.unit_minor)
    }

    pub fn line_total(&self) -> String {
        format_minor(&self.currency, self.line_minor)
    }

    /// Whether the catalog has fewer units than the cart asks for.
    pub fn short(&self) -> bool {
        self.stock.is_some_and(|n| n < i64::from(self.quantity))
    }

    /// Units left, for a line that is [`short`](Self::short).
    pub fn left(&self) -> i64 {
        self.stock.unwrap_or_default()
    }
}

/// A priced cart.
#[derive(Debug, Clone, Default)]
pub struct Priced {
    pub lines: Vec<Line>,
    /// Currency and total in minor units; `None` for an empty cart or one
    /// mixing currencies.
    pub total: Option<(String, i64)>,
    /// Products in the cart that the catalog no longer has.
    pub unavailable: Vec<Uuid>,
}

impl Priced {
    pub fn total_text(&self) -> String {
        self.total
            .as_ref()
            .map(|(currency, minor)| format_minor(currency, *minor))
            .unwrap_or_default()
    }

    /// Units in the cart.
    pub fn count(&self) -> i64 {
        self.lines.iter().map(|l| i64::from(l.quantity)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// `owner`'s cart with the catalog's current prices.
pub async fn priced(
    pool: &Db,
    upstreams: &Upstreams,
    deadline: Deadline,
    owner: &CartOwner,
) -> Result<Priced, Error> {
    let items = db::cart_items(pool, owner).await?;
    if items.is_empty() {
        return Ok(Priced::default());
    }
    let products = upstreams
        .products(
            deadline,
            items.iter().map(|(id, _)| id.to_string()).collect(),
        )
        .await?;
    let mut cart = Priced::default();
    let mut currencies = std::collections::BTreeSet::new();
    for (product_id, quantity) in items {
        let Some(product) = products.iter().find(|p| p.id == product_id.to_string()) else {
            cart.unavailable.push(product_id);
            continue;
        };
        let price = product.unit_price.clone().unwrap_or_default();
        let unit_minor = price
            .to_minor()
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("a catalog price")))?;
        currencies.insert(price.currency_code.clone());
        cart.lines.push(Line {
            product_id,
            name: product.name.clone(),
            quantity,
            unit_minor,
            line_minor: unit_minor.saturating_mul(i64::from(quantity)),
            currency: price.currency_code,
            stock: product.stock,
            image_url: if product.image_url.is_empty() {
                PLACEHOLDER_IMAGE.to_owned()
            } else {
                product.image_url.clone()
            },
        });
    }
    if currencies.len() == 1
        && let Some(currency) = currencies.into_iter().next()
    {
        cart.total = Some((currency, cart.lines.iter().map(|l| l.line_minor).sum()));
    }
    Ok(cart)
}

impl From<Priced> for ecommerce::Cart {
    fn from(cart: Priced) -> Self {
        ecommerce::Cart {
            total: cart
                .total
                .as_ref()
                .map(|(currency, minor)| Money::from_minor(currency, *minor)),
            lines: cart
                .lines
                .into_iter()
                .map(|l| ecommerce::CartLine {
                    product_id: l.product_id.to_string(),
                    name: l.name,
                    quantity: i64::from(l.quantity),
                    unit_price: Some(Money::from_minor(&l.currency, l.unit_minor)),
                    line_total: Some(Money::from_minor(&l.currency, l.line_minor)),
                    stock: l.stock,
                    image_url: l.image_url,
                })
                .collect(),
            unavailable_product_ids: cart.unavailable.iter().map(Uuid::to_string).collect(),
        }
    }
}
