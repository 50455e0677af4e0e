//! `ecommerce.OrderManagement`: all four kinds of gRPC call on one database.
//! The handlers check who is calling and what they sent, then hand over:
//!
//! - unary: `add_order` ([`crate::place`]), `get_order`, `cancel_order`
//! - server streaming: `search_orders`, `watch_order` ([`crate::streams`])
//! - client streaming: `update_orders`
//! - bidirectional streaming: `process_orders` ([`crate::ship`])
//!
//! Who may call what is written next to each method in
//! `proto/ecommerce/order_management.proto`.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use prost::Message as _;
use shop_proto::ecommerce::{
    CancelOrderRequest, CombinedShipment, ListOrdersRequest, ListOrdersResponse, Order,
    OrderUpdateFailure, UpdateOrdersResult, order_management_server::OrderManagement,
};
use shop_runtime::{
    auth::{Principal, Role},
    deadline::Deadline,
    error::FieldViolations,
    pg::Db,
    slots::Slots,
    telemetry::rpc::code_name,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming, metadata::BinaryMetadataValue};
use uuid::Uuid;

use crate::{
    catalog::Catalog,
    db::{self, Cancel},
    error::Error,
    order::{self, NewOrder, OrderRecord, OrderState},
    place, release, ship, streams,
    watch::Watchers,
};

/// Updates one `updateOrders` call applies; more are left unread.
const MAX_UPDATES_PER_CALL: usize = 100;
/// Longest client-sent id echoed back in a result.
const MAX_ID_ECHO: usize = 64;
/// Largest `order-update-results-bin` header, in bytes before base64
/// (clients such as hyper's refuse header blocks over 16 KiB).
const MAX_RESULTS_HEADER: usize = 6 * 1024;

/// `s` cut to at most `max` bytes, at a character boundary.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

pub(crate) type OrderStream = Pin<Box<dyn Stream<Item = Result<Order, Status>> + Send>>;
type ShipmentStream = Pin<Box<dyn Stream<Item = Result<CombinedShipment, Status>> + Send>>;

/// The handlers of `ecommerce.OrderManagement`.
#[derive(Clone)]
pub struct OrderManagementService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    searches: Slots,
    catalog: Catalog,
    watchers: Watchers,
    watch_lifetime: Duration,
    stopping: CancellationToken,
    batch_size: usize,
}

impl OrderManagementService {
    /// The service over its database and the catalog; searches stream while
    /// `searches` has a slot; its streams end when `stopping` is cancelled,
    /// watches after `watch_lifetime`.
    pub fn new(
        db: Db,
        searches: Slots,
        catalog: Catalog,
        watchers: Watchers,
        watch_lifetime: Duration,
        stopping: CancellationToken,
        batch_size: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                searches,
                catalog,
                watchers,
                watch_lifetime,
                stopping,
                batch_size: batch_size.max(1),
            }),
        }
    }

    async fn visible_order(&self, caller: &Principal, id: Uuid) -> Result<OrderRecord, Error> {
        match db::get(&self.inner.db, id).await? {
            Some(record) if visible(caller, &record) => Ok(record),
            _ => Err(Error::NotFound(id.to_string())),
        }
    }
}

/// Whose orders a caller may see: a customer only their own, admins and
/// services everyone's.
fn scope(caller: &Principal) -> Option<&str> {
    match caller.role {
        Role::Customer => Some(caller.subject.as_str()),
        Role::Admin | Role::Service => None,
    }
}

fn visible(caller: &Principal, record: &OrderRecord) -> bool {
    scope(caller).is_none_or(|customer| customer == record.order.customer)
}

#[tonic::async_trait]
impl OrderManagement for OrderManagementService {
    async fn add_order(&self, request: Request<Order>) -> Result<Response<String>, Status> {
        let caller = Principal::of(&request)?;
        caller.require(&[Role::Customer, Role::Admin])?;
        let deadline = Deadline::of(&request);
        let new = NewOrder::from_proto(request.into_inner()).map_err(Error::from)?;
        let placed = place::place(
            &self.inner.db,
            &self.inner.catalog,
            &caller.subject,
            new,
            deadline,
        )
        .await?;
        Ok(Response::new(placed.id().to_string()))
    }

    async fn get_order(&self, request: Request<String>) -> Result<Response<Order>, Status> {
        let caller = Principal::of(&request)?;
        let mut v = FieldViolations::default();
        let id = order::parse_id(&mut v, "value", request.get_ref());
        v.finish()?;
        let id = id.ok_or_else(|| Error::NotFound(request.get_ref().clone()))?;
        let record = self.visible_order(&caller, id).await?;
        Ok(Response::new(record.into()))
    }

    type searchOrdersStream = OrderStream;

    async fn search_orders(
        &self,
        request: Request<String>,
    ) -> Result<Response<Self::searchOrdersStream>, Status> {
        let caller = Principal::of(&request)?;
        let query = request.into_inner();
        let mut v = FieldViolations::default();
        v.check_text("value", &query, 200, false);
        v.finish()?;
        Ok(Response::new(streams::search_stream(
            self.inner.db.clone(),
            scope(&caller).map(str::to_owned),
            Some(query.trim())
                .filter(|q| !q.is_empty())
                .map(str::to_owned),
            self.inner.searches.take()?,
        )))
    }

    async fn update_orders(
        &self,
        request: Request<Streaming<Order>>,
    ) -> Result<Response<String>, Status> {
        Principal::of(&request)?.require(&[Role::Admin])?;
        let mut stream = request.into_inner();
        let mut result = UpdateOrdersResult::default();
        let mut taken = 0;
        while let Some(update) = stream.message().await? {
            if taken == MAX_UPDATES_PER_CALL {
                // Not read further: the rest goes in another call.
                result.truncated = true;
                break;
            }
            taken += 1;
            let id = clip(&update.id, MAX_ID_ECHO);
            match self.update_one(update).await {
                Ok(()) => result.updated_ids.push(id),
                Err(e) => {
                    let status = Status::from(e);
                    result.failed.push(OrderUpdateFailure {
                        id,
                        code: code_name(status.code()).to_owned(),
                        message: status.message().to_owned(),
                    });
                }
            }
        }
        let mut summary = if result.updated_ids.is_empty() {
            String::from("Orders processed: none")
        } else {
            format!("Orders processed: {}", result.updated_ids.join(", "))
        };
        if !result.failed.is_empty() {
            let failed: Vec<String> = result
                .failed
                .iter()
                .map(|f| format!("{} ({}: {})", f.id, f.code, f.message))
                .collect();
            summary.push_str(&format!("; failed: {}", failed.join(", ")));
        }
        if result.truncated {
            summary.push_str(&format!(
                "; stopped after {MAX_UPDATES_PER_CALL} updates: send the rest in another call"
            ));
        }
        // The per-order results travel as a header: the messages are in the
        // summary already, so they go first if the header would be too big.
        if result.encoded_len() > MAX_RESULTS_HEADER {
            for failure in &mut result.failed {
                failure.message.clear();
            }
        }
        tracing::info!(
            updated = result.updated_ids.len(),
            failed = result.failed.len(),
            "orders updated"
        );
        let mut response = Response::new(summary);
        response.metadata_mut().insert_bin(
            "order-update-results-bin",
            BinaryMetadataValue::from_bytes(&result.encode_to_vec()),
        );
        Ok(response)
    }

    type processOrdersStream = ShipmentStream;

    async fn process_orders(
        &self,
        request: Request<Streaming<String>>,
    ) -> Result<Response<Self::processOrdersStream>, Status> {
        Principal::of(&request)?.require(&[Role::Admin])?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(ship::ship_stream(
            self.inner.db.clone(),
            self.inner.batch_size,
            inbound,
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let caller = Principal::of(&request)?;
        caller.require(&[Role::Customer, Role::Admin])?;
        let req = request.into_inner();
        let mut v = FieldViolations::default();
        let id = order::parse_id(&mut v, "order_id", &req.order_id);
        let reason = req.reason.trim();
        v.check_text("reason", reason, order::MAX_REASON, false);
        v.finish()?;
        let id = id.ok_or_else(|| Error::NotFound(req.order_id.clone()))?;
        let reason = if reason.is_empty() {
            format!("cancelled by {}", caller.role)
        } else {
            reason.to_owned()
        };
        match db::cancel(&self.inner.db, id, scope(&caller), &reason).await? {
            Cancel::Cancelled(record) => {
                tracing::info!(order.id = %id, "order cancelled");
                release::release_now(&self.inner.db, &self.inner.catalog, id).await;
                Ok(Response::new(record.into()))
            }
            Cancel::AlreadyCancelled(record) => Ok(Response::new(record.into())),
            Cancel::Shipped => Err(Error::Final {
                id,
                state: OrderState::Shipped,
            }
            .into()),
            Cancel::NotFound => Err(Error::NotFound(id.to_string()).into()),
        }
    }

    type watchOrderStream = OrderStream;

    async fn watch_order(
        &self,
        request: Request<String>,
    ) -> Result<Response<Self::watchOrderStream>, Status> {
        let caller = Principal::of(&request)?;
        let mut v = FieldViolations::default();
        let id = order::parse_id(&mut v, "value", request.get_ref());
        v.finish()?;
        let id = id.ok_or_else(|| Error::NotFound(request.get_ref().clone()))?;
        // Watch before reading, so no change can slip in between.
        let watch = self
            .inner
            .watchers
            .watch(id, &caller.subject)
            .map_err(Error::TooManyWatches)?;
        let first = self.visible_order(&caller, id).await?;
        Ok(Response::new(streams::watch_stream(
            first,
            watch,
            self.inner.watch_lifetime,
            self.inner.stopping.clone(),
        )))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let caller = Principal::of(&request)?;
        let req = request.into_inner();
        let mut v = FieldViolations::default();
        let query = req.query.trim();
        v.check_text("query", query, 200, false);
        let size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n @ 1..=MAX_PAGE_SIZE => i64::from(n),
            _ => {
                v.add(
                    "page_size",
                    format!("must be between 1 and {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})"),
                );
                0
            }
        };
        let after = page_token::decode(&mut v, &req.page_token);
        v.finish()?;
        // One more than asked tells whether an older page exists.
        let mut records = db::search(
            &self.inner.db,
            scope(&caller),
            Some(query).filter(|q| !q.is_empty()),
            after,
            size + 1,
            db::Direction::Newest,
        )
        .await?;
        let next_page_token = if records.len() as i64 > size {
            records.truncate(size as usize);
            records
                .last()
                .map(|r| page_token::encode((r.order.created_at, r.order.id)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListOrdersResponse {
            orders: records.into_iter().map(Order::from).collect(),
            next_page_token,
        }))
    }
}

/// Orders on a `listOrders` page unless the request says otherwise.
const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i32 = 100;

/// `listOrders` page tokens: where the next page starts, opaque to clients.
mod page_token {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use shop_runtime::error::FieldViolations;

    use crate::db::SearchCursor;

    pub fn encode((created_at, id): SearchCursor) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{id}", created_at.timestamp_micros()))
    }

    pub fn decode(v: &mut FieldViolations, token: &str) -> Option<SearchCursor> {
        if token.is_empty() {
            return None;
        }
        let cursor = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                let (micros, id) = text.split_once('.')?;
                Some((
                    chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                    id.parse().ok()?,
                ))
            });
        if cursor.is_none() {
            v.add("page_token", "is not a token this service handed out");
        }
        cursor
    }
}

impl OrderManagementService {
    /// One `updateOrders` message, in its own transaction.
    async fn update_one(&self, update: Order) -> Result<(), Error> {
        let mut v = FieldViolations::default();
        let id = order::parse_id(&mut v, "id", &update.id);
        let destination = update.destination.trim();
        if !destination.is_empty() {
            v.check_text("destination", destination, order::MAX_DESTINATION, true);
        }
        v.check_text(
            "description",
            &update.description,
            order::MAX_DESCRIPTION,
            false,
        );
        v.finish()?;
        let id = id.ok_or_else(|| Error::NotFound(update.id.clone()))?;
        let destination = (!destination.is_empty()).then_some(destination);
        let description = (!update.description.is_empty()).then_some(update.description.as_str());
        let sent = db::SentItems {
            items: update.items,
            lines: update
                .lines
                .into_iter()
                .map(|l| (l.product_id, l.quantity))
                .collect(),
        };
        match db::update_details(&self.inner.db, id, destination, description, &sent).await? {
            db::Update::Updated => Ok(()),
            db::Update::NotFound => Err(Error::NotFound(id.to_string())),
            db::Update::ItemsChanged => Err(Error::ItemsChanged(id)),
            db::Update::Final(state) => Err(Error::Final { id, state }),
        }
    }
}
