use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    creates_when_free_then_updates_only_what_was_sent,
    a_deleted_externalid_is_created_anew,
    a_key_that_may_not_read_gets_only_the_id,
);

async fn creates_when_free_then_updates_only_what_was_sent(server: TestServer) {
    let key = server.admin_key().await;
    let limit = json!({"name": "api", "limit": 5, "duration": 1000, "autoApply": true});
    let created = server
        .call("identities.upsertIdentity", &key, json!({"externalId": "u", "meta": {"a": 1}, "ratelimits": [limit]}))
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.body["data"]["created"], true);
    let id = created.body["data"]["id"].clone();
    let ratelimit_id = created.body["data"]["ratelimits"][0]["id"].clone();

    let updated = server.call("identities.upsertIdentity", &key, json!({"externalId": "u", "meta": {"b": 2}})).await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["data"]["created"], false);
    assert_eq!(updated.body["data"]["id"], id);
    assert_eq!(updated.body["data"]["meta"], json!({"b": 2}));
    assert_eq!(updated.body["data"]["ratelimits"][0]["id"], ratelimit_id, "ratelimits not sent are kept");

    let untouched = server.call("identities.upsertIdentity", &key, json!({"externalId": "u"})).await;
    assert_eq!(untouched.body["data"]["meta"], json!({"b": 2}), "meta not sent is kept");
    let cleared = server.call("identities.upsertIdentity", &key, json!({"externalId": "u", "ratelimits": []})).await;
    assert!(cleared.body["data"].get("ratelimits").is_none());
    assert_eq!(server.list_all_ids(&key).await.len(), 1);
}

async fn a_deleted_externalid_is_created_anew(server: TestServer) {
    let key = server.admin_key().await;
    let first = server.create_identity(&key, json!({"externalId": "u"})).await;
    server.call("identities.deleteIdentity", &key, json!({"identity": first})).await;
    let upserted = server.call("identities.upsertIdentity", &key, json!({"externalId": "u"})).await;
    assert_eq!(upserted.body["data"]["created"], true);
    assert_ne!(upserted.body["data"]["id"], first.as_str());
}

/// An upsert of an existing externalId must not show its meta to a key that may write but not read it.
async fn a_key_that_may_not_read_gets_only_the_id(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "u", "meta": {"secret": 1}})).await;
    let writer = server.root_key(&["identity.*.create_identity", "identity.*.update_identity"]).await;
    let upserted = server.call("identities.upsertIdentity", &writer, json!({"externalId": "u"})).await;
    assert_eq!(upserted.status, 200, "{}", upserted.body);
    assert_eq!(upserted.body["data"], json!({"id": id, "created": false}));
    let created = server.call("identities.upsertIdentity", &writer, json!({"externalId": "v", "meta": {"a": 1}})).await;
    assert_eq!(created.body["data"]["created"], true);
    assert!(created.body["data"].get("meta").is_none(), "{}", created.body);
}
