//! Groups of different kinds lock identities in one order (the write order, `identities.rs`): a group of
//! upserts and a group of meta updates that want the same two identities never deadlock.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::store::postgres::identities::{UPDATE_METAS, UPSERT_IDENTITIES};
use crate::store::postgres::query_plans::{server_url, unanalyzed_identities};

/// X is `id_2` holding externalId `a`, Y is `id_1` holding `b`: ordered by id, Y comes first; by
/// externalId, X does. A transaction holding two other identities lets the upsert group lock X and the
/// meta group start, before either can finish. Locked by id, the meta group would then hold Y while
/// waiting for X, and the upsert group hold X while waiting for Y.
#[tokio::test]
async fn an_upsert_group_and_a_meta_update_group_wanting_the_same_identities_both_commit() {
    let Some((mut setup, schema)) = unanalyzed_identities(0).await else { return };
    sqlx::query(
        "INSERT INTO identities (id, workspace_id, external_id, meta, created_at) VALUES \
         ('id_2', 'ws_1', 'a', '{}', 0), ('id_1', 'ws_1', 'b', '{}', 0), \
         ('id_3', 'ws_1', 'aa', '{}', 0), ('id_4', 'ws_1', 'zz', '{}', 0)",
    )
    .execute(&mut setup)
    .await
    .expect("identities");
    let url = format!("{}?options=-c%20search_path%3D{schema}", server_url());
    let connect = || async { PgConnection::connect(&url).await.expect("connect") };
    let mut blocker = connect().await;
    sqlx::query("BEGIN").execute(&mut blocker).await.expect("begin");
    sqlx::query("UPDATE identities SET updated_at = 0 WHERE id IN ('id_3', 'id_4')")
        .execute(&mut blocker)
        .await
        .expect("hold aa and zz");
    let ws = vec!["ws_1"; 3];
    let (mut upserting, mut updating) = (connect().await, connect().await);
    let mut pids = Vec::new();
    for connection in [&mut upserting, &mut updating] {
        pids.push(sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(connection).await.expect("pid"));
    }
    let upserts = {
        let ws = ws.clone();
        tokio::spawn(async move {
            sqlx::query(UPSERT_IDENTITIES)
                .bind(vec!["id_new_1", "id_new_2", "id_new_3"])
                .bind(ws)
                .bind(vec!["a", "aa", "b"])
                .bind(vec!["{}"; 3])
                .bind(1_i64)
                .bind(true)
                .execute(&mut upserting)
                .await
        })
    };
    until_waiting_for_a_lock(&mut setup, &pids, 1).await;
    let updates = tokio::spawn(async move {
        sqlx::query(UPDATE_METAS)
            .bind(ws)
            .bind(vec!["id_1", "zz", "a"])
            .bind(vec![r#"{"n": 1}"#; 3])
            .bind(1_i64)
            .execute(&mut updating)
            .await
    });
    until_waiting_for_a_lock(&mut setup, &pids, 2).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.expect("commit");
    let (upserted, updated) = (upserts.await.expect("upserts"), updates.await.expect("updates"));
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut setup).await.expect("drop");
    upserted.expect("the upsert group commits");
    updated.expect("the meta update group commits");
}

/// Returns once `count` of the backends `pids` wait for a lock; fails after 10 s.
async fn until_waiting_for_a_lock(connection: &mut PgConnection, pids: &[i32], count: i64) {
    let waiting = async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid = ANY($1)",
            )
            .bind(pids)
            .fetch_one(&mut *connection)
            .await
            .expect("watch");
            if waiting >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the groups never waited for each other");
}
