//! The `keys.*` operations: every status each can answer.

mod create_key;
mod delete_key;
pub mod get_key;
mod two_nodes;
mod update_credits;
mod update_key;
mod verify_key;
mod verify_key_redis_counters;
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

/// Fails when `secret` is anywhere in the database: in the SQLite file or its WAL, byte for byte, or in any
/// row of any PostgreSQL table of the test's database.
pub async fn assert_the_database_never_holds(server: &TestServer, secret: &str) {
    let url = server.database_url();
    if let Some(path) = url.strip_prefix("sqlite://") {
        for file in [path.to_owned(), format!("{path}-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(!bytes.windows(secret.len()).any(|window| window == secret.as_bytes()), "{file} holds the secret");
        }
        return;
    }
    let mut connection = PgConnection::connect(&url).await.expect("connect");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut connection)
    .await
    .expect("tables");
    assert!(tables.iter().any(|table| table.ends_with(".keys")), "{tables:?}");
    for table in tables {
        let query = format!("SELECT count(*) FROM {table} AS t WHERE strpos(t::text, $1) > 0");
        let holding: i64 = sqlx::query_scalar(&query).bind(secret).fetch_one(&mut connection).await.expect("search");
        assert_eq!(holding, 0, "{table} holds the secret");
    }
}

/// Dates when key `key_id`'s credits were last refilled or set, as if that had been at `at_ms`.
pub async fn set_last_refill(server: &TestServer, key_id: &str, at_ms: i64) {
    let url = server.database_url();
    let query = "UPDATE keys SET last_refill_at = $1 WHERE id = $2";
    if url.starts_with("sqlite:") {
        let mut connection = SqliteConnection::connect(&url).await.expect("connect");
        sqlx::query(query).bind(at_ms).bind(key_id).execute(&mut connection).await.expect("update");
    } else {
        let mut connection = PgConnection::connect(&url).await.expect("connect");
        sqlx::query(query).bind(at_ms).bind(key_id).execute(&mut connection).await.expect("update");
    }
}

/// The window length of every limit whose takes a test counts. Windows are fixed and aligned to the clock,
/// as Unkey's, so takes that straddle a window's end start counting again; an hour-long window, entered
/// well before its end (see [`start_well_inside_a_counted_window`]), holds a whole test.
pub const COUNTED_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Waits for the next counted window when less than a minute of the current one is left, so that a test's
/// takes all fall in one window however slow the machine.
pub async fn start_well_inside_a_counted_window() {
    const MARGIN_MS: i64 = 60 * 1000;
    let left = COUNTED_WINDOW_MS - now_ms().rem_euclid(COUNTED_WINDOW_MS);
    if left < MARGIN_MS {
        tokio::time::sleep(std::time::Duration::from_millis(left.unsigned_abs() + 10)).await;
    }
}

pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    i64::try_from(since_epoch.as_millis()).expect("in range")
}
