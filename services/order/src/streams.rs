//! The server-streaming calls: `searchOrders` (every matching order, read
//! in batches as the client takes them) and `watchOrder` (an order's status
//! as it changes).

use std::collections::VecDeque;

use std::time::Duration;

use shop_proto::ecommerce::Order;
use shop_runtime::{pg::Db, slots::Slot};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{
    db,
    grpc::OrderStream,
    order::{OrderRecord, OrderState},
    watch::Watch,
};

/// Orders read per query while streaming search results.
const SEARCH_BATCH: i64 = 256;

/// Every matching order, read [`SEARCH_BATCH`] at a time (keyset paging, no
/// long transaction). The next batch is read only when the client has taken
/// the previous one, and not at all once it has gone away.
pub fn search_stream(
    pool: Db,
    customer: Option<String>,
    query: Option<String>,
    slot: Slot,
) -> OrderStream {
    struct State {
        _slot: Slot,
        pool: Db,
        customer: Option<String>,
        query: Option<String>,
        buffer: VecDeque<OrderRecord>,
        after: Option<db::SearchCursor>,
        exhausted: bool,
    }
    let state = State {
        _slot: slot,
        pool,
        customer,
        query,
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
                st.query.as_deref(),
                st.after,
                SEARCH_BATCH,
                db::Direction::Oldest,
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

/// The order now, then after each status change, until it is final, the
/// server shuts down or `lifetime` passes (the client watches again).
pub fn watch_stream(
    first: OrderRecord,
    watch: Watch,
    lifetime: Duration,
    stopping: CancellationToken,
) -> OrderStream {
    struct State {
        watch: Watch,
        stopping: CancellationToken,
        ends: tokio::time::Instant,
        next: Option<OrderRecord>,
        last: Option<OrderState>,
    }
    let state = State {
        watch,
        stopping,
        ends: tokio::time::Instant::now() + lifetime,
        next: Some(first),
        last: None,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(record) = st.next.take() {
                let status = record.order.status;
                if st.last != Some(status) {
                    st.last = Some(status);
                    return Some((Ok(Order::from(record)), st));
                }
            }
            if st.last.is_some_and(OrderState::is_final) {
                return None;
            }
            tokio::select! {
                changed = st.watch.latest.changed() => if changed.is_err() { return None },
                () = st.stopping.cancelled() => return None,
                () = tokio::time::sleep_until(st.ends) => return None,
            }
            st.next = st.watch.latest.borrow_and_update().as_deref().cloned();
        }
    }))
}
