//! The `keys.*` operations: every status each can answer.

mod create_key;
mod delete_key;
mod get_key;
mod whoami;
