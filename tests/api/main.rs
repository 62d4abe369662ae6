//! The black-box API suite: real HTTP against a real server on a real database, every test on SQLite and
//! on PostgreSQL. Folders mirror the routes; one module per status code (`cargo test status_409`).

mod apis;
mod backup;
mod chaos_proxy;
mod database_outage;
mod disk_full;
mod error_pages;
mod harness;
mod hostile_input;
mod idempotency;
mod identities;
mod identities_import_export;
mod isolation;
mod keys;
mod logs;
mod memory_flood;
mod metrics;
mod migrations;
mod multi_node;
mod protocol;
mod races;
mod read_after_write;
mod readiness;
mod reliability;
mod root_key_commands;
mod slow_clients;
mod v1;
mod wire_snapshots;
