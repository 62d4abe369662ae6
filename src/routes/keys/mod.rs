//! The `keys.*` operations.

mod create_key;
mod delete_key;
mod get_key;
mod whoami;

pub use create_key::create_key;
pub use delete_key::delete_key;
pub use get_key::{KeyResponseData, get_key};
pub use whoami::whoami;

use crate::error::{ApiError, ErrorCode, ValidationError};

fn key_not_found() -> ApiError {
    ApiError::new(ErrorCode::ApiKeyNotFound, "We could not find the requested key.")
}

/// What Unkey's keys API takes and Sigil does not yet: refused by name, never silently ignored.
fn not_supported(location: &str, message: &str) -> ApiError {
    ApiError::invalid_input(message, vec![ValidationError::new(location, message)])
}
