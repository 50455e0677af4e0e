//! Products as the service sees them: validated input, database rows, and
//! their translation to and from the wire messages.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_proto::{
    ecommerce::{Money, Product},
    money::{minor_digits, minor_from_legacy_price},
};
use shop_runtime::error::FieldViolations;
use uuid::Uuid;

pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 5000;
pub const MAX_CATEGORY: usize = 100;
pub const MAX_IMAGE_URL: usize = 2048;
pub const MAX_QUERY: usize = 200;
/// Highest price accepted, in minor units (ten billion dollars' worth of cents).
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000_000;
pub const MAX_STOCK: i64 = 1_000_000_000;
pub const MAX_PAGE_SIZE: i32 = 100;
pub const DEFAULT_PAGE_SIZE: i32 = 20;
/// Most ids plus names one `getProducts` call may ask for.
pub const MAX_BATCH: usize = 1000;

/// A product row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProductRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub currency: String,
    pub price_minor: i64,
    /// `None`: the product does not track stock.
    pub stock: Option<i64>,
    pub image_url: String,
    pub category: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        let unit_price = Money::from_minor(&row.currency, row.price_minor);
        Product {
            id: row.id.to_string(),
            name: row.name,
            description: row.description,
            price: unit_price.to_legacy_price(),
            unit_price: Some(unit_price),
            stock: row.stock,
            image_url: row.image_url,
            category: row.category,
            create_time: Some(shop_proto::timestamp(row.created_at)),
            update_time: Some(shop_proto::timestamp(row.updated_at)),
        }
    }
}

/// A validated `addProduct` request.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub currency: String,
    pub price_minor: i64,
    /// `None` (the book's products, or stock left unset): not tracked.
    pub stock: Option<i64>,
    pub image_url: String,
    pub category: String,
}

impl NewProduct {
    /// Checks every field of `p`. A client may choose the id (a UUID, which
    /// makes retries safe: the second attempt is ALREADY_EXISTS); otherwise a
    /// new one is made. `unit_price` wins over the legacy `price`, which is
    /// read in `default_currency`.
    pub fn from_proto(p: Product, default_currency: &str) -> Result<Self, FieldViolations> {
        let mut v = FieldViolations::default();

        let id = if p.id.is_empty() {
            Uuid::now_v7()
        } else {
            match Uuid::parse_str(&p.id) {
                Ok(id) => id,
                Err(_) => {
                    v.add("id", "must be empty (the server picks one) or a UUID");
                    Uuid::nil()
                }
            }
        };
        let name = p.name.trim().to_owned();
        v.check_text("name", &name, MAX_NAME, true);
        v.check_text("description", &p.description, MAX_DESCRIPTION, false);
        let category = p.category.trim().to_owned();
        v.check_text("category", &category, MAX_CATEGORY, false);
        check_image_url(&mut v, &p.image_url);

        let (currency, price_minor) = match &p.unit_price {
            Some(money) => match money.to_minor() {
                Ok(minor) => (money.currency_code.clone(), minor),
                Err(e) => {
                    let field = match e {
                        shop_proto::money::MoneyError::UnknownCurrency(_) => {
                            "unit_price.currency_code"
                        }
                        _ => "unit_price",
                    };
                    v.add(field, e.to_string());
                    (money.currency_code.clone(), 0)
                }
            },
            None => match minor_from_legacy_price(default_currency, p.price) {
                Ok(minor) => (default_currency.to_owned(), minor),
                Err(e) => {
                    v.add("price", e.to_string());
                    (default_currency.to_owned(), 0)
                }
            },
        };
        let price_field = if p.unit_price.is_some() {
            "unit_price"
        } else {
            "price"
        };
        if price_minor < 0 {
            v.add(price_field, "must not be negative");
        } else if price_minor > MAX_PRICE_MINOR {
            v.add(price_field, "is too large");
        }
        match p.stock {
            Some(stock) if stock < 0 => {
                v.add("stock", "must not be negative");
            }
            Some(stock) if stock > MAX_STOCK => {
                v.add("stock", format!("must be at most {MAX_STOCK}"));
            }
            _ => {}
        }

        if !v.is_empty() {
            return Err(v);
        }
        Ok(Self {
            id,
            name,
            description: p.description,
            currency,
            price_minor,
            stock: p.stock,
            image_url: p.image_url,
            category,
        })
    }
}

fn check_image_url(v: &mut FieldViolations, url: &str) {
    if url.is_empty() {
        return;
    }
    let path_ok = url.starts_with('/') && !url.starts_with("//") && !url.contains("..");
    let http_ok = url.starts_with("https://") || url.starts_with("http://");
    if url.len() > MAX_IMAGE_URL {
        v.add(
            "image_url",
            format!("must be at most {MAX_IMAGE_URL} bytes"),
        );
    } else if !(path_ok || http_ok) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        v.add(
            "image_url",
            "must be an http(s) URL or a path starting with / (no spaces, no ..)",
        );
    }
}

/// A product id from a request field: `None` for a string that cannot be a
/// product's id (not a UUID), which is simply an id no product has, so
/// callers answer NOT_FOUND. Only an empty id is invalid input.
pub fn parse_id(v: &mut FieldViolations, field: &str, value: &str) -> Option<Uuid> {
    if value.is_empty() {
        v.add(field, "must not be empty");
        return None;
    }
    Uuid::parse_str(value).ok()
}

/// NOT_FOUND for the product id `value`.
pub fn not_found(value: &str) -> crate::error::Error {
    let shown: String = value.chars().take(100).collect();
    crate::error::Error::NotFound(format!("product {shown:?}"))
}

/// Which products a listing or search wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Text to find in name, description or category, as the user typed
    /// it (trimmed); matched literally, wildcards and all.
    pub query: Option<String>,
    pub category: Option<String>,
}

/// The shortest query matched anywhere in a product (trigrams need three
/// characters); shorter ones match the start of names.
pub const MIN_TRIGRAM_QUERY: usize = 3;

impl Filter {
    /// Validates the query and category of a request.
    pub fn new(v: &mut FieldViolations, query: &str, category: &str) -> Self {
        let query = query.trim();
        v.check_text("query", query, MAX_QUERY, false);
        v.check_text("category", category, MAX_CATEGORY, false);
        Filter {
            query: (!query.is_empty()).then(|| query.to_owned()),
            category: (!category.is_empty()).then(|| category.to_owned()),
        }
    }
}

/// The two parts of a search's results, best first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Phase {
    /// Names that start with the query (and every product of a listing
    /// without one).
    #[default]
    Names,
    /// The other products that contain it.
    Contains,
}

impl From<Phase> for u8 {
    fn from(p: Phase) -> u8 {
        match p {
            Phase::Names => 0,
            Phase::Contains => 1,
        }
    }
}

impl TryFrom<u8> for Phase {
    type Error = String;
    fn try_from(n: u8) -> Result<Phase, String> {
        match n {
            0 => Ok(Phase::Names),
            1 => Ok(Phase::Contains),
            _ => Err(format!("unknown phase {n}")),
        }
    }
}

/// Escapes LIKE wildcards so user text matches literally.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where the next page starts: after this (name, id) in this part of the
/// results. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "i")]
    pub id: Uuid,
    #[serde(rename = "p", default)]
    pub phase: Phase,
}

impl Cursor {
    /// The position right after `found`.
    pub fn after(found: &crate::db::Found) -> Cursor {
        Cursor {
            name: found.row.name.clone(),
            id: found.row.id,
            phase: found.phase,
        }
    }

    /// The page token handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a page token; empty means "first page".
    pub fn decode(v: &mut FieldViolations, token: &str) -> Option<Self> {
        if token.is_empty() {
            return None;
        }
        let cursor = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if cursor.is_none() {
            v.add("page_token", "is not a token this service handed out");
        }
        cursor
    }
}

/// The page size of a request: 0 means the default; 1..=100 otherwise.
pub fn page_size(v: &mut FieldViolations, requested: i32) -> i64 {
    match requested {
        0 => i64::from(DEFAULT_PAGE_SIZE),
        1..=MAX_PAGE_SIZE => i64::from(requested),
        _ => {
            v.add(
                "page_size",
                format!("must be between 1 and {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})"),
            );
            0
        }
    }
}

/// Checks that a currency code is known, for configuration.
pub fn is_known_currency(code: &str) -> bool {
    minor_digits(code).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(name: &str, price: f32) -> Product {
        Product {
            name: name.into(),
            price,
            ..Default::default()
        }
    }

    #[test]
    fn a_book_product_gets_an_id_and_an_exact_price_in_the_default_currency() {
        let p = NewProduct::from_proto(product("Apple iPhone 11", 699.99), "USD").unwrap();
        assert_eq!(p.price_minor, 69999);
        assert_eq!(p.currency, "USD");
        assert!(!p.id.is_nil());
    }

    #[test]
    fn the_exact_price_wins_over_the_float() {
        let mut p = product("Mug", 1.0);
        p.unit_price = Some(Money {
            currency_code: "EUR".into(),
            units: 12,
            nanos: 500_000_000,
        });
        let p = NewProduct::from_proto(p, "USD").unwrap();
        assert_eq!((p.currency.as_str(), p.price_minor), ("EUR", 1250));
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut p = product("   ", -1.0);
        p.id = "not-a-uuid".into();
        p.stock = Some(-5);
        p.image_url = "javascript:alert(1)".into();
        p.description = "x".repeat(MAX_DESCRIPTION + 1);
        let v = NewProduct::from_proto(p, "USD").unwrap_err();
        assert_eq!(
            v.fields(),
            ["id", "name", "description", "image_url", "price", "stock"]
        );
    }

    #[test]
    fn unknown_currencies_and_too_fine_amounts_are_refused() {
        let mut p = product("Mug", 0.0);
        p.unit_price = Some(Money {
            currency_code: "ABC".into(),
            units: 1,
            nanos: 0,
        });
        assert_eq!(
            NewProduct::from_proto(p.clone(), "USD")
                .unwrap_err()
                .fields(),
            ["unit_price.currency_code"]
        );
        p.unit_price = Some(Money {
            currency_code: "USD".into(),
            units: 1,
            nanos: 1,
        });
        assert_eq!(
            NewProduct::from_proto(p, "USD").unwrap_err().fields(),
            ["unit_price"]
        );
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            name: "Mug".into(),
            id: Uuid::now_v7(),
            phase: Phase::Contains,
        };
        let mut v = FieldViolations::default();
        assert_eq!(Cursor::decode(&mut v, &cursor.encode()), Some(cursor));
        // Tokens handed out before search had phases still work.
        let old =
            URL_SAFE_NO_PAD.encode(br#"{"n":"Mug","i":"0191e3a4-5b6c-7d8e-9f00-112233445566"}"#);
        assert_eq!(
            Cursor::decode(&mut v, &old).map(|c| c.phase),
            Some(Phase::Names)
        );
        assert_eq!(Cursor::decode(&mut v, ""), None);
        assert!(v.is_empty());
        assert_eq!(Cursor::decode(&mut v, "%%%"), None);
        assert_eq!(v.fields(), ["page_token"]);
    }

    #[test]
    fn page_sizes_are_bounded() {
        let mut v = FieldViolations::default();
        assert_eq!(page_size(&mut v, 0), 20);
        assert_eq!(page_size(&mut v, 100), 100);
        assert!(v.is_empty());
        page_size(&mut v, 101);
        page_size(&mut v, -1);
        assert_eq!(v.fields(), ["page_size", "page_size"]);
    }

    #[test]
    fn like_wildcards_in_queries_match_literally() {
        let mut v = FieldViolations::default();
        let f = Filter::new(&mut v, " 100%_off\\ ", "");
        assert_eq!(f.query.as_deref(), Some("100%_off\\"));
        assert_eq!(escape_like("100%_off\\"), "100\\%\\_off\\\\");
    }
}
