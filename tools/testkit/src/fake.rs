//! A stand-in catalog for tests of what callers send it: it answers every
//! product id with a mug, reserves anything, and records the method and
//! the deadline (`grpc-timeout`) of each call it gets.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use shop_proto::ecommerce::{
    AdjustStockRequest, GetProductsRequest, GetProductsResponse, ListProductsRequest,
    ListProductsResponse, Money, Product, ProductId, ReleaseStockRequest, Reservation,
    ReservationState, ReserveStockRequest, ReservedLine, SearchProductsRequest,
    product_info_server::{ProductInfo, ProductInfoServer, SERVICE_NAME},
};
use shop_runtime::{
    health::Serving,
    server::{ServeOptions, Server},
    service::{Endpoints, Listeners},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Status, service::Routes};

/// The product every id names: a mug at 1 USD.
fn mug(id: String) -> Product {
    Product {
        id,
        name: "Mug".into(),
        unit_price: Some(Money::from_minor("USD", 100)),
        stock: Some(1000),
        ..Default::default()
    }
}

/// Each call's method and the deadline it came with.
pub type Seen = Vec<(String, Option<Duration>)>;

/// A stand-in catalog that records the deadline of each call it gets.
#[derive(Clone, Default)]
pub struct RecordingCatalog {
    timeouts: Arc<Mutex<Seen>>,
}

impl RecordingCatalog {
    /// Serves a new one on port 0, SERVING, through the shop's own server
    /// code; its address, and the recorder.
    pub async fn spawn() -> (SocketAddr, RecordingCatalog) {
        let catalog = RecordingCatalog::default();
        let server = Server::new("fake-catalog", &[shop_proto::reflection::PRODUCT_INFO]);
        server.health.set("", Serving::Serving);
        server.health.set(SERVICE_NAME, Serving::Serving);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listeners = Listeners {
            grpc: listener,
            web: None,
            metrics: None,
            health: None,
        };
        let endpoints = Endpoints::grpc(Routes::new(ProductInfoServer::new(catalog.clone())));
        let options = ServeOptions {
            drain_delay: Duration::ZERO,
            grace: Duration::from_secs(1),
            addr_file: None,
            limits: Default::default(),
            web_max_connections: 16,
            tls: None,
            faults: None,
        };
        tokio::spawn(server.serve(
            listeners,
            endpoints,
            options,
            futures::future::pending(),
            CancellationToken::new(),
        ));
        (addr, catalog)
    }

    /// Every call so far: its method and the deadline it came with.
    pub fn seen(&self) -> Seen {
        self.timeouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record<T>(&self, method: &str, request: &tonic::Request<T>) {
        let timeout = shop_runtime::deadline::grpc_timeout(request.metadata().as_ref());
        self.timeouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((method.to_owned(), timeout));
    }
}

#[tonic::async_trait]
impl ProductInfo for RecordingCatalog {
    async fn add_product(
        &self,
        _: tonic::Request<Product>,
    ) -> Result<tonic::Response<ProductId>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn get_product(
        &self,
        request: tonic::Request<ProductId>,
    ) -> Result<tonic::Response<Product>, Status> {
        self.record("getProduct", &request);
        Ok(tonic::Response::new(mug(request.into_inner().value)))
    }
    async fn get_products(
        &self,
        request: tonic::Request<GetProductsRequest>,
    ) -> Result<tonic::Response<GetProductsResponse>, Status> {
        self.record("getProducts", &request);
        let products = request.into_inner().ids.into_iter().map(mug).collect();
        Ok(tonic::Response::new(GetProductsResponse {
            products,
            missing: vec![],
        }))
    }
    async fn list_products(
        &self,
        _: tonic::Request<ListProductsRequest>,
    ) -> Result<tonic::Response<ListProductsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    type searchProductsStream = futures::stream::Empty<Result<Product, Status>>;
    async fn search_products(
        &self,
        _: tonic::Request<SearchProductsRequest>,
    ) -> Result<tonic::Response<Self::searchProductsStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn adjust_stock(
        &self,
        _: tonic::Request<AdjustStockRequest>,
    ) -> Result<tonic::Response<Product>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn reserve_stock(
        &self,
        request: tonic::Request<ReserveStockRequest>,
    ) -> Result<tonic::Response<Reservation>, Status> {
        self.record("reserveStock", &request);
        let request = request.into_inner();
        Ok(tonic::Response::new(Reservation {
            order_id: request.order_id,
            state: ReservationState::Held as i32,
            lines: request
                .lines
                .into_iter()
                .map(|l| ReservedLine {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    unit_price: Some(Money::from_minor("USD", 100)),
                    name: "Mug".into(),
                })
                .collect(),
            create_time: None,
        }))
    }
    async fn release_stock(
        &self,
        request: tonic::Request<ReleaseStockRequest>,
    ) -> Result<tonic::Response<Reservation>, Status> {
        self.record("releaseStock", &request);
        Ok(tonic::Response::new(Reservation::default()))
    }
}
