//! The `identities.*` operations.

mod create_identity;
mod delete_identity;
mod get_identity;
mod list_identities;
mod list_keys;
mod update_identity;
mod upsert_identity;

pub use create_identity::create_identity;
pub use delete_identity::delete_identity;
pub use get_identity::get_identity;
pub use list_identities::list_identities;
pub use list_keys::list_keys;
pub use update_identity::update_identity;
pub use upsert_identity::upsert_identity;
