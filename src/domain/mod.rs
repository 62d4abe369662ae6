//! Pure types and rules: what a valid identity, ratelimit, permission or root key is. No I/O.

pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod permission;
pub mod root_key;
pub mod workspace;
