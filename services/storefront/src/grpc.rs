//! `ecommerce.Storefront` over gRPC: the web shop's accounts, carts and
//! checkout for scripts and grpcurl. `register` and `login` need no token;
//! everything else needs one the storefront issued (see `login`).

use std::time::Duration;

use shop_proto::ecommerce::{
    Cart, CartItemRequest, CheckoutRequest, GetCartRequest, LoginRequest, Order, RegisterRequest,
    Session, User as UserMessage, storefront_server::Storefront,
};
use shop_runtime::pg::Db;
use shop_runtime::{
    auth::{Principal, Role, Signer},
    deadline::Deadline,
    error::FieldViolations,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    accounts::{Accounts, User},
    cart, checkout,
    db::{self, CartOwner},
    error::Error,
    upstream::Upstreams,
};

/// How long a token from `login` lasts: an hour, then the client logs in
/// again (a token cannot be revoked, so it should not outlive its use).
const SESSION_TTL: Duration = Duration::from_secs(3600);

/// The storefront's gRPC API.
pub struct StorefrontService {
    pool: Db,
    accounts: Accounts,
    upstreams: Upstreams,
    signer: Signer,
}

impl StorefrontService {
    pub fn new(accounts: Accounts, upstreams: Upstreams, signer: Signer) -> Self {
        Self {
            pool: accounts.db.clone(),
            accounts,
            upstreams,
            signer,
        }
    }

    fn session(&self, user: User) -> Result<Session, Status> {
        let token = self
            .signer
            .sign(
                &user.id.to_string(),
                user.role,
                &["storefront", "order", "productinfo"],
                SESSION_TTL,
            )
            .map_err(|e| shop_runtime::error::internal(&e))?;
        let expires = chrono::Utc::now() + SESSION_TTL;
        Ok(Session {
            token,
            expire_time: Some(prost_types::Timestamp {
                seconds: expires.timestamp(),
                nanos: 0,
            }),
            user: Some(UserMessage {
                id: user.id.to_string(),
                email: user.email,
                name: user.name,
                role: user.role.to_string(),
            }),
        })
    }

    /// The account behind a request's token, as it is now in the database
    /// (a removed account or a changed role shows at once).
    async fn caller<T>(&self, request: &Request<T>) -> Result<User, Status> {
        let principal = Principal::of(request)?;
        principal.require(&[Role::Customer, Role::Admin])?;
        let id = Uuid::parse_str(&principal.subject)
            .map_err(|_| Status::permission_denied("this token is not a shop account's"))?;
        match db::get_user(&self.pool, id).await.map_err(Status::from)? {
            Some(row) => Ok(row.into()),
            None => Err(Status::unauthenticated("the account no longer exists")),
        }
    }

    async fn priced(&self, deadline: Deadline, user: &User) -> Result<Response<Cart>, Status> {
        let cart = cart::priced(
            &self.pool,
            &self.upstreams,
            deadline,
            &CartOwner::User(user.id),
        )
        .await?;
        Ok(Response::new(cart.into()))
    }
}

/// Where a call comes from, for rate limits: the connection's peer (gRPC
/// clients reach the storefront without a proxy that would forward theirs).
fn client<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn parse_item(request: &CartItemRequest, min: i64) -> Result<(Uuid, i32), Status> {
    let mut v = FieldViolations::default();
    let id = Uuid::parse_str(request.product_id.trim()).unwrap_or_else(|_| {
        v.add("product_id", "must be a product id (UUID)");
        Uuid::nil()
    });
    if !(min..=99).contains(&request.quantity) {
        v.add("quantity", format!("must be between {min} and 99"));
    }
    v.finish()?;
    Ok((id, request.quantity as i32))
}

#[tonic::async_trait]
impl Storefront for StorefrontService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<Session>, Status> {
        let client = client(&request);
        let req = request.into_inner();
        let user = self
            .accounts
            .register(&req.email, &req.password, &req.name, &client)
            .await?;
        Ok(Response::new(self.session(user)?))
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<Session>, Status> {
        let client = client(&request);
        let req = request.into_inner();
        let user = self
            .accounts
            .login(&req.email, &req.password, &client)
            .await?;
        Ok(Response::new(self.session(user)?))
    }

    async fn get_cart(&self, request: Request<GetCartRequest>) -> Result<Response<Cart>, Status> {
        let user = self.caller(&request).await?;
        self.priced(Deadline::of(&request), &user).await
    }

    async fn add_to_cart(
        &self,
        request: Request<CartItemRequest>,
    ) -> Result<Response<Cart>, Status> {
        let deadline = Deadline::of(&request);
        let user = self.caller(&request).await?;
        let (product, quantity) = parse_item(request.get_ref(), 1)?;
        if self
            .upstreams
            .product(deadline, &product.to_string())
            .await?
            .is_none()
        {
            return Err(Error::NotFound(format!("product {product}")).into());
        }
        let owner = CartOwner::User(user.id);
        db::change_cart(&self.pool, &owner, product, db::CartChange::Add(quantity)).await?;
        self.priced(deadline, &user).await
    }

    async fn set_cart_item(
        &self,
        request: Request<CartItemRequest>,
    ) -> Result<Response<Cart>, Status> {
        let deadline = Deadline::of(&request);
        let user = self.caller(&request).await?;
        let (product, quantity) = parse_item(request.get_ref(), 0)?;
        // Removing a product the catalog dropped is fine; adding one it
        // does not have is not.
        if quantity > 0
            && self
                .upstreams
                .product(deadline, &product.to_string())
                .await?
                .is_none()
        {
            return Err(Error::NotFound(format!("product {product}")).into());
        }
        let owner = CartOwner::User(user.id);
        db::change_cart(&self.pool, &owner, product, db::CartChange::Set(quantity)).await?;
        self.priced(deadline, &user).await
    }

    async fn checkout(&self, request: Request<CheckoutRequest>) -> Result<Response<Order>, Status> {
        let deadline = Deadline::of(&request);
        let user = self.caller(&request).await?;
        let req = request.into_inner();
        let key = if req.idempotency_key.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            req.idempotency_key
        };
        let id = checkout::checkout(
            &self.pool,
            &self.upstreams,
            deadline,
            &user,
            &req.destination,
            &key,
        )
        .await?;
        match self.upstreams.order(deadline, &user, &id).await? {
            Some(order) => Ok(Response::new(order)),
            None => Err(Status::internal("the order just placed cannot be read")),
        }
    }
}
