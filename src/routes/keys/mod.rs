//! The `keys.*` operations.

mod create_key;

pub use create_key::create_key;
