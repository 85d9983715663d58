//! A browser without JavaScript, for the tests of the edge's server-
//! rendered pages (the buyer's and the operator console): plain GETs and
//! form posts with a cookie jar and a client address, redirects returned
//! as they come so a test can look at each one.

use crate::edge::EdgeStack;
use reqwest::header::HeaderMap;
use std::collections::BTreeMap;

/// A cookie jar and an address, in front of one edge.
pub struct Browser<'a> {
    stack: &'a EdgeStack,
    /// Its HTTP client (no redirects followed), for requests a form can't
    /// make; send them through [`Browser::send`] to keep the cookies.
    pub http: reqwest::Client,
    /// The cookies it holds, by name (tests may look, or plant one).
    pub cookies: BTreeMap<String, String>,
    /// Its address (`CF-Connecting-IP`).
    pub ip: &'static str,
}

/// A page as the browser got it.
pub struct Page {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl Page {
    /// The `Location` header (empty without one).
    pub fn location(&self) -> &str {
        self.header("location")
    }

    /// A header as text (empty without it).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value of the first `name="{field}" value="…"` of the page.
    pub fn field(&self, field: &str) -> String {
        let marker = format!("name=\"{field}\" value=\"");
        self.body
            .split(&marker)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no field {field} in {}", self.body))
            .to_owned()
    }

    /// An HTML page with a heading, never an API's JSON error.
    pub fn assert_html(&self) {
        assert!(
            self.header("content-type").starts_with("text/html"),
            "{}",
            self.header("content-type")
        );
        assert!(self.body.contains("<h1"), "{}", self.body);
        assert!(!self.body.contains("{\"error\""), "{}", self.body);
    }
}

impl<'a> Browser<'a> {
    /// A browser with no cookies, from `ip`.
    pub fn new(stack: &'a EdgeStack, ip: &'static str) -> Self {
        Self {
            stack,
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
            ip,
        }
    }

    /// The `Cookie` header it sends.
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sends `req` from this browser: its address and cookies, and any
    /// cookie the answer sets kept.
    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let resp = req
            .header("CF-Connecting-IP", self.ip)
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().expect("cookie");
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = resp.text().await.expect("body");
        Page {
            status,
            headers,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.stack.url));
        self.send(req).await
    }

    /// A form post from one of the site's own pages (the browser sends
    /// `Origin`).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.stack.url.clone();
        self.post_from(&origin, path, form).await
    }

    /// A form post from a page of `origin` (another site's, for the CSRF
    /// tests), with this browser's cookies.
    pub async fn post_from(&mut self, origin: &str, path: &str, form: &[(&str, &str)]) -> Page {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = self
            .http
            .post(format!("{}{path}", self.stack.url))
            .header("Origin", origin)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }
}

/// Percent-encodes a form value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
