//! The plans PostgreSQL picks for lookups by id while a table that grew fast has no statistics yet, which
//! is every new deployment's first minutes and any bulk import's: the plan a prepared statement settles on
//! (the generic one) must still read one identity, not every identity of the workspace.

use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::store::identities::{EXTERNAL_ID_IN_OTHER_CASE, GET_IDENTITY, PAYLOAD_BY_ID};
use crate::store::postgres::PostgresStore;
use crate::store::postgres::identities::UPDATE_METAS;

const IDENTITIES: i64 = 20_000;

/// The test server's URL (`SIGIL_TEST_POSTGRES_URL` overrides it), as the API tests use.
pub(super) fn server_url() -> String {
    std::env::var("SIGIL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A connection to a migrated schema of its own, holding `count` identities of workspace `ws_1` and no
/// statistics; `None` outside CI when PostgreSQL is unreachable.
pub(super) async fn unanalyzed_identities(count: i64) -> Option<(PgConnection, String)> {
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
    insert_identities(&mut connection, 1, count).await;
    Some((connection, schema))
}

/// Inserts the identities numbered `first` to `last` of workspace `ws_1`.
async fn insert_identities(connection: &mut PgConnection, first: i64, last: i64) {
    sqlx::query(
        "INSERT INTO identities (id, workspace_id, external_id, meta, created_at) \
         SELECT 'id_' || lpad(n::text, 8, '0'), 'ws_1', 'user_' || n, '{}', 0 FROM generate_series($1, $2) AS n",
    )
    .bind(first)
    .bind(last)
    .execute(connection)
    .await
    .expect("identities");
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
    let Some((mut connection, schema)) = unanalyzed_identities(IDENTITIES).await else { return };
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut connection).await.expect("set");
    let lookups = [
        ("get_identity_by_id", GET_IDENTITY, "id_00012345"),
        ("get_identity_by_external_id", GET_IDENTITY, "user_12345"),
        ("payload_by_id", PAYLOAD_BY_ID, "id_00012345"),
        ("external_id_in_other_case", EXTERNAL_ID_IN_OTHER_CASE, "User_12345"),
    ];
    let mut filtered = Vec::new();
    for (name, query, asked) in lookups {
        filtered.push((name, rows_filtered_out(&mut connection, name, query, asked).await));
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.expect("drop");
    assert!(filtered.iter().all(|(_, rows)| *rows < 10), "rows read and dropped, of {IDENTITIES}: {filtered:?}");
}

/// A prepared statement's generic plan, made while the table is small, as on a new deployment, would be kept
/// as the table grows, until the next ANALYZE: with fewer than about 2,000 identities it reads the whole
/// table. So the group's statement is planned at every run (`persistent(false)`, as here
/// `force_custom_plan`), and must read only its identities once the table grew.
#[tokio::test]
async fn a_group_of_meta_updates_reads_only_its_identities_after_the_table_grew() {
    let Some((mut connection, schema)) = unanalyzed_identities(1000).await else { return };
    sqlx::query("SET plan_cache_mode = force_custom_plan").execute(&mut connection).await.expect("set");
    let prepare = format!("PREPARE update_metas(text[], text[], text[], bigint) AS {UPDATE_METAS}");
    sqlx::query(&prepare).execute(&mut connection).await.expect("prepare");
    let execute = |id: &str, external_id: &str| {
        format!("EXECUTE update_metas(ARRAY['ws_1', 'ws_1'], ARRAY['{id}', '{external_id}'], ARRAY['{{}}', '{{}}'], 1)")
    };
    let small = execute("id_00000012", "user_77");
    sqlx::query(&small).execute(&mut connection).await.expect("the plan made while the table is small");
    insert_identities(&mut connection, 1001, IDENTITIES).await;
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", execute("id_00012345", "user_777"));
    let plan: Value = sqlx::query_scalar(&explain).fetch_one(&mut connection).await.expect("explain");
    /// The most rows one scan of `identities` in the plan read, kept or not.
    fn most_read(node: &Value) -> i64 {
        let read = node["Actual Rows"].as_i64().unwrap_or(0) + node["Rows Removed by Filter"].as_i64().unwrap_or(0);
        let own = if node["Relation Name"] == "identities" { read } else { 0 };
        node["Plans"].as_array().into_iter().flatten().map(most_read).fold(own, i64::max)
    }
    let read = most_read(&plan[0]["Plan"]);
    let updated: Vec<String> = sqlx::query_scalar("SELECT id FROM identities WHERE updated_at = 1 ORDER BY id")
        .fetch_all(&mut connection)
        .await
        .expect("read");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut connection).await.expect("drop");
    assert!(read < 10, "rows of {IDENTITIES} one scan read: {read}; plan: {plan}");
    let expected = ["id_00000012", "id_00000077", "id_00000777", "id_00012345"];
    assert_eq!(updated, expected);
}
