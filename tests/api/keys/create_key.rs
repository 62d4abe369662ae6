use futures::future::join_all;
use serde_json::{Value, json};
use sigil::idempotency::IdempotencySettings;
use sigil::sealed_secrets::RecordKey;

use crate::harness::{Backend, Options, TestServer};
use crate::keys::{assert_the_database_never_holds, stored_keys};

crate::backend_tests!(
    create_key_200_shows_the_key_once_and_stores_only_its_hash,
    create_key_200_for_200_concurrent_creates_of_one_new_external_id_with_one_identity,
    create_key_links_to_the_live_identity_and_never_revives_a_deleted_one,
    create_key_400_for_credit_rules_and_what_sigil_does_not_support_yet,
    create_key_401_for_an_unknown_key,
    create_key_404_for_a_missing_or_deleted_api_and_without_create_key,
);

crate::each_backend!(create_key_replays_its_key_to_a_retry_and_keeps_it_only_sealed);

fn with_record_key(bytes: &[u8; 32]) -> Options {
    use base64::Engine;
    let record_key =
        RecordKey::from_base64(&base64::engine::general_purpose::STANDARD.encode(bytes)).expect("32 bytes");
    let idempotency = IdempotencySettings { record_key: Some(std::sync::Arc::new(record_key)), ..Default::default() };
    Options { idempotency, ..Options::default() }
}

/// With a record key, a retried createKey answers the same key once more, while no table holds it: the
/// record keeps it sealed under a key that is not in the database.
async fn create_key_replays_its_key_to_a_retry_and_keeps_it_only_sealed(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, with_record_key(&[1; 32])).await else {
        return;
    };
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let body = json!({"apiId": api_id, "prefix": "sk", "externalId": "user_1"}).to_string();
    let first = server.call_idempotent("keys.createKey", &admin, "create-key-1", &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let retry = server.call_idempotent("keys.createKey", &admin, "create-key-1", &body).await;
    assert_eq!((retry.status, retry.text.as_str()), (200, first.text.as_str()), "the same key, byte for byte");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(stored_keys(&server).await.len(), 1, "one key was made");
    let key = first.body["data"]["key"].as_str().expect("key");
    assert_the_database_never_holds(&server, key.strip_prefix("sk_").expect("prefixed")).await;
    let other =
        server.call_idempotent("keys.createKey", &admin, "create-key-1", &json!({"apiId": api_id}).to_string()).await;
    other.assert_error(422, "sigil/idempotency/key_reused");
    // Under another record key the record cannot answer, and says nothing of the key.
    let restarted = server.restart_with(with_record_key(&[2; 32])).await;
    let lost = restarted.call_idempotent("keys.createKey", &admin, "create-key-1", &body).await;
    assert_eq!(lost.status, 503, "another server may have the record key: {}", lost.body);
    assert!(!lost.text.contains(key));
}

async fn create_api(server: &TestServer, key: &str) -> String {
    let created = server.call("apis.createApi", key, json!({"name": "production"})).await;
    created.body["data"]["apiId"].as_str().expect("apiId").to_owned()
}

async fn create_key_200_shows_the_key_once_and_stores_only_its_hash(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let body = json!({"apiId": api_id, "prefix": "sk_live", "name": "ci", "meta": {"plan": "pro"},
        "credits": {"remaining": 100, "refill": {"interval": "daily", "amount": 100}},
        "ratelimits": [{"name": "requests", "limit": 10, "duration": 1000, "autoApply": true}],
        "expires": 4_102_444_800_000_i64, "enabled": true, "recoverable": false, "roles": [], "permissions": []});
    let created = server.call("keys.createKey", &admin, body).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let (key_id, key) =
        (created.body["data"]["keyId"].as_str().unwrap(), created.body["data"]["key"].as_str().unwrap());
    assert!(key_id.starts_with("key_"), "{key_id}");
    let encoded = key.strip_prefix("sk_live_").expect("the prefix, then _");
    assert!(encoded.len() >= 21 && encoded.chars().all(|c| c.is_ascii_alphanumeric() && !"0OIl".contains(c)));
    let stored = stored_keys(&server).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].2, sigil::domain::key::hash(key), "SHA-256 of the whole key, base64, as Unkey stores it");
    assert_the_database_never_holds(&server, encoded).await;
}

/// Unkey's issue #4024: concurrent creates of keys for one new externalId raced to create its identity,
/// and the loser got a 500.
async fn create_key_200_for_200_concurrent_creates_of_one_new_external_id_with_one_identity(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let creates =
        (0..200).map(|_| server.call("keys.createKey", &admin, json!({"apiId": api_id, "externalId": "user_new"})));
    let responses = join_all(creates).await;
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let identity = server.call("identities.getIdentity", &admin, json!({"identity": "user_new"})).await;
    let identity_id = identity.body["data"]["id"].as_str().expect("one identity").to_owned();
    let stored = stored_keys(&server).await;
    assert_eq!(stored.len(), 200);
    assert!(stored.iter().all(|(_, linked, _)| linked.as_deref() == Some(identity_id.as_str())), "one identity");
    let listed = server.list_all_ids(&admin).await;
    assert_eq!(listed, [identity_id], "exactly one identity was created");
}

async fn create_key_links_to_the_live_identity_and_never_revives_a_deleted_one(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let existing = server.create_identity(&admin, json!({"externalId": "user_1", "meta": {"kept": true}})).await;
    assert_eq!(
        server.call("keys.createKey", &admin, json!({"apiId": api_id, "externalId": "user_1"})).await.status,
        200
    );
    server.call("identities.deleteIdentity", &admin, json!({"identity": existing})).await;
    assert_eq!(
        server.call("keys.createKey", &admin, json!({"apiId": api_id, "externalId": "user_1"})).await.status,
        200
    );
    let stored = stored_keys(&server).await;
    assert_eq!(stored[0].1.as_deref(), Some(existing.as_str()), "the first key keeps its identity");
    let second = stored[1].1.clone().expect("linked");
    assert_ne!(second, existing, "a deleted identity is not revived: a new one holds the externalId");
    let live: Value = server.call("identities.getIdentity", &admin, json!({"identity": "user_1"})).await.body;
    assert_eq!(live["data"]["id"], second);
}

async fn create_key_400_for_credit_rules_and_what_sigil_does_not_support_yet(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    for (extra, detail) in [
        (
            json!({"credits": {"remaining": null, "refill": {"interval": "daily", "amount": 10}}}),
            "`credits.remaining` must be provided when `credits.refill` is set.",
        ),
        (
            json!({"credits": {"remaining": 5, "refill": {"interval": "monthly", "amount": 10}}}),
            "`refillDay` must be provided when the refill interval is `monthly`.",
        ),
        (json!({"roles": ["admin"]}), "Roles on keys are not supported by Sigil yet; send no roles."),
        (json!({"recoverable": true}), "Recoverable (encrypted) keys are not supported by Sigil yet."),
        (json!({"byteLength": 8}), "POST request body for '/v2/keys.createKey' failed to validate schema"),
    ] {
        let mut body = json!({"apiId": api_id});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let response = server.call("keys.createKey", &admin, body).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(response.detail(), detail);
    }
    let keyed = server.call_idempotent("keys.createKey", &admin, "k", &json!({"apiId": api_id}).to_string()).await;
    keyed.assert_error(400, "unkey/application/invalid_input");
    assert!(stored_keys(&server).await.is_empty(), "nothing was stored");
}

async fn create_key_401_for_an_unknown_key(server: TestServer) {
    let response = server.call("keys.createKey", "not_a_key", json!({"apiId": "api_anything"})).await;
    response.assert_error(401, "unkey/authentication/key_not_found");
}

/// A key without create_key gets the 404 of a missing API, so it cannot tell which APIs exist.
async fn create_key_404_for_a_missing_or_deleted_api_and_without_create_key(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let deleted = create_api(&server, &admin).await;
    server.call("apis.deleteApi", &admin, json!({"apiId": deleted})).await;
    let reader = server.root_key(&[&format!("api.{api_id}.read_api")]).await;
    for (key, asked) in [(&admin, "api_missing_one"), (&admin, deleted.as_str()), (&reader, api_id.as_str())] {
        let response = server.call("keys.createKey", key, json!({"apiId": asked})).await;
        response.assert_error(404, "unkey/data/api_not_found");
        assert_eq!(response.detail(), "The specified API was not found.");
    }
    let granted = server.root_key(&[&format!("api.{api_id}.create_key")]).await;
    assert_eq!(server.call("keys.createKey", &granted, json!({"apiId": api_id})).await.status, 200);
}
