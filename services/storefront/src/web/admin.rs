//! The admin area (role admin): the catalog with stock adjustments, adding
//! products, all orders and shipping them. Every change is made with the
//! admin's own token, so productinfo and order check the role themselves.

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;
use shop_proto::ecommerce::{Money, Product};
use shop_runtime::{deadline::Deadline, upstream::Fault};

use super::{
    AppState, Session, error_page, page_error, render, require_login, see_other, urlencode,
    views::{
        AdminOrdersPage, AdminPage, FormErrors, Layout, OrderView, ProductForm, ProductView,
        ShipmentView,
    },
};
use crate::{accounts::User, error::Error};

/// Orders listed on the admin page.
const ADMIN_ORDERS: i32 = 50;

/// The admin behind this session, or the page to show instead.
async fn admin(session: &Session, state: &AppState, next: &str) -> Result<User, Response> {
    let user = require_login(session, next)?;
    if user.role == shop_runtime::auth::Role::Admin {
        Ok(user)
    } else {
        Err(error_page(
            session,
            state,
            StatusCode::FORBIDDEN,
            "Not allowed",
            "This page is for shop admins.",
            "/",
        )
        .await)
    }
}

#[derive(Deserialize, Default)]
pub struct AdminQuery {
    #[serde(default)]
    page: String,
    #[serde(default)]
    notice: Option<String>,
}

async fn products_page(
    session: &Session,
    state: &AppState,
    page_token: &str,
    notice: Option<&str>,
    form: ProductForm,
    errors: FormErrors,
    problem: Option<String>,
) -> Response {
    let page = match state
        .upstreams
        .list_products(Deadline::NONE, "", "", 50, page_token)
        .await
    {
        Ok(page) => page,
        Err(e) => return page_error(session, state, e, "/admin").await,
    };
    render(&AdminPage {
        layout: Layout::new(session, state, "").await.with_notice(notice),
        products: page.products.into_iter().map(ProductView::from).collect(),
        next_url: (!page.next_page_token.is_empty())
            .then(|| format!("/admin?page={}", urlencode(&page.next_page_token))),
        form,
        errors,
        problem,
    })
}

pub async fn products(
    session: Session,
    State(state): State<AppState>,
    Query(q): Query<AdminQuery>,
) -> Response {
    if let Err(page) = admin(&session, &state, "/admin").await {
        return page;
    }
    let form = ProductForm {
        currency: "USD".into(),
        stock: "10".into(),
        ..Default::default()
    };
    products_page(
        &session,
        &state,
        &q.page,
        q.notice.as_deref(),
        form,
        FormErrors::default(),
        None,
    )
    .await
}

/// "12.50" in `currency` as exact money, or why not.
fn parse_price(text: &str, currency: &str) -> Result<Money, String> {
    let text = text.trim();
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    if units.is_empty()
        || !units.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 9
    {
        return Err("write the price like 12.50".into());
    }
    let units: i64 = units
        .parse()
        .map_err(|_| "the price is too large".to_owned())?;
    let nanos: i32 = format!("{fraction:0<9}")
        .parse()
        .map_err(|_| "write the price like 12.50".to_owned())?;
    Ok(Money {
        currency_code: currency.trim().to_uppercase(),
        units,
        nanos,
    })
}

pub async fn add_product(
    session: Session,
    State(state): State<AppState>,
    Form(form): Form<ProductForm>,
) -> Response {
    let user = match admin(&session, &state, "/admin").await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let mut errors = FormErrors::default();
    let price = parse_price(&form.price, &form.currency)
        .map_err(|e| errors.price.push(e))
        .ok();
    // Empty: the product does not track stock.
    let stock = match form.stock.trim() {
        "" => Some(None),
        n => n
            .parse::<i64>()
            .map(Some)
            .map_err(|_| errors.stock.push("must be a whole number, or empty".into()))
            .ok(),
    };
    if let (Some(price), Some(stock)) = (price, stock) {
        let product = Product {
            name: form.name.clone(),
            description: form.description.clone(),
            unit_price: Some(price),
            stock,
            image_url: form.image_url.trim().to_owned(),
            category: form.category.trim().to_lowercase(),
            ..Default::default()
        };
        match state
            .upstreams
            .add_product(Deadline::NONE, &user, product)
            .await
        {
            Ok(_) => return see_other("/admin?notice=product-added"),
            Err(Error::Upstream(e)) if matches!(e.fault, Fault::Invalid | Fault::Refused) => {
                errors = FormErrors::from_status(&e.status);
            }
            Err(e) => return page_error(&session, &state, e, "/admin").await,
        }
    }
    let problem = (!errors.other.is_empty()).then(|| errors.other.join("; "));
    let mut response = products_page(&session, &state, "", None, form, errors, problem).await;
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    response
}

#[derive(Deserialize)]
pub struct StockForm {
    #[serde(default)]
    delta: String,
    #[serde(default)]
    reason: String,
}

pub async fn adjust_stock(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<StockForm>,
) -> Response {
    let user = match admin(&session, &state, "/admin").await {
        Ok(user) => user,
        Err(page) => return page,
    };
    let problem = match form.delta.trim().parse::<i64>() {
        Err(_) => "Units must be a whole number, negative to remove.".to_owned(),
        Ok(delta) => match state
            .upstreams
            .adjust_stock(Deadline::NONE, &user, &id, delta, &form.reason)
            .await
        {
            Ok(_) => return see_other("/admin?notice=stock-adjusted"),
            Err(Error::Upstream(e))
                if matches!(e.fault, Fault::Invalid | Fault::Refused | Fault::NotFound) =>
            {
                e.status.message().to_owned()
            }
            Err(e) => return page_error(&session, &state, e, "/admin").await,
        },
    };
    let mut response = products_page(
        &session,
        &state,
        "",
        None,
        ProductForm::default(),
        FormErrors::default(),
        Some(format!("Stock not changed: {problem}")),
    )
    .await;
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    response
}

#[derive(Deserialize, Default)]
pub struct OrdersQuery {
    #[serde(default)]
    q: String,
    /// The order service's page token; empty for the newest orders.
    #[serde(default)]
    page: String,
}

async fn orders_page(
    session: &Session,
    state: &AppState,
    user: &User,
    query: &OrdersQuery,
    shipments: Vec<ShipmentView>,
) -> Response {
    let q = query.q.trim();
    let (orders, older, problem) = match state
        .upstreams
        .orders(Deadline::NONE, user, q, &query.page, ADMIN_ORDERS)
        .await
    {
        Ok((orders, next)) => (
            orders.into_iter().map(OrderView::from).collect(),
            super::orders::older_page("/admin/orders", &[("q", q)], &next),
            None,
        ),
        Err(e) if e.is_upstream_unavailable("order") => (
            Vec::new(),
            None,
            Some(
                "The order service is not answering; orders cannot be shown or shipped right now."
                    .to_owned(),
            ),
        ),
        Err(e) => return page_error(session, state, e, "/admin/orders").await,
    };
    render(&AdminOrdersPage {
        layout: Layout::new(session, state, "").await,
        query: q.to_owned(),
        orders,
        older,
        shipments,
        problem,
    })
}

pub async fn orders(
    session: Session,
    State(state): State<AppState>,
    Query(q): Query<OrdersQuery>,
) -> Response {
    let user = match admin(&session, &state, "/admin/orders").await {
        Ok(user) => user,
        Err(page) => return page,
    };
    orders_page(&session, &state, &user, &q, Vec::new()).await
}

pub async fn ship(
    session: Session,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Response {
    let user = match admin(&session, &state, "/admin/orders").await {
        Ok(user) => user,
        Err(page) => return page,
    };
    // Repeated `id` fields: one per checked order.
    let ids: Vec<String> = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .collect();
    if ids.is_empty() {
        return see_other("/admin/orders");
    }
    match state
        .upstreams
        .process_orders(Deadline::NONE, &user, ids)
        .await
    {
        Ok(shipments) => {
            let shipments = shipments.into_iter().map(ShipmentView::from).collect();
            orders_page(&session, &state, &user, &OrdersQuery::default(), shipments).await
        }
        Err(e) => page_error(&session, &state, e, "/admin/orders").await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(
            parse_price("12.50", "usd").unwrap(),
            Money {
                currency_code: "USD".into(),
                units: 12,
                nanos: 500_000_000
            }
        );
        assert_eq!(parse_price("7", "EUR").unwrap().units, 7);
        assert!(parse_price("12,50", "USD").is_err());
        assert!(parse_price("-1", "USD").is_err());
        assert!(parse_price("", "USD").is_err());
    }
}
