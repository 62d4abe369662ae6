//! The `apis.*` operations: the APIs that own keys.

mod create_api;
mod delete_api;
mod get_api;
mod list_keys;

pub use create_api::create_api;
pub use delete_api::delete_api;
pub use get_api::get_api;
pub use list_keys::list_keys;

use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiIdRequest {
    api_id: String,
}

fn api_not_found() -> ApiError {
    ApiError::new(ErrorCode::ApiNotFound, "The requested API does not exist or has been deleted.")
}
