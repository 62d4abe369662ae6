//! The `keys.*` operations: every status each can answer.

mod create_key;
