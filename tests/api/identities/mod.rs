mod create_identity;
mod delete_identity;
mod get_identity;
mod list_identities;
mod list_keys;
mod update_identity;
mod upsert_identity;
