//! "My orders", one order with its live status, and cancelling.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Path, Query, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt as _;
use serde::Deserialize;
use shop_proto::ecommerce::OrderStatus;
use shop_runtime::{deadline::Deadline, upstream::Fault};

use super::{
    AppState, Session, page_error, render, require_login, see_other,
    views::{Layout, OrderPage, OrderView, OrdersPage, status_label},
};
use crate::error::Error;

/// Orders on a page of "my orders".
const MY_ORDERS: i32 = 20;

/// Which page of a list of orders.
#[derive(Deserialize, Default)]
pub struct PageQuery {
    /// The page token of the order service; empty for the newest.
    #[serde(default)]
    pub page: String,
}

pub async fn list(
    session: Session,
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Response {
    let user = match require_login(&session, "/orders") {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    let (orders, older, problem) = match state
        .upstreams
        .orders(Deadline::NONE, &user, "", &q.page, MY_ORDERS)
        .await
    {
        Ok((orders, next)) => (
            orders.into_iter().map(OrderView::from).collect(),
            older_page("/orders", &[], &next),
            None,
        ),
        Err(e) if e.is_upstream_unavailable("order") => (
            Vec::new(),
            None,
            Some("Your orders cannot be shown right now; the order service is not answering. Please try again soon.".to_owned()),
        ),
        Err(e) => return page_error(&session, &state, e, "/orders").await,
    };
    render(&OrdersPage {
        layout: Layout::new(&session, &state, "").await,
        orders,
        older,
        problem,
    })
}

/// The link to the next, older page of `path` (with its other `params`),
/// or `None` on the last page.
pub fn older_page(path: &str, params: &[(&str, &str)], next: &str) -> Option<String> {
    if next.is_empty() {
        return None;
    }
    let mut query: Vec<(&str, &str)> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    query.push(("page", next));
    Some(format!(
        "{path}?{}",
        serde_urlencoded::to_string(query).unwrap_or_default()
    ))
}

#[derive(Deserialize, Default)]
pub struct OrderQuery {
    #[serde(default)]
    placed: Option<String>,
    #[serde(default)]
    notice: Option<String>,
}

pub async fn show(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<OrderQuery>,
) -> Response {
    let next = format!("/orders/{id}");
    let user = match require_login(&session, &next) {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    match state.upstreams.order(Deadline::NONE, &user, &id).await {
        Ok(Some(order)) => render(&OrderPage {
            layout: Layout::new(&session, &state, "")
                .await
                .with_notice(query.notice.as_deref()),
            order: order.into(),
            placed: query.placed.is_some(),
        }),
        Ok(None) => page_error(&session, &state, Error::NotFound(id), "/orders").await,
        Err(e) => page_error(&session, &state, e, &next).await,
    }
}

/// Server-sent events: `status` with the order's status each time it
/// changes (from the order service's watchOrder stream), then `end`.
pub async fn events(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let Some(user) = session.user.clone() else {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    };
    let watch = match state.upstreams.watch_order(&user, &id).await {
        Ok(stream) => stream,
        Err(Error::Upstream(e)) if e.fault == Fault::NotFound => {
            return axum::http::StatusCode::NOT_FOUND.into_response();
        }
        // The order service's cap on live watches per person.
        Err(Error::Upstream(e)) if e.status.code() == tonic::Code::ResourceExhausted => {
            return axum::http::StatusCode::TOO_MANY_REQUESTS.into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch order");
            return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let updates = watch
        .take_until(state.stopping.clone().cancelled_owned())
        .filter_map(|order| async move {
            let order = order.ok()?;
            let (label, css) = status_label(order.status);
            let data = serde_json::json!({ "label": label, "css": css }).to_string();
            let mut events = vec![Ok::<_, Infallible>(
                Event::default().event("status").data(data),
            )];
            if matches!(
                OrderStatus::try_from(order.status),
                Ok(OrderStatus::Shipped | OrderStatus::Cancelled)
            ) {
                events.push(Ok(Event::default().event("end").data("final")));
            }
            Some(futures::stream::iter(events))
        })
        .flatten();
    Sse::new(updates)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

pub async fn cancel(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let next = format!("/orders/{id}");
    let user = match require_login(&session, &next) {
        Ok(user) => user,
        Err(redirect) => return redirect,
    };
    match state
        .upstreams
        .cancel_order(Deadline::NONE, &user, &id)
        .await
    {
        Ok(_) => see_other(&format!("/orders/{id}?notice=cancelled")),
        Err(e) => page_error(&session, &state, e, &next).await,
    }
}

#[cfg(test)]
mod tests {
    use super::older_page;

    #[test]
    fn the_older_page_link_keeps_the_query_and_ends_on_the_last_page() {
        assert_eq!(older_page("/orders", &[], ""), None);
        assert_eq!(
            older_page("/orders", &[], "MTIz.abc").as_deref(),
            Some("/orders?page=MTIz.abc")
        );
        assert_eq!(
            older_page("/admin/orders", &[("q", "tea & mugs")], "tok").as_deref(),
            Some("/admin/orders?q=tea+%26+mugs&page=tok")
        );
        assert_eq!(
            older_page("/admin/orders", &[("q", "")], "tok").as_deref(),
            Some("/admin/orders?page=tok")
        );
    }
}
