//! A small HTTP client for the web shop that keeps cookies like a browser
//! and does not follow redirects (tests assert them), with helpers for the
//! shop's forms (CSRF tokens) and accounts.

use std::{collections::HashMap, sync::Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

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
        let end = self.body[start..]
            .find('"')
            .expect("the token's closing quote")
            + start;
        self.body[start..end].to_owned()
    }

    /// Where a redirect goes.
    pub fn location(&self) -> String {
        self.headers
            .get(http::header::LOCATION)
            .expect("a redirect")
            .to_str()
            .expect("an ASCII Location")
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
    headers: Mutex<Vec<(String, String)>>,
}

impl Web {
    pub fn new(base: &str) -> Web {
        Web {
            base: base.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookies: Mutex::default(),
            headers: Mutex::default(),
        }
    }

    /// Sends `name: value` on every following request (e.g. `traceparent`).
    pub fn set_header(&self, name: &str, value: &str) {
        self.headers
            .lock()
            .expect("headers lock")
            .push((name.to_owned(), value.to_owned()));
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().expect("cookie jar").get(name).cloned()
    }

    /// `request` with this client's cookies and headers.
    fn prepared(&self, request: http::request::Builder, body: Bytes) -> http::Request<Full<Bytes>> {
        let cookies = self
            .cookies
            .lock()
            .expect("cookie jar")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = request;
        for (name, value) in self.headers.lock().expect("headers lock").iter() {
            request = request.header(name.as_str(), value.as_str());
        }
        if !cookies.is_empty() {
            request = request.header(http::header::COOKIE, cookies);
        }
        request.body(Full::new(body)).expect("a valid request")
    }

    /// GETs `path` and returns the response as soon as its head arrives,
    /// its body unread (a live stream, say).
    pub async fn open(&self, path: &str) -> http::Response<hyper::body::Incoming> {
        let request = http::Request::get(format!("{}{path}", self.base));
        self.client
            .request(self.prepared(request, Bytes::new()))
            .await
            .expect("HTTP request")
    }

    async fn send(&self, request: http::request::Builder, body: Bytes) -> Page {
        let response = self
            .client
            .request(self.prepared(request, body))
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all(http::header::SET_COOKIE) {
            let set = set.to_str().expect("an ASCII Set-Cookie");
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').expect("a name=value cookie");
            let mut jar = self.cookies.lock().expect("cookie jar");
            if attributes.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the response body")
            .to_bytes();
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
        let body = serde_urlencoded::to_string(fields).expect("form fields encode");
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
