//! The `apis.*` operations: every status each can answer.

mod create_api;
mod delete_api;
mod get_api;
mod list_keys;
