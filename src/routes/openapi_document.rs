//! `GET /openapi.json`: the document every request body is validated against.

use axum::Json;
use serde_json::Value;

pub async fn openapi_document() -> Json<&'static Value> {
    Json(crate::openapi::document())
}
