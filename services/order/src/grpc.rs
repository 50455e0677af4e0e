//! `ecommerce.OrderManagement`: all four kinds of gRPC call on one database.
//!
//! - unary: `add_order`, `get_order`, `cancel_order`
//! - server streaming: `search_orders`, `watch_order`
//! - client streaming: `update_orders`
//! - bidirectional streaming: `process_orders`
//!
//! Who may call what is written next to each method in
//! `proto/ecommerce/order_management.proto`.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    pin::Pin,
    sync::Arc,
};

use futures::Stream;
use prost::Message as _;
use shop_proto::ecommerce::{
    CancelOrderRequest, CombinedShipment, Order, OrderUpdateFailure, UpdateOrdersResult,
    order_management_server::OrderManagement,
};
use shop_runtime::pg::Db;
use shop_runtime::{
    auth::{Principal, Role},
    deadline::Deadline,
    error::FieldViolations,
    health::HealthRegistry,
    telemetry::rpc::code_name,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming, metadata::BinaryMetadataValue};
use uuid::Uuid;

use crate::{
    catalog::Catalog,
    db::{self, Cancel, Confirm, Confirmed},
    error::Error,
    order::{self, NewOrder, OrderRecord, ProductRef, Status as OrderStatus},
    release,
    watch::Watchers,
};

/// Orders read per query while streaming search results.
const SEARCH_BATCH: i64 = 256;

type OrderStream = Pin<Box<dyn Stream<Item = Result<Order, Status>> + Send>>;
type ShipmentStream = Pin<Box<dyn Stream<Item = Result<CombinedShipment, Status>> + Send>>;

/// The order service.
#[derive(Clone)]
pub struct OrderService {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Db,
    catalog: Catalog,
    watchers: Watchers,
    health: HealthRegistry,
    batch_size: usize,
}

impl OrderService {
    /// The service over its database and the catalog.
    pub fn new(
        pool: Db,
        catalog: Catalog,
        watchers: Watchers,
        health: HealthRegistry,
        batch_size: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                catalog,
                watchers,
                health,
                batch_size: batch_size.max(1),
            }),
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

/// A retry with a known idempotency key gets the first order's id, unless it
/// asks for something else.
fn same_or_conflict(existing: &OrderRecord, fingerprint: &str) -> Result<String, Error> {
    if existing.order.fingerprint == fingerprint {
        Ok(existing.order.id.to_string())
    } else {
        Err(Error::FailedPrecondition(
            "this idempotency key was already used for a different order".into(),
        ))
    }
}

fn like_pattern(query: &str) -> Option<String> {
    let query = query.trim();
    if query.is_empty() {
        return None;
    }
    let mut pattern = String::from("%");
    for c in query.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Some(pattern)
}

impl Inner {
    /// The product lines of `new`, priced and checked against the catalog.
    async fn resolve(
        &self,
        new: &NewOrder,
        deadline: Deadline,
    ) -> Result<BTreeMap<Uuid, i64>, Error> {
        let mut ids = Vec::new();
        let mut names = Vec::new();
        for r in &new.requested {
            match &r.product {
                ProductRef::Id(id) => ids.push(id.to_string()),
                ProductRef::Name(name) => names.push(name.clone()),
            }
        }
        let found = self.catalog.products(ids, names, deadline).await?;
        let by_id: HashMap<&str, &shop_proto::ecommerce::Product> =
            found.products.iter().map(|p| (p.id.as_str(), p)).collect();
        let by_name: HashMap<&str, &shop_proto::ecommerce::Product> = found
            .products
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();

        let mut v = FieldViolations::default();
        let mut lines: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut currencies = HashSet::new();
        for r in &new.requested {
            let product = match &r.product {
                ProductRef::Id(id) => by_id.get(id.to_string().as_str()),
                ProductRef::Name(name) => by_name.get(name.as_str()),
            };
            let Some(product) = product else {
                let what = match &r.product {
                    ProductRef::Id(id) => id.to_string(),
                    ProductRef::Name(name) => format!("{name:?}"),
                };
                v.add(r.field.clone(), format!("no such product: {what}"));
                continue;
            };
            let Ok(id) = Uuid::parse_str(&product.id) else {
                return Err(Error::CatalogBroken(Status::internal(
                    "product id is not a UUID",
                )));
            };
            if let Some(price) = &product.unit_price {
                currencies.insert(price.currency_code.clone());
            }
            *lines.entry(id).or_default() += r.quantity;
        }
        if currencies.len() > 1 {
            v.add(
                "lines",
                "all products of one order must be priced in the same currency",
            );
        }
        if lines.values().any(|q| *q > order::MAX_QUANTITY) {
            v.add(
                "lines",
                format!(
                    "at most {} units of one product per order",
                    order::MAX_QUANTITY
                ),
            );
        }
        v.finish()?;
        Ok(lines)
    }

    /// After a failure that leaves the reservation of `order_id` uncertain:
    /// record that it must be released, then try once right away.
    async fn release_uncertain(&self, order_id: Uuid, cause: &Error) {
        if let Err(e) = db::must_release(&self.pool, order_id, &cause.to_string()).await {
            tracing::warn!(order.id = %order_id, error = %e, "cannot record the release; the abandoned-placement sweep will do it");
        }
        release::release_now(&self.pool, &self.catalog, order_id).await;
    }

    async fn place(
        &self,
        caller: &Principal,
        new: NewOrder,
        deadline: Deadline,
    ) -> Result<String, Error> {
        let customer = caller.subject.as_str();
        let key = new.idempotency_key.as_deref();
        let fingerprint = new.fingerprint();
        if let Some(key) = key
            && let Some(existing) = db::find_by_key(&self.pool, customer, key).await?
        {
            return same_or_conflict(&existing, &fingerprint);
        }
        let lines = self.resolve(&new, deadline).await?;

        let order_id = Uuid::now_v7();
        if !db::begin_reserving(&self.pool, order_id, customer, key).await? {
            if let Some(key) = key
                && let Some(existing) = db::find_by_key(&self.pool, customer, key).await?
            {
                return same_or_conflict(&existing, &fingerprint);
            }
            return Err(Error::Aborted(
                "an order with this idempotency key is being placed right now; retry shortly"
                    .into(),
            ));
        }
        if let Some(key) = key
            && let Some(existing) = db::find_by_key(&self.pool, customer, key).await?
        {
            // Finished between the first look and the claim.
            db::forget_reserving(&self.pool, order_id).await?;
            return same_or_conflict(&existing, &fingerprint);
        }
        let reservation = match self.catalog.reserve(order_id, &lines, deadline).await {
            Ok(r) => r,
            Err(e @ Error::Refused(_)) => {
                // A definite "no": nothing was reserved.
                db::forget_reserving(&self.pool, order_id).await?;
                return Err(e);
            }
            Err(e) => {
                self.release_uncertain(order_id, &e).await;
                return Err(e);
            }
        };

        // The reservation's prices are the catalog's, locked in the same
        // transaction that took the stock.
        let mut currency = String::new();
        let mut total: i64 = 0;
        let mut priced = Vec::with_capacity(reservation.lines.len());
        for line in &reservation.lines {
            let price = line.unit_price.clone().unwrap_or_default();
            let unit = price.to_minor().map_err(|e| {
                Error::CatalogBroken(Status::internal(format!("reserved price: {e}")))
            })?;
            currency = price.currency_code;
            total = unit
                .checked_mul(line.quantity)
                .and_then(|l| total.checked_add(l))
                .ok_or_else(|| Error::FailedPrecondition("the order total is too large".into()))?;
            let product_id = Uuid::parse_str(&line.product_id)
                .map_err(|_| Error::CatalogBroken(Status::internal("reserved product id")))?;
            priced.push((product_id, line.name.clone(), line.quantity, unit));
        }
        let confirmed = Confirmed {
            id: order_id,
            customer,
            idempotency_key: key,
            fingerprint: &fingerprint,
            description: &new.description,
            destination: &new.destination,
            currency: &currency,
            total_minor: total,
            lines: priced,
        };
        match db::confirm(&self.pool, &confirmed).await {
            Ok(Confirm::Stored) => {
                tracing::info!(order.id = %order_id, lines = confirmed.lines.len(), total_minor = total, "order confirmed");
                Ok(order_id.to_string())
            }
            Ok(Confirm::Abandoned) => Err(Error::Aborted(
                "placing the order took too long and it was abandoned; nothing was ordered".into(),
            )),
            Ok(Confirm::DuplicateKey) => {
                let e = Error::Aborted("lost an idempotency race".into());
                self.release_uncertain(order_id, &e).await;
                match key {
                    Some(key) => match db::find_by_key(&self.pool, customer, key).await? {
                        Some(existing) => same_or_conflict(&existing, &fingerprint),
                        None => Err(e),
                    },
                    None => Err(e),
                }
            }
            Err(e) => {
                self.release_uncertain(order_id, &e).await;
                Err(e)
            }
        }
    }

    async fn visible_order(&self, caller: &Principal, id: Uuid) -> Result<OrderRecord, Error> {
        match db::get(&self.pool, id).await? {
            Some(record) if visible(caller, &record) => Ok(record),
            _ => Err(Error::NotFound(id.to_string())),
        }
    }
}

#[tonic::async_trait]
impl OrderManagement for OrderService {
    async fn add_order(&self, request: Request<Order>) -> Result<Response<String>, Status> {
        let caller = Principal::of(&request)?;
        caller.require(&[Role::Customer, Role::Admin])?;
        let deadline = Deadline::of(&request);
        let new = NewOrder::from_proto(request.into_inner()).map_err(Error::from)?;
        let id = self.inner.place(&caller, new, deadline).await?;
        Ok(Response::new(id))
    }

    async fn get_order(&self, request: Request<String>) -> Result<Response<Order>, Status> {
        let caller = Principal::of(&request)?;
        let mut v = FieldViolations::default();
        let id = order::parse_id(&mut v, "value", request.get_ref());
        v.check()?;
        let record = self.inner.visible_order(&caller, id).await?;
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
        v.check()?;
        Ok(Response::new(search_stream(
            self.inner.pool.clone(),
            scope(&caller).map(str::to_owned),
            like_pattern(&query),
        )))
    }

    async fn update_orders(
        &self,
        request: Request<Streaming<Order>>,
    ) -> Result<Response<String>, Status> {
        Principal::of(&request)?.require(&[Role::Admin])?;
        let mut stream = request.into_inner();
        let mut result = UpdateOrdersResult::default();
        while let Some(update) = stream.message().await? {
            let id = update.id.clone();
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
        tokio::spawn(ship_stream(self.inner.clone(), inbound, tx));
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
        v.check()?;
        let reason = if reason.is_empty() {
            format!("cancelled by {}", caller.role)
        } else {
            reason.to_owned()
        };
        match db::cancel(&self.inner.pool, id, scope(&caller), &reason).await? {
            Cancel::Cancelled(record) => {
                tracing::info!(order.id = %id, "order cancelled");
                release::release_now(&self.inner.pool, &self.inner.catalog, id).await;
                Ok(Response::new(record.into()))
            }
            Cancel::AlreadyCancelled(record) => Ok(Response::new(record.into())),
            Cancel::Shipped => Err(Error::FailedPrecondition(format!(
                "order {id} has shipped and can no longer be cancelled"
            ))
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
        v.check()?;
        // Subscribe before reading, so no change can slip in between.
        let changes = self.inner.watchers.subscribe(id);
        let first = self.inner.visible_order(&caller, id).await?;
        Ok(Response::new(watch_stream(
            self.inner.clone(),
            first,
            changes,
        )))
    }
}

impl OrderService {
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
        if !update.items.is_empty() || !update.lines.is_empty() {
            v.add(
                "items",
                "the items of an order cannot change; cancel it and place a new one",
            );
        }
        v.finish()?;
        let destination = (!destination.is_empty()).then_some(destination);
        let description = (!update.description.is_empty()).then_some(update.description.as_str());
        match db::update_details(&self.inner.pool, id, destination, description).await? {
            None => Err(Error::NotFound(id.to_string())),
            Some(OrderStatus::Confirmed) => Ok(()),
            Some(status) => Err(Error::FailedPrecondition(format!(
                "order {id} is {} and can no longer change",
                status.as_db()
            ))),
        }
    }
}

/// Every matching order, read [`SEARCH_BATCH`] at a time (keyset paging, no
/// long transaction). The next batch is read only when the client has taken
/// the previous one, and not at all once it has gone away.
fn search_stream(pool: Db, customer: Option<String>, pattern: Option<String>) -> OrderStream {
    struct State {
        pool: Db,
        customer: Option<String>,
        pattern: Option<String>,
        buffer: VecDeque<OrderRecord>,
        after: Option<db::SearchCursor>,
        exhausted: bool,
    }
    let state = State {
        pool,
        customer,
        pattern,
        buffer: VecDeque::new(),
        after: None,
        exhausted: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        if st.buffer.is_empty() {
            if st.exhausted {
                return None;
            }
            match db::search(
                &st.pool,
                st.customer.as_deref(),
                st.pattern.as_deref(),
                st.after,
                SEARCH_BATCH,
            )
            .await
            {
                Ok(batch) => {
                    st.exhausted = (batch.len() as i64) < SEARCH_BATCH;
                    st.after = batch.last().map(|r| (r.order.created_at, r.order.id));
                    st.buffer = batch.into();
                }
                Err(e) => {
                    st.exhausted = true;
                    return Some((Err(Status::from(e)), st));
                }
            }
        }
        let record = st.buffer.pop_front()?;
        Some((Ok(Order::from(record)), st))
    }))
}

/// The order now, then after each status change, until it is final or the
/// server shuts down.
fn watch_stream(
    inner: Arc<Inner>,
    first: OrderRecord,
    changes: tokio::sync::watch::Receiver<u64>,
) -> OrderStream {
    struct State {
        inner: Arc<Inner>,
        changes: tokio::sync::watch::Receiver<u64>,
        next: Option<OrderRecord>,
        last: Option<OrderStatus>,
        id: Uuid,
    }
    let state = State {
        id: first.order.id,
        inner,
        changes,
        next: Some(first),
        last: None,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(record) = st.next.take() {
                let status = record.status();
                if st.last != Some(status) {
                    st.last = Some(status);
                    return Some((Ok(Order::from(record)), st));
                }
            }
            if st.last.is_some_and(OrderStatus::is_final) {
                return None;
            }
            tokio::select! {
                changed = st.changes.changed() => if changed.is_err() { return None },
                () = st.inner.health.on_shutdown() => return None,
            }
            match db::get(&st.inner.pool, st.id).await {
                Ok(record) => st.next = record,
                Err(e) => return Some((Err(Status::from(e)), st)),
            }
        }
    }))
}

/// The bidirectional `processOrders` conversation: reads order ids, groups
/// them by destination, ships a group as soon as it is full and the rest
/// when the client half-closes.
async fn ship_stream(
    inner: Arc<Inner>,
    mut inbound: Streaming<String>,
    tx: mpsc::Sender<Result<CombinedShipment, Status>>,
) {
    let mut groups: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    let mut seen: HashSet<Uuid> = HashSet::new();
    loop {
        let id = tokio::select! {
            message = inbound.message() => message,
            () = tx.closed() => return, // the client went away
        };
        let raw = match id {
            Ok(Some(raw)) => raw,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(error = %status, "processOrders inbound stream failed");
                return;
            }
        };
        let verdict = admit(&inner, &raw, &mut seen).await;
        let reply = match verdict {
            Ok((id, destination)) => {
                let group = groups.entry(destination.clone()).or_default();
                group.push(id);
                if group.len() < inner.batch_size {
                    continue;
                }
                let ids = std::mem::take(group);
                ship(&inner, &destination, &ids).await
            }
            Err(rejection) => vec![Ok(rejection)],
        };
        for message in reply {
            if tx.send(message).await.is_err() {
                return;
            }
        }
    }
    // Half-closed: what is left goes now, one shipment per destination.
    for (destination, ids) in groups {
        if ids.is_empty() {
            continue;
        }
        for message in ship(&inner, &destination, &ids).await {
            if tx.send(message).await.is_err() {
                return;
            }
        }
    }
}

fn rejected(id: &str, reason: impl Into<String>) -> CombinedShipment {
    CombinedShipment {
        id: String::new(),
        status: "REJECTED".into(),
        orders_list: vec![Order {
            id: id.to_owned(),
            ..Default::default()
        }],
        reason: reason.into(),
        ..Default::default()
    }
}

/// Whether order `raw` may join a shipment: its id and destination, or the
/// rejection to send.
async fn admit(
    inner: &Inner,
    raw: &str,
    seen: &mut HashSet<Uuid>,
) -> Result<(Uuid, String), CombinedShipment> {
    let Ok(id) = Uuid::parse_str(raw.trim()) else {
        return Err(rejected(raw, "not an order id"));
    };
    if !seen.insert(id) {
        return Err(rejected(raw, "sent twice in this stream"));
    }
    match db::get(&inner.pool, id).await {
        Ok(Some(record)) => match record.status() {
            OrderStatus::Confirmed => Ok((id, record.order.destination)),
            other => Err(rejected(raw, format!("order is {}", other.as_db()))),
        },
        Ok(None) => Err(rejected(raw, "no such order")),
        Err(e) => Err(rejected(raw, Status::from(e).message().to_owned())),
    }
}

/// Ships `ids`; orders that stopped being shippable meanwhile (cancelled by
/// someone else) are rejected instead.
async fn ship(
    inner: &Inner,
    destination: &str,
    ids: &[Uuid],
) -> Vec<Result<CombinedShipment, Status>> {
    let shipment = match db::ship(&inner.pool, destination, ids).await {
        Ok(s) => s,
        Err(e) => return vec![Err(Status::from(e))],
    };
    let shipped: HashSet<Uuid> = shipment
        .iter()
        .flat_map(|s| s.orders.iter().map(|o| o.order.id))
        .collect();
    let mut messages: Vec<Result<CombinedShipment, Status>> = ids
        .iter()
        .filter(|id| !shipped.contains(id))
        .map(|id| Ok(rejected(&id.to_string(), "order is no longer confirmed")))
        .collect();
    if let Some(s) = shipment {
        tracing::info!(shipment.id = %s.id, orders = s.orders.len(), "shipment sent");
        messages.push(Ok(CombinedShipment {
            id: s.id.to_string(),
            status: "SHIPPED".into(),
            orders_list: s.orders.into_iter().map(Order::from).collect(),
            destination: destination.to_owned(),
            reason: String::new(),
            create_time: Some(prost_types::Timestamp {
                seconds: s.created_at.timestamp(),
                nanos: s.created_at.timestamp_subsec_nanos() as i32,
            }),
        }));
    }
    messages
}
