//! PostgreSQL must reach rows through indexes, whatever statistics it has: a freshly grown table has none,
//! and a plan that filters a whole table is a latency cliff that grows with the data, not a test failure.

use sqlx::{Connection, PgConnection};

use crate::harness::{Backend, TestDatabase};

const IDENTITIES: usize = 2_000;

/// Reading an identity's ratelimits joins `identity_ratelimits.identity_id` to `identities.id`. While the two
/// columns had different collations, no index could serve that join and every read scanned all ratelimits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identitys_ratelimits_are_read_through_their_index() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let store = sigil::store::open(&database.url()).await.expect("open migrates");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    store.close().await;
    let mut connection = PgConnection::connect(&database.url()).await.expect("connect");
    sqlx::query(
        "INSERT INTO identities (id, workspace_id, external_id, meta, created_at) \
         SELECT 'id_' || n, $1, 'user_' || n, '{}', 0 FROM generate_series(1, $2) AS n",
    )
    .bind(workspace.as_str())
    .bind(IDENTITIES as i32)
    .execute(&mut connection)
    .await
    .expect("identities");
    sqlx::query(
        "INSERT INTO identity_ratelimits (id, identity_id, name, request_limit, duration_ms, auto_apply, created_at) \
         SELECT 'rl_' || n, 'id_' || n, 'requests', 10, 1000, true, 0 FROM generate_series(1, $1) AS n",
    )
    .bind(IDENTITIES as i32)
    .execute(&mut connection)
    .await
    .expect("ratelimits");

    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT r.id FROM identities i JOIN identity_ratelimits r ON r.identity_id = i.id \
         WHERE i.id = 'id_7'",
    )
    .fetch_all(&mut connection)
    .await
    .expect("explain");
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan on identity_ratelimits"), "{plan}");
    assert!(plan.contains("identity_ratelimits_identity_id_name_key"), "{plan}");
}
