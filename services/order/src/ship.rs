//! The bidirectional `processOrders` conversation: order ids in, combined
//! shipments (and rejections) out, one shipment per destination as soon as
//! it is full.

use std::collections::{BTreeMap, HashSet};

use shop_proto::ecommerce::{CombinedShipment, Order};
use shop_runtime::pg::Db;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use uuid::Uuid;

use crate::{db, order::OrderState};

/// The bidirectional `processOrders` conversation: reads order ids, groups
/// them by destination, ships a group as soon as it is full and the rest
/// when the client half-closes.
/// Orders one `processOrders` call takes; the rest are refused.
const MAX_ORDERS_PER_CALL: usize = 1000;

pub async fn ship_stream(
    db: Db,
    batch_size: usize,
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
        let verdict = if seen.len() >= MAX_ORDERS_PER_CALL {
            // Bounded memory: ids past the limit are refused, not remembered.
            Err(rejected(
                &raw,
                format!("at most {MAX_ORDERS_PER_CALL} orders per call; send the rest in another"),
            ))
        } else {
            admit(&db, &raw, &mut seen).await
        };
        let reply = match verdict {
            Ok((id, destination)) => {
                let group = groups.entry(destination.clone()).or_default();
                group.push(id);
                if group.len() < batch_size {
                    continue;
                }
                let ids = std::mem::take(group);
                ship(&db, &destination, &ids).await
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
        for message in ship(&db, &destination, &ids).await {
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
    db: &Db,
    raw: &str,
    seen: &mut HashSet<Uuid>,
) -> Result<(Uuid, String), CombinedShipment> {
    let Ok(id) = Uuid::parse_str(raw.trim()) else {
        return Err(rejected(raw, "not an order id"));
    };
    if !seen.insert(id) {
        return Err(rejected(raw, "sent twice in this stream"));
    }
    match db::get(db, id).await {
        Ok(Some(record)) => match record.order.status {
            OrderState::Confirmed => Ok((id, record.order.destination)),
            other => Err(rejected(raw, format!("order is {other}"))),
        },
        Ok(None) => Err(rejected(raw, "no such order")),
        Err(e) => Err(rejected(raw, Status::from(e).message().to_owned())),
    }
}

/// Ships `ids`; orders that stopped being shippable meanwhile (cancelled by
/// someone else) are rejected instead.
async fn ship(db: &Db, destination: &str, ids: &[Uuid]) -> Vec<Result<CombinedShipment, Status>> {
    let shipment = match db::ship(db, destination, ids).await {
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
            create_time: Some(shop_proto::timestamp(s.created_at)),
        }));
    }
    messages
}
