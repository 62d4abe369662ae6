//! `Idempotency-Key` on write operations: replay, reuse, in-flight duplicates, scope, expiry.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use sigil::Limits;
use sigil::idempotency::IdempotencySettings;
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

use crate::harness::{Backend, Options, SigilProcess, TestDatabase, TestServer};

crate::backend_tests!(
    a_retry_replays_the_first_response_byte_for_byte_and_writes_nothing,
    a_retried_conflict_replays_the_409,
    a_key_reused_for_another_body_or_operation_is_422,
    fifty_concurrent_retries_create_one_identity_and_get_identical_bodies,
    a_replay_survives_a_restart,
    keys_are_scoped_to_the_workspace,
    a_rejected_request_releases_its_key,
    invalid_keys_are_400_and_reads_ignore_the_header,
    every_write_operation_replays,
    a_replay_goes_only_to_the_root_key_that_made_it,
);

const CREATE: &str = r#"{"externalId":"user_1","meta":{"plan":"pro"}}"#;

async fn a_retry_replays_the_first_response_byte_for_byte_and_writes_nothing(server: TestServer) {
    let key = server.admin_key().await;
    let first = server.call_idempotent("identities.createIdentity", &key, "order-1", CREATE).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none());
    for _ in 0..3 {
        let retry = server.call_idempotent("identities.createIdentity", &key, "order-1", CREATE).await;
        assert_eq!(retry.status, 200);
        assert_eq!(retry.text, first.text, "byte for byte, request id included");
        assert_eq!(retry.headers["idempotent-replayed"], "true");
        assert_ne!(retry.headers["x-request-id"].to_str().unwrap(), first.request_id(), "the retry has its own id");
    }
    assert_eq!(server.list_all_ids(&key).await.len(), 1);
}

async fn a_retried_conflict_replays_the_409(server: TestServer) {
    let key = server.admin_key().await;
    let existing = server.create_identity(&key, json!({"externalId": "user_1"})).await;
    let first = server.call_idempotent("identities.createIdentity", &key, "k", CREATE).await;
    first.assert_error(409, "unkey/data/identity_already_exists");
    server.call("identities.deleteIdentity", &key, json!({"identity": existing})).await;
    // The externalId is free now, yet the retry replays the recorded outcome instead of running again.
    let retry = server.call_idempotent("identities.createIdentity", &key, "k", CREATE).await;
    assert_eq!(retry.status, 409);
    assert_eq!(retry.text, first.text);
    assert!(server.list_all_ids(&key).await.is_empty());
}

async fn a_key_reused_for_another_body_or_operation_is_422(server: TestServer) {
    let key = server.admin_key().await;
    assert_eq!(server.call_idempotent("identities.createIdentity", &key, "k", CREATE).await.status, 200);
    let other_body = server.call_idempotent("identities.createIdentity", &key, "k", r#"{"externalId":"user_2"}"#).await;
    other_body.assert_error(422, "sigil/idempotency/key_reused");
    let other_operation =
        server.call_idempotent("identities.deleteIdentity", &key, "k", r#"{"identity":"user_1"}"#).await;
    other_operation.assert_error(422, "sigil/idempotency/key_reused");
    assert_eq!(server.list_all_ids(&key).await.len(), 1, "neither reuse ran");
}

async fn fifty_concurrent_retries_create_one_identity_and_get_identical_bodies(server: TestServer) {
    let key = server.admin_key().await;
    let retries = (0..50).map(|_| server.call_idempotent("identities.createIdentity", &key, "burst", CREATE));
    let responses = join_all(retries).await;
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.text, responses[0].text);
    }
    let replayed = responses.iter().filter(|r| r.headers.get("idempotent-replayed").is_some()).count();
    assert_eq!(replayed, 49, "exactly one request ran");
    assert_eq!(server.list_all_ids(&key).await.len(), 1);
}

async fn a_replay_survives_a_restart(server: TestServer) {
    let key = server.admin_key().await;
    let first = server.call_idempotent("identities.createIdentity", &key, "durable", CREATE).await;
    let server = server.restart().await;
    let retry = server.call_idempotent("identities.createIdentity", &key, "durable", CREATE).await;
    assert_eq!(retry.text, first.text);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
}

async fn keys_are_scoped_to_the_workspace(server: TestServer) {
    let ours = server.admin_key().await;
    let theirs = server.admin_key_in("other").await;
    let a = server.call_idempotent("identities.createIdentity", &ours, "shared", CREATE).await;
    let b = server.call_idempotent("identities.createIdentity", &theirs, "shared", CREATE).await;
    assert_eq!((a.status, b.status), (200, 200));
    assert!(b.headers.get("idempotent-replayed").is_none());
    assert_ne!(a.body["data"]["identityId"], b.body["data"]["identityId"]);
}

async fn a_rejected_request_releases_its_key(server: TestServer) {
    let key = server.admin_key().await;
    let invalid = server.call_idempotent("identities.createIdentity", &key, "fixme", r#"{"externalId":""}"#).await;
    invalid.assert_error(400, "unkey/application/invalid_input");
    let reader = server.root_key(&["identity.*.read_identity"]).await;
    let denied = server.call_idempotent("identities.createIdentity", &reader, "fixme", CREATE).await;
    denied.assert_error(403, "unkey/authorization/insufficient_permissions");
    let corrected = server.call_idempotent("identities.createIdentity", &key, "fixme", CREATE).await;
    assert_eq!(corrected.status, 200, "{}", corrected.text);
    assert!(corrected.headers.get("idempotent-replayed").is_none());
    let unknown_key = server.call_idempotent("identities.createIdentity", "nope", "fixme", CREATE).await;
    unknown_key.assert_error(401, "unkey/authentication/key_not_found");
}

async fn invalid_keys_are_400_and_reads_ignore_the_header(server: TestServer) {
    let key = server.admin_key().await;
    for bad in ["x".repeat(256), "tab\tinside".to_owned()] {
        let response = server.call_idempotent("identities.createIdentity", &key, &bad, CREATE).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(response.body["error"]["errors"][0]["location"], "header.Idempotency-Key");
    }
    server.create_identity(&key, json!({"externalId": "user_1"})).await;
    for _ in 0..2 {
        let read = server.call_idempotent("identities.getIdentity", &key, "read", r#"{"identity":"user_1"}"#).await;
        assert_eq!(read.status, 200);
        assert!(read.headers.get("idempotent-replayed").is_none());
    }
}

async fn every_write_operation_replays(server: TestServer) {
    let key = server.admin_key().await;
    server.create_identity(&key, json!({"externalId": "user_1"})).await;
    let update = r#"{"identity":"user_1","meta":{"v":1}}"#;
    let first = server.call_idempotent("identities.updateIdentity", &key, "u", update).await;
    assert_eq!(first.status, 200);
    server.call("identities.updateIdentity", &key, json!({"identity": "user_1", "meta": {"v": 2}})).await;
    let retry = server.call_idempotent("identities.updateIdentity", &key, "u", update).await;
    assert_eq!(retry.text, first.text);
    let stored = server.call("identities.getIdentity", &key, json!({"identity": "user_1"})).await;
    assert_eq!(stored.body["data"]["meta"], json!({"v": 2}), "the replayed update did not run again");

    let delete = r#"{"identity":"user_1"}"#;
    assert_eq!(server.call_idempotent("identities.deleteIdentity", &key, "d", delete).await.status, 200);
    let retry = server.call_idempotent("identities.deleteIdentity", &key, "d", delete).await;
    assert_eq!(retry.status, 200, "a retried delete replays its 200 instead of answering 404");
}

/// The database's write lock or a row's lock, held by a connection of the test's own, as by another
/// program or a long transaction: SQLite's `BEGIN IMMEDIATE` from another connection, PostgreSQL's row
/// lock on identity `id`.
enum HeldLock {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl HeldLock {
    async fn take(server: &TestServer, backend: Backend, identity_id: &str) -> Self {
        match backend {
            Backend::Sqlite => {
                let mut connection = SqliteConnection::connect(&server.database_url()).await.expect("connect");
                connection.execute("BEGIN IMMEDIATE").await.expect("write lock");
                Self::Sqlite(connection)
            }
            Backend::Postgres => {
                let mut connection = PgConnection::connect(&server.database_url()).await.expect("connect");
                connection.execute("BEGIN").await.expect("begin");
                sqlx::query("SELECT id FROM identities WHERE id = $1 FOR UPDATE")
                    .bind(identity_id)
                    .fetch_one(&mut connection)
                    .await
                    .expect("row lock");
                Self::Postgres(connection)
            }
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut connection) => connection.execute("ROLLBACK").await.map(drop),
            Self::Postgres(mut connection) => connection.execute("ROLLBACK").await.map(drop),
        }
        .expect("release the lock");
    }
}

async fn server_with(backend: Backend, limits: Limits, idempotency: IdempotencySettings) -> Option<TestServer> {
    TestServer::start_with(backend, Options { limits, idempotency, ..Options::default() }).await
}

/// A write still held by the database when its request times out goes on to its end and records its
/// answer: the client's retry gets that answer, and the change is applied once.
async fn a_write_that_outlives_its_request_is_replayed_to_the_retry(backend: Backend) {
    let limits = Limits { request_timeout: Duration::from_millis(300), ..Limits::default() };
    let Some(server) = server_with(backend, limits, IdempotencySettings::default()).await else { return };
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "target", "meta": {"v": 0}})).await;
    let lock = HeldLock::take(&server, backend, &id).await;
    let update = r#"{"identity":"target","meta":{"v":1}}"#;
    let first = server.call_idempotent("identities.updateIdentity", &key, "slow", update).await;
    first.assert_error(408, "user/bad_request/request_timeout");
    tokio::time::sleep(Duration::from_millis(700)).await;
    lock.release().await;

    // The retry waits for the first write to end, within the same 300 ms: on a busy machine it may time out
    // too, which a client meets by retrying again.
    let started = std::time::Instant::now();
    let retry = loop {
        let retry = server.call_idempotent("identities.updateIdentity", &key, "slow", update).await;
        if retry.status != 408 || started.elapsed() > Duration::from_secs(10) {
            break retry;
        }
    };
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.headers["idempotent-replayed"], "true", "the write that timed out answered the retry");
    assert_eq!(retry.body["data"]["meta"], json!({"v": 1}));
    server.call("identities.updateIdentity", &key, json!({"identity": "target", "meta": {"v": 2}})).await;
    let again = server.call_idempotent("identities.updateIdentity", &key, "slow", update).await;
    assert_eq!(again.text, retry.text);
    let stored = server.call("identities.getIdentity", &key, json!({"identity": "target"})).await;
    assert_eq!(stored.body["data"]["meta"], json!({"v": 2}), "the update ran once, not again on a retry");
}

/// A retry that arrives while the first request still runs waits for it, and after `in_flight_wait` is
/// answered 409 with Retry-After, having written nothing. Once the first ends, the retry replays.
async fn a_retry_while_the_first_request_runs_is_409_with_retry_after(backend: Backend) {
    let idempotency =
        IdempotencySettings { in_flight_wait: Duration::from_millis(200), ..IdempotencySettings::default() };
    let Some(server) = server_with(backend, Limits::default(), idempotency).await else { return };
    let server = std::sync::Arc::new(server);
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "target"})).await;
    let lock = HeldLock::take(&server, backend, &id).await;
    let update = r#"{"identity":"target","meta":{"v":1}}"#;
    let first = tokio::spawn({
        let (server, key) = (server.clone(), key.clone());
        async move { server.call_idempotent("identities.updateIdentity", &key, "busy", update).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let retry = server.call_idempotent("identities.updateIdentity", &key, "busy", update).await;
    retry.assert_error(409, "sigil/idempotency/request_in_progress");
    assert_eq!(retry.headers["retry-after"], "1");
    lock.release().await;
    let first = first.await.expect("first request");
    assert_eq!(first.status, 200, "{}", first.text);
    let replay = server.call_idempotent("identities.updateIdentity", &key, "busy", update).await;
    assert_eq!(replay.text, first.text);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
}

/// Another node's write under the key (its advisory lock, held here by the test): this node's retry backs
/// off without holding a connection, then answers 409; once the key is free it runs. A busy key is a
/// refusal, not a failure: the connections it was tried on stay open for what comes next.
#[tokio::test]
async fn a_key_another_postgres_node_holds_is_409_then_runs() {
    let idempotency =
        IdempotencySettings { in_flight_wait: Duration::from_millis(300), ..IdempotencySettings::default() };
    let Some(server) = server_with(Backend::Postgres, Limits::default(), idempotency).await else { return };
    let key = server.admin_key().await;
    let (workspace, _) = server.store.ensure_workspace(crate::harness::WORKSPACE).await.unwrap();
    let mut other_node = PgConnection::connect(&server.database_url()).await.expect("connect");
    let backends = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
         ORDER BY pid";
    assert!(server.list_all_ids(&key).await.is_empty(), "a read, so that the server keeps a connection");
    let before: Vec<i32> = sqlx::query_scalar(backends).fetch_all(&mut other_node).await.unwrap();
    let lock = "SELECT pg_advisory_lock(hashtext($1), hashtext($2))";
    sqlx::query(lock).bind(workspace.as_str()).bind("busy").execute(&mut other_node).await.unwrap();
    let response = server.call_idempotent("identities.createIdentity", &key, "busy", CREATE).await;
    response.assert_error(409, "sigil/idempotency/request_in_progress");
    assert!(server.list_all_ids(&key).await.is_empty(), "nothing was written");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after: Vec<i32> = sqlx::query_scalar(backends).fetch_all(&mut other_node).await.unwrap();
    let closed: Vec<&i32> = before.iter().filter(|pid| !after.contains(pid)).collect();
    assert!(closed.is_empty(), "connections closed by the busy retries: {closed:?} of {before:?}");
    let unlock = "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))";
    sqlx::query(unlock).bind(workspace.as_str()).bind("busy").execute(&mut other_node).await.unwrap();
    let response = server.call_idempotent("identities.createIdentity", &key, "busy", CREATE).await;
    assert_eq!(response.status, 200, "{}", response.text);
}

/// Killed after the write committed and before it answered (the `write-committed` fail point aborts the
/// process there), the server restarts and the retry replays: the record committed with the write.
async fn a_retry_after_a_kill_between_commit_and_answer_replays(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let url = database.url();
    let key = crate::harness::admin_key(&url).await;
    let doomed = SigilProcess::start_with_env(&url, &[], &[("FAILPOINTS", "write-committed=return")]).await;
    let client = reqwest::Client::new();
    let send = |base_url: String| {
        client
            .post(format!("{base_url}/v2/identities.createIdentity"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("idempotency-key", "order-7")
            .body(CREATE)
            .send()
    };
    assert!(send(doomed.base_url.clone()).await.is_err(), "the process died before it answered");
    drop(doomed);

    let restarted = SigilProcess::start(&url).await;
    let retry = send(restarted.base_url.clone()).await.expect("the restarted server answers");
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true", "the write committed with its answer");
    let listed = client
        .post(format!("{}/v2/identities.listIdentities", restarted.base_url))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .expect("list");
    let listed: serde_json::Value = listed.json().await.expect("json");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    restarted.kill().await;
}

crate::each_backend!(
    a_write_that_outlives_its_request_is_replayed_to_the_retry,
    a_retry_while_the_first_request_runs_is_409_with_retry_after,
    a_retry_after_a_kill_between_commit_and_answer_replays,
);

#[tokio::test]
async fn an_expired_key_runs_again_and_is_purged() {
    let idempotency = IdempotencySettings { retention: Duration::ZERO, ..IdempotencySettings::default() };
    let server = TestServer::start_with(Backend::Sqlite, Options { idempotency, ..Options::default() }).await.unwrap();
    let key = server.admin_key().await;
    assert_eq!(server.call_idempotent("identities.createIdentity", &key, "old", CREATE).await.status, 200);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let other = server.call_idempotent("identities.createIdentity", &key, "old", r#"{"externalId":"user_2"}"#).await;
    assert_eq!(other.status, 200, "an expired key is free: {}", other.text);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(server.store.purge_expired_idempotency_keys().await.unwrap(), 1);
}

/// An answer may hold what another key of the workspace may not read (an upsert's meta, a 409's existing
/// id): it is replayed only to the root key whose request made it. A key that may not run the operation
/// gets the fresh request's 403; another key that may gets 422, and neither a replay.
async fn a_replay_goes_only_to_the_root_key_that_made_it(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "target", "meta": {"secret": 1}})).await;
    let other_admin = server.admin_key().await;
    let callers = [
        ("no permission", server.root_key(&[]).await, 403),
        ("read only", server.root_key(&["identity.*.read_identity"]).await, 403),
        ("another operation's permission", server.root_key(&["identity.*.delete_identity"]).await, 403),
        ("another admin key", other_admin, 422),
    ];
    let writes = [
        ("identities.createIdentity", r#"{"externalId":"fresh","meta":{"secret":2}}"#.to_owned()),
        ("identities.upsertIdentity", r#"{"externalId":"target"}"#.to_owned()),
        ("identities.updateIdentity", format!(r#"{{"identity":"{id}","meta":{{"secret":3}}}}"#)),
        ("identities.deleteIdentity", format!(r#"{{"identity":"{id}"}}"#)),
    ];
    for (operation, body) in &writes {
        let idempotency_key = format!("admin-{operation}");
        let first = server.call_idempotent(operation, &admin, &idempotency_key, body).await;
        assert_eq!(first.status, 200, "{operation}: {}", first.text);
        for (caller, key, status) in &callers {
            if operation.ends_with("deleteIdentity") && *caller == "another operation's permission" {
                continue; // that key may delete: it is the "another admin key" case for this operation.
            }
            let retry = server.call_idempotent(operation, key, &idempotency_key, body).await;
            assert!(retry.headers.get("idempotent-replayed").is_none(), "{operation} replayed to {caller}");
            assert_eq!(retry.status, *status, "{operation} as {caller}: {}", retry.text);
            assert!(!retry.text.contains("secret"), "{operation} as {caller}: {}", retry.text);
        }
    }
}

/// A purge deletes at most one batch per statement, so that it never holds the writer for long.
#[tokio::test]
async fn expired_records_are_purged_in_bounded_batches() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let batch = sigil::store::PURGE_BATCH;
    let mut connection = SqliteConnection::connect(&server.database_url()).await.expect("connect");
    for n in 0..batch + batch / 2 {
        sqlx::query(
            "INSERT INTO idempotency_keys (workspace_id, idempotency_key, fingerprint, status, response_body, \
             created_at, expires_at) VALUES ('ws', $1, 'f', 200, '{}', 0, 1)",
        )
        .bind(format!("expired-{n}"))
        .execute(&mut connection)
        .await
        .expect("insert");
    }
    assert_eq!(server.store.purge_expired_idempotency_keys().await.unwrap(), batch);
    assert_eq!(server.store.purge_expired_idempotency_keys().await.unwrap(), batch / 2);
    assert_eq!(server.store.purge_expired_idempotency_keys().await.unwrap(), 0);
}

/// During a rolling upgrade an older Sigil claims a key with a record without an answer while its request
/// runs: the key stays busy until that claim is answered or expires, so the write never runs twice. The
/// retry waiting on it is refused alone: writes committed in the same group as its tries go on.
#[tokio::test]
async fn an_older_sigils_live_claim_keeps_the_key_busy() {
    let idempotency =
        IdempotencySettings { in_flight_wait: Duration::from_millis(150), ..IdempotencySettings::default() };
    let server = server_with(Backend::Sqlite, Limits::default(), idempotency).await.unwrap();
    let key = server.admin_key().await;
    let (workspace, _) = server.store.ensure_workspace(crate::harness::WORKSPACE).await.unwrap();
    let mut connection = SqliteConnection::connect(&server.database_url()).await.expect("connect");
    let claim = |expires_at: i64| {
        sqlx::query(
            "INSERT OR REPLACE INTO idempotency_keys (workspace_id, idempotency_key, fingerprint, status, \
             response_body, created_at, expires_at) VALUES ($1, 'claimed', 'older', NULL, NULL, 0, $2)",
        )
        .bind(workspace.as_str().to_owned())
        .bind(expires_at)
    };
    claim(i64::MAX).execute(&mut connection).await.expect("live claim");
    let bystanders = async {
        let mut statuses = Vec::new();
        for round in 0..10 {
            let creates = (0..10).map(|n| {
                let body = json!({"externalId": format!("bystander-{round}-{n}")});
                server.call("identities.createIdentity", &key, body)
            });
            statuses.extend(join_all(creates).await.into_iter().map(|created| created.status));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        statuses
    };
    let (busy, bystanders) =
        tokio::join!(server.call_idempotent("identities.createIdentity", &key, "claimed", CREATE), bystanders);
    busy.assert_error(409, "sigil/idempotency/request_in_progress");
    assert!(bystanders.iter().all(|status| *status == 200), "{bystanders:?}");
    assert_eq!(server.list_all_ids(&key).await.len(), 100, "the bystanders' creates alone were written");
    claim(1).execute(&mut connection).await.expect("expired claim");
    let runs = server.call_idempotent("identities.createIdentity", &key, "claimed", CREATE).await;
    assert_eq!(runs.status, 200, "{}", runs.text);
}
