//! Unkey's v1 identities API (`src/routes/v1/`).

mod identities;

use reqwest::Method;
use serde_json::Value;

use crate::harness::{ApiResponse, TestServer};

/// A v1 request: `GET /v1/<operation>?<query>` or `POST /v1/<operation>` with a JSON body, with `key` (sent
/// as `Bearer <key>`) when given.
pub async fn v1(server: &TestServer, method: Method, operation: &str, key: Option<&str>, input: &Value) -> ApiResponse {
    let url = format!("{}/v1/{operation}", server.base_url);
    let client = reqwest::Client::new();
    let mut request = if method == Method::GET {
        let query: Vec<(String, String)> = input
            .as_object()
            .map(|fields| {
                fields
                    .iter()
                    .map(|(name, value)| (name.clone(), value.as_str().map_or(value.to_string(), str::to_owned)))
                    .collect()
            })
            .unwrap_or_default();
        client.get(url).query(&query)
    } else {
        client.post(url).json(input)
    };
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    server.send(request).await
}

/// Asserts a v1 error: its status, `code`, `message`, the docs URL of its code, and the request id that the
/// `Unkey-Request-Id` header also carries.
pub fn assert_v1_error(response: &ApiResponse, status: u16, code: &str, message: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    let error = &response.body["error"];
    assert_eq!(error["code"], code, "{}", response.body);
    assert_eq!(error["message"], message, "{}", response.body);
    assert_eq!(error["docs"], format!("https://unkey.dev/docs/api-reference/errors/code/{code}"));
    assert_eq!(error["requestId"], response.headers["unkey-request-id"].to_str().unwrap(), "{}", response.body);
    let fields: Vec<&String> = error.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["code", "docs", "message", "requestId"], "v1's four fields, in v1's order");
}
