//! A whole shop per test (productinfo, order and storefront in-process, each
//! on fresh databases), and a small HTTP client that keeps cookies like a
//! browser, to drive the pages.

use std::{collections::HashMap, path::PathBuf, sync::Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use shop_proto::ecommerce::{Money, Product, product_info_client::ProductInfoClient};
pub use shop_testkit::services::Running;
use shop_testkit::{Bearer, admin_token, services};

/// The first admin's credentials in every test shop.
pub const ADMIN_EMAIL: &str = "boss@shop.test";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub struct Shop {
    pub productinfo: Running,
    pub order: Option<Running>,
    pub storefront: Running,
    _dir: tempfile::TempDir,
}

impl Shop {
    pub async fn start() -> Shop {
        Self::start_with(|_| {}).await
    }

    /// A shop whose storefront configuration `tweak` may change.
    pub async fn start_with(tweak: impl FnOnce(&mut storefront::Config)) -> Shop {
        let productinfo = services::productinfo().await;
        let order = services::order_with(services::order_config(
            shop_testkit::fresh_database("order").await,
            &productinfo.addr.to_string(),
        ))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("admin-password");
        std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n")).unwrap();
        let mut config = services::storefront_config(
            shop_testkit::fresh_database("storefront").await,
            &productinfo.addr.to_string(),
            &order.addr.to_string(),
        );
        config.admin_email = Some(ADMIN_EMAIL.into());
        config.admin_password_file = Some(password_file);
        tweak(&mut config);
        let storefront = services::storefront_with(config).await;
        Shop {
            productinfo,
            order: Some(order),
            storefront,
            _dir: dir,
        }
    }

    /// The web shop's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.storefront.http_addr.unwrap())
    }

    /// A new visitor (no cookies yet).
    pub fn visitor(&self) -> Web {
        Web::new(&self.url())
    }

    /// Adds a USD product to the catalog as admin; returns its id.
    pub async fn add_product(&self, name: &str, cents: i64, stock: i64) -> String {
        ProductInfoClient::with_interceptor(
            self.productinfo.channel.clone(),
            Bearer::new(&admin_token()),
        )
        .add_product(Product {
            name: name.into(),
            description: format!("All about {name}."),
            unit_price: Some(Money::from_minor("USD", cents)),
            stock,
            category: "kitchen".into(),
            ..Default::default()
        })
        .await
        .expect("add product")
        .into_inner()
        .value
    }

    pub async fn storefront_db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.storefront.database_url)
            .await
            .unwrap()
    }
}

/// A response, read whole.
pub struct Page {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Page {
    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let marker = "name=\"_csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }

    /// Where a redirect goes.
    pub fn location(&self) -> String {
        self.headers
            .get(http::header::LOCATION)
            .expect("a redirect")
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The value of `data-testid="<id>"`'s element text (first one).
    pub fn testid(&self, id: &str) -> Option<String> {
        let marker = format!("data-testid=\"{id}\"");
        let at = self.body.find(&marker)?;
        let start = self.body[at..].find('>')? + at + 1;
        let end = self.body[start..].find('<')? + start;
        Some(self.body[start..end].trim().to_owned())
    }
}

/// An HTTP client with a cookie jar, not following redirects.
pub struct Web {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    cookies: Mutex<HashMap<String, String>>,
}

impl Web {
    pub fn new(base: &str) -> Web {
        Web {
            base: base.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookies: Mutex::default(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    async fn send(&self, request: http::request::Builder, body: Bytes) -> Page {
        let cookies = self
            .cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = request;
        if !cookies.is_empty() {
            request = request.header(http::header::COOKIE, cookies);
        }
        let response = self
            .client
            .request(request.body(Full::new(body)).unwrap())
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all(http::header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut jar = self.cookies.lock().unwrap();
            if attributes.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(
            http::Request::get(format!("{}{path}", self.base)),
            Bytes::new(),
        )
        .await
    }

    /// POSTs a form (fields sent as given: add `_csrf` yourself).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(
            http::Request::post(format!("{}{path}", self.base)).header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            ),
            Bytes::from(body),
        )
        .await
    }

    /// GETs `form_page` for a CSRF token, then POSTs `fields` with it.
    pub async fn submit(&self, form_page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(form_page).await.csrf();
        let mut all = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    /// Registers and logs in a new customer.
    pub async fn register(&self, email: &str) -> Page {
        let page = self
            .submit(
                "/register",
                "/register",
                &[
                    ("name", "Test Person"),
                    ("email", email),
                    ("password", "a long enough password"),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "registered: {}", page.body);
        page
    }

    /// Logs in.
    pub async fn login(&self, email: &str, password: &str) -> Page {
        self.submit(
            "/login",
            "/login",
            &[("email", email), ("password", password), ("next", "/")],
        )
        .await
    }
}

/// Where browser screenshots go for inspection: target/browser-screenshots.
pub fn screenshot_dir() -> PathBuf {
    let dir = shop_testkit::workspace_root().join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
