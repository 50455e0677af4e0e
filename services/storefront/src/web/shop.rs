//! Shopping: the catalog, product pages, the cart and checkout.

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use shop_runtime::{
    deadline::Deadline,
    upstream::{Fault, UpstreamError},
};
use tonic::Code;
use tonic_types::StatusExt as _;
use uuid::Uuid;

use super::{
    AppState, Session, page_error, render, require_login, safe_next, see_other, urlencode,
    views::{CartPage, CatalogPage, CheckoutPage, Layout, ProductPage, ProductView},
};
use crate::{cart, checkout::checkout as place_order, db, error::Error};

/// Products per catalog page.
const PAGE_SIZE: i32 = 12;
/// The demo catalog's categories, shown as filters.
const CATEGORIES: [&str; 5] = ["kitchen", "pantry", "office", "outdoor", "home"];

#[derive(Deserialize, Default)]
pub struct CatalogQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    page: String,
    #[serde(default)]
    notice: Option<String>,
}

fn catalog_url(q: &str, category: &str, page: &str) -> String {
    let mut params = Vec::new();
    if !q.is_empty() {
        params.push(format!("q={}", urlencode(q)));
    }
    if !category.is_empty() {
        params.push(format!("category={}", urlencode(category)));
    }
    if !page.is_empty() {
        params.push(format!("page={}", urlencode(page)));
    }
    if params.is_empty() {
        "/".into()
    } else {
        format!("/?{}", params.join("&"))
    }
}

pub async fn catalog(
    session: Session,
    State(state): State<AppState>,
    Query(query): Query<CatalogQuery>,
) -> Response {
    let q = query.q.trim().chars().take(200).collect::<String>();
    let category = query.category.trim().chars().take(100).collect::<String>();
    let page = match state
        .upstreams
        .list_products(Deadline::NONE, &q, &category, PAGE_SIZE, &query.page)
        .await
    {
        Ok(page) => page,
        // A stale or edited page token: start over rather than fail.
        Err(Error::Upstream(e)) if e.fault == Fault::Invalid => {
            return see_other(&catalog_url(&q, &category, ""));
        }
        Err(e) => {
            return page_error(
                &session,
                &state,
                e,
                &catalog_url(&q, &category, &query.page),
            )
            .await;
        }
    };
    let this = catalog_url(&q, &category, &query.page);
    render(&CatalogPage {
        layout: Layout::new(&session, &state, &q)
            .await
            .with_notice(query.notice.as_deref()),
        categories: CATEGORIES.iter().map(|c| (*c).to_owned()).collect(),
        products: page.products.into_iter().map(ProductView::from).collect(),
        back: this,
        first_page: query.page.is_empty(),
        first_url: catalog_url(&q, &category, ""),
        next_url: (!page.next_page_token.is_empty())
            .then(|| catalog_url(&q, &category, &page.next_page_token)),
        category,
    })
}

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: Option<String>,
}

pub async fn product(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    match state.upstreams.product(Deadline::NONE, &id).await {
        Ok(Some(product)) => render(&ProductPage {
            layout: Layout::new(&session, &state, "")
                .await
                .with_notice(query.notice.as_deref()),
            product: product.into(),
        }),
        Ok(None) => page_error(&session, &state, Error::NotFound(id), "/").await,
        Err(e) => page_error(&session, &state, e, &format!("/products/{id}")).await,
    }
}

#[derive(Deserialize)]
pub struct CartForm {
    product_id: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    back: String,
}

fn parse_line(form: &CartForm, min: i32) -> Option<(Uuid, i32)> {
    let id = Uuid::parse_str(form.product_id.trim()).ok()?;
    let quantity: i32 = form.quantity.trim().parse().ok()?;
    (min..=99).contains(&quantity).then_some((id, quantity))
}

fn with_notice(path: &str, notice: &str) -> String {
    let path = safe_next(path);
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}notice={notice}")
}

/// Changes a line of the session's cart: only products the catalog has may
/// be put in (removing one it no longer has is fine), and an anonymous
/// session is stored first.
async fn change_cart(
    state: &AppState,
    session: &Session,
    product: Uuid,
    change: db::CartChange,
) -> Result<(), Error> {
    if change != db::CartChange::Set(0)
        && state
            .upstreams
            .product(Deadline::NONE, &product.to_string())
            .await?
            .is_none()
    {
        return Err(Error::NotFound(format!("product {product}")));
    }
    let owner = session.cart_owner_to_change(state).await?;
    db::change_cart(&state.pool, &owner, product, change).await
}

/// A cart change that cannot be made: a full cart or an unknown product is
/// the visitor's (422), the rest the usual error pages.
async fn cart_error(session: &Session, state: &AppState, e: Error) -> Response {
    match e {
        Error::CartFull | Error::NotFound(_) => {
            let message = match e {
                Error::CartFull => format!(
                    "Your cart holds {} different products already, the most it can.",
                    db::MAX_CART_LINES
                ),
                _ => "That product is not in the catalog.".to_owned(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, message).into_response()
        }
        e => page_error(session, state, e, "/cart").await,
    }
}

pub async fn add_to_cart(
    session: Session,
    State(state): State<AppState>,
    Form(form): Form<CartForm>,
) -> Response {
    let Some((product, quantity)) = parse_line(&form, 1) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a quantity from 1 to 99.",
        )
            .into_response();
    };
    if let Err(e) = change_cart(&state, &session, product, db::CartChange::Add(quantity)).await {
        return cart_error(&session, &state, e).await;
    }
    let back = if form.back.is_empty() {
        "/cart"
    } else {
        &form.back
    };
    see_other(&with_notice(back, "added"))
}

pub async fn update_cart(
    session: Session,
    State(state): State<AppState>,
    Form(form): Form<CartForm>,
) -> Response {
    let Some((product, quantity)) = parse_line(&form, 0) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a quantity from 0 to 99.",
        )
            .into_response();
    };
    if let Err(e) = change_cart(&state, &session, product, db::CartChange::Set(quantity)).await {
        return cart_error(&session, &state, e).await;
    }
    see_other("/cart?notice=updated")
}

pub async fn cart(
    session: Session,
    State(state): State<AppState>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    match cart::priced(
        &state.pool,
        &state.upstreams,
        Deadline::NONE,
        &session.cart_owner(),
    )
    .await
    {
        Ok(cart) => render(&CartPage {
            layout: Layout::new(&session, &state, "")
                .await
                .with_notice(query.notice.as_deref()),
            cart,
        }),
        Err(e) => page_error(&session, &state, e, "/cart").await,
    }
}

pub async fn checkout_page(session: Session, State(state): State<AppState>) -> Response {
    let user = match require_login(&session, "/checkout") {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let cart = match cart::priced(
        &state.pool,
        &state.upstreams,
        Deadline::NONE,
        &crate::db::CartOwner::User(user.id),
    )
    .await
    {
        Ok(cart) => cart,
        Err(e) => return page_error(&session, &state, e, "/checkout").await,
    };
    render(&CheckoutPage {
        layout: Layout::new(&session, &state, "").await,
        cart,
        ordering_available: state.upstreams.ordering_available(),
        idempotency_key: Uuid::new_v4().to_string(),
        destination: String::new(),
        destination_error: None,
        problem: None,
        short: Vec::new(),
    })
}

#[derive(Deserialize)]
pub struct CheckoutForm {
    #[serde(default)]
    destination: String,
    #[serde(default)]
    idempotency_key: String,
}

pub async fn checkout(
    session: Session,
    State(state): State<AppState>,
    Form(form): Form<CheckoutForm>,
) -> Response {
    let user = match require_login(&session, "/checkout") {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let error = match place_order(
        &state.pool,
        &state.upstreams,
        Deadline::NONE,
        &user,
        &form.destination,
        &form.idempotency_key,
    )
    .await
    {
        Ok(order_id) => return see_other(&format!("/orders/{order_id}?placed=1")),
        Err(e) => e,
    };
    // Show the checkout again, saying what went wrong.
    let mut page = CheckoutPage {
        layout: Layout::new(&session, &state, "").await,
        cart: Default::default(),
        ordering_available: true,
        idempotency_key: form.idempotency_key.clone(),
        destination: form.destination.clone(),
        destination_error: None,
        problem: None,
        short: Vec::new(),
    };
    let status = match error {
        Error::Invalid(v) => {
            let status = v.into_status();
            for violation in status
                .get_details_bad_request()
                .map(|b| b.field_violations)
                .unwrap_or_default()
            {
                if violation.field == "destination" {
                    page.destination_error = Some(violation.description);
                } else {
                    page.problem = Some(format!(
                        "Your order could not be placed: {}.",
                        violation.description
                    ));
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ref e if e.is_upstream_unavailable("order") => {
            page.ordering_available = false;
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Upstream(UpstreamError {
            upstream: "order",
            status,
            ..
        }) if status.code() == Code::FailedPrecondition => {
            page.problem = Some(
                "Some items do not have enough stock. Please change the quantities and try again:"
                    .into(),
            );
            page.short = status
                .get_details_precondition_failure()
                .map(|p| p.violations.into_iter().map(|v| v.description).collect())
                .unwrap_or_else(|| vec![status.message().to_owned()]);
            page.idempotency_key = Uuid::new_v4().to_string();
            StatusCode::CONFLICT
        }
        Error::Upstream(UpstreamError {
            upstream: "order",
            status,
            ..
        }) if matches!(status.code(), Code::InvalidArgument | Code::Aborted) => {
            page.problem = Some(
                "Your order could not be placed; please check your cart and try again.".into(),
            );
            tracing::info!(code = ?status.code(), message = status.message(), "checkout refused");
            page.idempotency_key = Uuid::new_v4().to_string();
            StatusCode::UNPROCESSABLE_ENTITY
        }
        other => return page_error(&session, &state, other, "/checkout").await,
    };
    match cart::priced(
        &state.pool,
        &state.upstreams,
        Deadline::NONE,
        &crate::db::CartOwner::User(user.id),
    )
    .await
    {
        Ok(cart) => page.cart = cart,
        Err(e) => return page_error(&session, &state, e, "/checkout").await,
    }
    let mut response = render(&page);
    *response.status_mut() = status;
    response
}
