//! The edge's one error type: every refusal the Worker makes itself, with
//! its HTTP status, stable code and the headers that go with it. The body
//! is `shared::ErrorBody` (`{"error":{"code","message"}}`), like the
//! region core's, so clients need one parser. Messages never carry
//! internal error text: causes are logged by the caller.

use shared::admission::PassError;
use shared::ErrorBody;

/// An error response produced at the edge (nothing was forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    /// HTTP status.
    pub status: u16,
    /// Stable snake_case code clients branch on.
    pub code: &'static str,
    /// For humans; no internal detail.
    pub message: String,
    /// Extra headers (`Retry-After`, `RateLimit-*`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
}

impl EdgeError {
    /// An error without extra headers.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds `Retry-After` (whole seconds, at least 1).
    pub fn retry_after(self, secs: u64) -> Self {
        self.with_header("Retry-After", secs.max(1).to_string())
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&ErrorBody::new(self.code, self.message.clone()))
            .unwrap_or_else(|_| String::from(r#"{"error":{"code":"internal","message":""}}"#))
    }

    /// 404 `no_route`: the edge serves no such path.
    pub fn no_route() -> Self {
        Self::new(404, "no_route", "no such route")
    }

    /// 405 `method_not_allowed`, with `Allow`.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self::new(405, "method_not_allowed", "method not allowed on this path")
            .with_header("Allow", allow)
    }

    /// 404 `unknown_city`: the city is not in the routing table.
    pub fn unknown_city(city: &str) -> Self {
        let shown: String = city.chars().take(16).collect();
        Self::new(
            404,
            "unknown_city",
            format!("no region serves the city {shown:?}"),
        )
    }

    /// 400 `invalid_show_id` (same code as the region core).
    pub fn invalid_show_id() -> Self {
        Self::new(400, "invalid_show_id", "the show id must be a UUID")
    }

    /// 400 `invalid_movie_id`.
    pub fn invalid_movie_id() -> Self {
        Self::new(400, "invalid_movie_id", "the movie id must be a UUID")
    }

    /// 403 `csrf_refused`: a form post without our page's token or from
    /// another origin.
    pub fn csrf_refused() -> Self {
        Self::new(
            403,
            "csrf_refused",
            "this form was not sent from our page; reload the page and try again",
        )
    }

    /// 404 `unknown_show`: the city's region has no such show.
    pub fn unknown_show(show: &str) -> Self {
        Self::new(404, "unknown_show", format!("no show {show} in that city"))
    }

    /// 400 `non_canonical_id`: a UUID in another spelling than the
    /// canonical one (lowercase, hyphenated), which the message gives.
    pub fn non_canonical_id(canonical: &str) -> Self {
        Self::new(
            400,
            "non_canonical_id",
            format!("ids are written in lowercase with hyphens: use {canonical}"),
        )
    }

    /// 400 `invalid_hold_id` (same code as the region core).
    pub fn invalid_hold_id() -> Self {
        Self::new(400, "invalid_hold_id", "the hold id must be a UUID")
    }

    /// 400 `bad_query` (same code as the region core).
    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(400, "bad_query", message)
    }

    /// 400 `malformed_json`.
    pub fn malformed_json() -> Self {
        Self::new(400, "malformed_json", "the request body is not valid JSON")
    }

    /// 413 `body_too_large`.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 422 `invalid_body`: valid JSON of the wrong shape.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        Self::new(422, "invalid_body", message)
    }

    /// 401 `unauthorized` (same code as the region core).
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer …)",
        )
        .with_header("WWW-Authenticate", "Bearer")
    }

    /// 403 `forbidden`: a user token on an operator endpoint.
    pub fn forbidden() -> Self {
        Self::new(403, "forbidden", "this endpoint needs an operator token")
    }

    /// 403 `denied`: the caller is on the deny list.
    pub fn denied() -> Self {
        Self::new(403, "denied", "requests from this client are not accepted")
    }

    /// 403 `pass_required`: a hold on a flash-sale show without a pass.
    pub fn pass_required() -> Self {
        Self::new(
            403,
            "pass_required",
            "this show is in a flash sale: join the waiting room to get an admission pass",
        )
    }

    /// 403 `pass_*`: the pass the caller sent is not good for this hold.
    pub fn pass(e: PassError) -> Self {
        Self::new(403, e.code(), e.to_string())
    }

    /// 404 `unknown_sale`: no waiting room is configured for this show.
    pub fn unknown_sale() -> Self {
        Self::new(
            404,
            "unknown_sale",
            "no flash sale is configured for this show",
        )
    }

    /// 409 `sold_out`: the edge knows the show has no free seat.
    pub fn sold_out() -> Self {
        Self::new(409, "sold_out", "this show is sold out")
    }

    /// 503 `region_unavailable`: the city's region core is down (breaker
    /// open, timeout or unreachable).
    pub fn region_unavailable(retry_after_s: u64) -> Self {
        Self::new(
            503,
            "region_unavailable",
            "this city's booking service is unavailable, retry later",
        )
        .retry_after(retry_after_s)
    }

    /// 404 `no_catalog`: this deployment has no global catalog
    /// (`CATALOG_URL` is not set).
    pub fn no_catalog() -> Self {
        Self::new(
            404,
            "no_catalog",
            "this deployment has no global catalog: titles are per city (/v1/c/{city}/…)",
        )
    }

    /// 503 `payment_pending`: the region did not answer a checkout in
    /// time; the charge may or may not have happened. The same code and
    /// remedy as the region's own: retry with the same Idempotency-Key.
    pub fn payment_pending() -> Self {
        Self::new(
            503,
            "payment_pending",
            "the payment's outcome is not known yet; retry with the same Idempotency-Key",
        )
        .retry_after(2)
    }

    /// 503 `edge_state_unavailable`: Upstash is unreachable and the route
    /// needs it (a fail-closed limit, or the waiting room).
    pub fn edge_state_unavailable() -> Self {
        Self::new(
            503,
            "edge_state_unavailable",
            "the edge cannot reach its state store, retry later",
        )
        .retry_after(1)
    }

    /// 500 `internal`.
    pub fn internal() -> Self {
        Self::new(500, "internal", "an internal error occurred")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_shared_error_shape() {
        let e = EdgeError::unknown_city("xyz");
        assert_eq!(e.status, 404);
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], "unknown_city");
        assert!(v["error"]["message"].as_str().unwrap().contains("xyz"));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let e = EdgeError::region_unavailable(0);
        assert_eq!(e.headers, vec![("Retry-After", "1".to_string())]);
        let p = EdgeError::pass(PassError::Expired);
        assert_eq!((p.status, p.code), (403, "pass_expired"));
    }

    #[test]
    fn an_unknown_city_is_not_echoed_at_length() {
        let e = EdgeError::unknown_city(&"a".repeat(500));
        assert!(e.message.len() < 60);
    }
}
