//! `ecommerce.ProductInfo`: checks who is calling and what they sent, then
//! hands over to [`crate::db`]. Who may call what is written next to each
//! method in `proto/ecommerce/product_info.proto`.

use std::{collections::VecDeque, pin::Pin, sync::Arc};

use futures::Stream;
use shop_proto::ecommerce::{
    AdjustStockRequest, GetProductsRequest, GetProductsResponse, ListProductsRequest,
    ListProductsResponse, Product, ProductId, ReleaseStockRequest, Reservation,
    ReserveStockRequest, SearchProductsRequest, product_info_server::ProductInfo,
};
use shop_runtime::{
    auth::{Principal, Role},
    error::FieldViolations,
};
use shop_runtime::{
    pg::{Lsn, Reads},
    slots::{Slot, Slots},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    db,
    error::Error,
    product::{self, Cursor, Filter, MAX_BATCH, NewProduct},
    reservation::{check_order_id, merge_lines},
};

/// Rows fetched per round trip while streaming search results.
const SEARCH_BATCH: i64 = 100;
const ANY_ROLE: &[Role] = &[Role::Customer, Role::Admin, Role::Service];

/// The catalog service.
#[derive(Debug, Clone)]
pub(crate) struct ProductInfoService {
    reads: Reads,
    default_currency: Arc<str>,
    reserve_callers: Arc<[String]>,
    searches: Slots,
}

impl ProductInfoService {
    /// A service over `reads` (writes on its primary), reading legacy
    /// prices in `default_currency`,
    /// letting the service tokens of `reserve_callers` reserve stock, and
    /// streaming searches while `searches` has a slot.
    pub fn new(
        reads: Reads,
        default_currency: &str,
        reserve_callers: Vec<String>,
        searches: Slots,
    ) -> Self {
        Self {
            reads,
            default_currency: default_currency.into(),
            reserve_callers: reserve_callers.into(),
            searches,
        }
    }
}

impl ProductInfoService {
    /// `response` of a write an admin will read back (a product added, its
    /// stock changed), with where the primary's WAL is now: the shop's
    /// clients send it with their next reads, which then see the write
    /// even on a replica (see [`shop_runtime::pg::replica`]).
    /// Reservations do not carry it: the order service reads prices, not
    /// the stock its reservations changed, and would otherwise keep every
    /// read of its own on the primary.
    async fn written<T>(&self, mut response: Response<T>) -> Result<Response<T>, Status> {
        if let Some(lsn) = self.reads.written().await {
            lsn.stamp_written(response.metadata_mut());
        }
        Ok(response)
    }
}

type ProductStream = Pin<Box<dyn Stream<Item = Result<Product, Status>> + Send>>;

#[tonic::async_trait]
impl ProductInfo for ProductInfoService {
    async fn add_product(&self, request: Request<Product>) -> Result<Response<ProductId>, Status> {
        let caller = Principal::of(&request)?;
        caller.require(&[Role::Admin])?;
        let new = NewProduct::from_proto(request.into_inner(), &self.default_currency)
            .map_err(Error::from)?;
        let row = db::insert_product(self.reads.primary(), &new).await?;
        tracing::info!(product.id = %row.id, by = %caller.subject, "product added");
        self.written(Response::new(ProductId {
            value: row.id.to_string(),
        }))
        .await
    }

    async fn get_product(&self, request: Request<ProductId>) -> Result<Response<Product>, Status> {
        Principal::of(&request)?.require(ANY_ROLE)?;
        let after = Lsn::read_after(request.metadata());
        let mut v = FieldViolations::default();
        let value = &request.get_ref().value;
        let id = product::parse_id(&mut v, "value", value);
        v.finish()?;
        let id = id.ok_or_else(|| product::not_found(value))?;
        let reader = self.reads.at(after);
        let mut found = db::get_product(&reader, id).await?;
        if found.is_none() && reader.used_replica() {
            // Perhaps added a moment ago: the primary knows.
            found = db::get_product(&self.reads.on_primary(), id).await?;
        }
        match found {
            Some(row) => Ok(Response::new(row.into())),
            None => Err(product::not_found(value).into()),
        }
    }

    async fn get_products(
        &self,
        request: Request<GetProductsRequest>,
    ) -> Result<Response<GetProductsResponse>, Status> {
        Principal::of(&request)?.require(ANY_ROLE)?;
        let after = Lsn::read_after(request.metadata());
        let GetProductsRequest { ids, names } = request.into_inner();
        let mut v = FieldViolations::default();
        if ids.len() + names.len() > MAX_BATCH {
            v.add("ids", format!("at most {MAX_BATCH} ids and names together"));
        }
        let uuids: Vec<Option<Uuid>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| product::parse_id(&mut v, &format!("ids[{i}]"), id))
            .collect();
        v.finish()?;
        let known: Vec<Uuid> = uuids.iter().flatten().copied().collect();
        let reader = self.reads.at(after);
        let mut rows = db::get_products(&reader, &known, &names).await?;
        if reader.used_replica() && rows.len() < known.len() + names.len() {
            // Some may have been added a moment ago: the primary knows.
            rows = db::get_products(&self.reads.on_primary(), &known, &names).await?;
        }
        let missing = ids
            .iter()
            .zip(&uuids)
            .filter(|(_, uuid)| !rows.iter().any(|r| Some(r.id) == **uuid))
            .map(|(id, _)| id.clone())
            .chain(
                names
                    .iter()
                    .filter(|n| !rows.iter().any(|r| r.name == **n))
                    .cloned(),
            )
            .collect();
        Ok(Response::new(GetProductsResponse {
            products: rows.into_iter().map(Product::from).collect(),
            missing,
        }))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        Principal::of(&request)?.require(ANY_ROLE)?;
        let read_after = Lsn::read_after(request.metadata());
        let req = request.into_inner();
        let mut v = FieldViolations::default();
        let filter = Filter::new(&mut v, &req.query, &req.category);
        let size = product::page_size(&mut v, req.page_size);
        let after = Cursor::decode(&mut v, &req.page_token);
        v.finish()?;
        // One row more than asked tells whether another page exists.
        let mut rows = db::list_products(
            &self.reads.at(read_after),
            &filter,
            after.as_ref(),
            size + 1,
        )
        .await?;
        let next_page_token = if rows.len() as i64 > size {
            rows.truncate(size as usize);
            rows.last()
                .map(|found| Cursor::after(found).encode())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListProductsResponse {
            products: rows.into_iter().map(|f| Product::from(f.row)).collect(),
            next_page_token,
        }))
    }

    type searchProductsStream = ProductStream;

    async fn search_products(
        &self,
        request: Request<SearchProductsRequest>,
    ) -> Result<Response<Self::searchProductsStream>, Status> {
        Principal::of(&request)?.require(ANY_ROLE)?;
        let after = Lsn::read_after(request.metadata());
        let req = request.into_inner();
        let mut v = FieldViolations::default();
        let filter = Filter::new(&mut v, &req.query, &req.category);
        if req.limit < 0 {
            v.add("limit", "must not be negative (0 means no limit)");
        }
        v.finish()?;
        Ok(Response::new(search_stream(
            self.reads.clone(),
            after,
            filter,
            (req.limit > 0).then_some(req.limit),
            self.searches.take()?,
        )))
    }

    async fn adjust_stock(
        &self,
        request: Request<AdjustStockRequest>,
    ) -> Result<Response<Product>, Status> {
        let caller = Principal::of(&request)?;
        caller.require(&[Role::Admin])?;
        let req = request.into_inner();
        let mut v = FieldViolations::default();
        let id = product::parse_id(&mut v, "product_id", &req.product_id);
        if req.delta == 0 {
            v.add("delta", "must not be zero");
        } else if req.delta.unsigned_abs() > product::MAX_STOCK.unsigned_abs() {
            v.add(
                "delta",
                format!("must be at most {} either way", product::MAX_STOCK),
            );
        }
        let reason = req.reason.trim();
        v.check_text("reason", reason, 200, true);
        v.finish()?;
        let id = id.ok_or_else(|| product::not_found(&req.product_id))?;
        let row =
            db::adjust_stock(self.reads.primary(), id, req.delta, reason, &caller.subject).await?;
        tracing::info!(product.id = %id, delta = req.delta, stock = row.stock, by = %caller.subject, "stock adjusted");
        self.written(Response::new(row.into())).await
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<Response<Reservation>, Status> {
        Principal::of(&request)?.require_service(&self.reserve_callers)?;
        let req = request.into_inner();
        let mut v = FieldViolations::default();
        check_order_id(&mut v, &req.order_id);
        let lines = merge_lines(&mut v, &req.lines);
        v.finish()?;
        let reservation = db::reserve(self.reads.primary(), &req.order_id, &lines).await?;
        tracing::info!(order.id = %req.order_id, lines = lines.len(), "stock reserved");
        Ok(Response::new(reservation.into()))
    }

    async fn release_stock(
        &self,
        request: Request<ReleaseStockRequest>,
    ) -> Result<Response<Reservation>, Status> {
        Principal::of(&request)?.require_service(&self.reserve_callers)?;
        let req = request.into_inner();
        let mut v = FieldViolations::default();
        check_order_id(&mut v, &req.order_id);
        v.finish()?;
        let reservation = db::release(self.reads.primary(), &req.order_id).await?;
        tracing::info!(order.id = %req.order_id, "stock released");
        Ok(Response::new(reservation.into()))
    }
}

/// Streams every product matching `filter`, fetching [`SEARCH_BATCH`] rows
/// per query (keyset pagination, no long-lived transaction), so memory stays
/// bounded. The next batch is only fetched once the client has taken the
/// previous one (HTTP/2 flow control pushes back), and a client that goes
/// away stops it: the stream is dropped between batches. Each batch reads
/// on a close replica or the primary, seeing `after` (the caller's write).
fn search_stream(
    reads: Reads,
    after: Option<Lsn>,
    filter: Filter,
    limit: Option<i64>,
    slot: Slot,
) -> ProductStream {
    struct State {
        _slot: Slot,
        reads: Reads,
        read_after: Option<Lsn>,
        filter: Filter,
        buffer: VecDeque<db::Found>,
        after: Option<Cursor>,
        remaining: Option<i64>,
        exhausted: bool,
    }
    let state = State {
        _slot: slot,
        reads,
        read_after: after,
        filter,
        buffer: VecDeque::new(),
        after: None,
        remaining: limit,
        exhausted: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        if st.remaining == Some(0) {
            return None;
        }
        if st.buffer.is_empty() {
            if st.exhausted {
                return None;
            }
            let batch = st.remaining.map_or(SEARCH_BATCH, |r| r.min(SEARCH_BATCH));
            let reader = st.reads.at(st.read_after);
            match db::list_products(&reader, &st.filter, st.after.as_ref(), batch).await {
                Ok(rows) => {
                    st.exhausted = (rows.len() as i64) < batch;
                    st.after = rows.last().map(Cursor::after);
                    st.buffer = rows.into();
                }
                Err(e) => {
                    st.remaining = Some(0);
                    return Some((Err(Status::from(e)), st));
                }
            }
        }
        let row = st.buffer.pop_front()?;
        if let Some(r) = st.remaining.as_mut() {
            *r -= 1;
        }
        Some((Ok(Product::from(row.row)), st))
    }))
}
