//! The `keys.*` operations: every status each can answer.

mod create_key;
mod delete_key;
pub mod get_key;
mod update_credits;
mod update_key;
mod whoami;

use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::harness::TestServer;

/// The id, identity id and hash of every key row stored, deleted or not, read from the database itself.
pub async fn stored_keys(server: &TestServer) -> Vec<(String, Option<String>, String)> {
    let url = server.database_url();
    let query = "SELECT id, identity_id, hash FROM keys ORDER BY id";
    if url.starts_with("sqlite:") {
        let mut connection = SqliteConnection::connect(&url).await.expect("connect");
        sqlx::query_as(query).fetch_all(&mut connection).await.expect("keys")
    } else {
        let mut connection = PgConnection::connect(&url).await.expect("connect");
        sqlx::query_as(query).fetch_all(&mut connection).await.expect("keys")
    }
}
