//! The plans PostgreSQL picks for lookups by id while a table that grew fast has no statistics yet, which
//! is every new deployment's first minutes and any bulk import's: the plan a prepared statement settles on
//! (the generic one) must still read one identity, not every identity of the workspace.

use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::store::identities::{GET_IDENTITY, PAYLOAD_BY_ID};
use crate::store::postgres::PostgresStore;

const IDENTITIES: i64 = 20_000;

/// The test server's URL (`SIGIL_TEST_POSTGRES_URL` overrides it), as the API tests use.
fn server_url() -> String {
    std::env::var("SIGIL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A connection to a migrated schema of its own, holding [`IDENTITIES`] identities of workspace `ws_1` and
/// no statistics; `None` outside CI when PostgreSQL is unreachable.
async fn unanalyzed_identities() -> Option<(PgConnection, String)> {
    let mut server = match PgConnection::connect(&server_url()).await {
        Ok(connection) => connection,
        Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true and PostgreSQL at {} is unreachable: {error}", server_url())
        }
        Err(_) => return None,
    };
    let schema = format!("sigil_plans_{}", ulid::Ulid::new().to_string().to_lowercase());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut server).await.expect("schema");
    let url = format!("{}?options=-c%20search_path%3D{schema}", server_url());
    PostgresStore::open(&url).await.expect("migrate").close_pools().await;
    let mut connection = PgConnection::connect(&url).await.expect("connect");
    for statement in [
        "ALTER TABLE identities SET (autovacuum_enabled = false)",
        "INSERT INTO workspaces (id, name, created_at) VALUES ('ws_1', 'one', 0)",
    ] {
        sqlx::query(statement).execute(&mut connection).await.expect(statement);
    }
    sqlx::query(
        "INSERT INTO identities (id, workspace_id, external_id, meta, created_at) \
         SELECT 'id_' || lpad(n::text, 8, '0'), 'ws_1', 'user_' || n, '{}', 0 FROM generate_series(1, $1) AS n",
    )
    .bind(IDENTITIES)
    .execute(&mut connection)
    .await
    .expect("identities");
    Some((connection, schema))
}

/// The most rows any node of `query`'s generic plan read and threw away, with `$1` the workspace and `$2`
/// the id asked for.
async fn rows_filtered_out(connection: &mut PgConnection, name: &str, query: &str, id: &str) -> i64 {
    sqlx::query(&format!("PREPARE {name}(text, text) AS {query}")).execute(&mut *connection).await.expect("prepare");
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}('ws_1', '{id}')");
    let plan: Value = sqlx::query_scalar(&explain).fetch_one(&mut *connection).await.expect("explain");
    fn most_filtered(node: &Value) -> i64 {
        let own = node["Rows Removed by Filter"].as_i64().unwrap_or(0);
        let children = node["Plans"].as_array().into_iter().flatten().map(most_filtered);
        children.fold(own, i64::max)
    }
    most_filtered(&plan[0]["Plan"])
}

#[tokio::test]
async fn lookups_by_id_read_one_identity_before_the_table_is_analyzed() {
    let Some((mut connection, schema)) = unanalyzed_identities().await else { return };
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut connection).await.expect("set");
    let lookups = [
        ("get_identity_by_id", GET_IDENTITY, "id_00012345"),
        ("get_identity_by_external_id", GET_IDENTITY, "user_12345"),
        ("payload_by_id", PAYLOAD_BY_ID, "id_00012345"),
    ];
    let mut filtered = Vec::new();
    for (name, query, asked) in lookups {
        filtered.push((name, rows_filtered_out(&mut connection, name, query, asked).await));
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.expect("drop");
    assert!(filtered.iter().all(|(_, rows)| *rows < 10), "rows read and dropped, of {IDENTITIES}: {filtered:?}");
}
