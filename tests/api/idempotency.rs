//! `Idempotency-Key` on write operations: replay, reuse, in-flight duplicates, scope, expiry.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use sigil::domain::idempotency::fingerprint;
use sigil::idempotency::IdempotencySettings;

use crate::harness::{Backend, Options, TestServer};

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

#[tokio::test]
async fn a_retry_while_the_first_request_runs_is_409_with_retry_after() {
    let idempotency =
        IdempotencySettings { in_flight_wait: Duration::from_millis(100), ..IdempotencySettings::default() };
    let server = TestServer::start_with(Backend::Sqlite, Options { idempotency, ..Options::default() }).await.unwrap();
    let key = server.admin_key().await;
    let (workspace, _) = server.store.ensure_workspace(crate::harness::WORKSPACE).await.unwrap();
    // Another node's request holds the key and has not answered yet.
    let held = fingerprint(&sigil::domain::root_key::hash(&key), "/v2/identities.createIdentity", CREATE.as_bytes());
    let lease = i64::MAX;
    assert!(server.store.claim_idempotency_key(&workspace, "busy", &held, lease).await.unwrap().is_none());
    let response = server.call_idempotent("identities.createIdentity", &key, "busy", CREATE).await;
    response.assert_error(409, "sigil/idempotency/request_in_progress");
    assert_eq!(response.headers["retry-after"], "1");
    assert!(server.list_all_ids(&key).await.is_empty());
}

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
