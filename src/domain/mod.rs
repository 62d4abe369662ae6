//! Pure types and rules: what a valid identity, ratelimit, API, key, permission or root key is. No I/O.

pub mod api;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod key;
pub mod permission;
pub mod ratelimit;
pub mod root_key;
pub mod workspace;
