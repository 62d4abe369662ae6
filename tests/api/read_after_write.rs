//! Every acknowledged write is seen by the next read, by id and by externalId alike. Reads are
//! served from memory when nothing changed (`store/identity_cache.rs`); these tests fail if a write leaves
//! a stale identity there.

use serde_json::{Value, json};

use crate::harness::TestServer;

crate::backend_tests!(
    updates_upserts_and_deletes_are_read_back_under_both_names,
    an_externalid_reused_after_a_delete_names_the_new_identity,
);

async fn get(server: &TestServer, key: &str, identity: &str) -> (u16, Value) {
    let response = server.call("identities.getIdentity", key, json!({"identity": identity})).await;
    (response.status, response.body["data"].clone())
}

async fn updates_upserts_and_deletes_are_read_back_under_both_names(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "user_1", "meta": {"v": 1}})).await;
    for name in [id.as_str(), "user_1"] {
        assert_eq!(get(&server, &key, name).await.1["meta"], json!({"v": 1}));
    }

    let update = json!({"identity": "user_1", "meta": {"v": 2}});
    assert_eq!(server.call("identities.updateIdentity", &key, update).await.status, 200);
    for name in [id.as_str(), "user_1"] {
        assert_eq!(get(&server, &key, name).await.1["meta"], json!({"v": 2}), "read by {name} after update");
    }

    let upsert = json!({"externalId": "user_1", "meta": {"v": 3}});
    assert_eq!(server.call("identities.upsertIdentity", &key, upsert).await.status, 200);
    for name in [id.as_str(), "user_1"] {
        assert_eq!(get(&server, &key, name).await.1["meta"], json!({"v": 3}), "read by {name} after upsert");
    }

    let ratelimits = json!([{"name": "api", "limit": 5, "duration": 1000, "autoApply": true}]);
    let update = json!({"identity": id, "ratelimits": ratelimits});
    assert_eq!(server.call("identities.updateIdentity", &key, update).await.status, 200);
    assert_eq!(get(&server, &key, "user_1").await.1["ratelimits"][0]["limit"], 5, "ratelimits by externalId");

    assert_eq!(server.call("identities.deleteIdentity", &key, json!({"identity": id})).await.status, 200);
    for name in [id.as_str(), "user_1"] {
        assert_eq!(get(&server, &key, name).await.0, 404, "read by {name} after delete");
    }
}

async fn an_externalid_reused_after_a_delete_names_the_new_identity(server: TestServer) {
    let key = server.admin_key().await;
    let first = server.create_identity(&key, json!({"externalId": "user_1", "meta": {"generation": 1}})).await;
    assert_eq!(get(&server, &key, "user_1").await.1["id"], first);
    let delete = json!({"identity": "user_1"});
    assert_eq!(server.call("identities.deleteIdentity", &key, delete).await.status, 200);
    let second = server.create_identity(&key, json!({"externalId": "user_1", "meta": {"generation": 2}})).await;
    let (status, identity) = get(&server, &key, "user_1").await;
    assert_eq!(status, 200);
    assert_eq!(identity["id"], second);
    assert_eq!(identity["meta"], json!({"generation": 2}));
    assert_eq!(get(&server, &key, &first).await.0, 404);

    // An externalId may look like an id; a lookup by that string finds the identity whose id it is, first.
    let lookalike = server.create_identity(&key, json!({"externalId": second})).await;
    assert_eq!(get(&server, &key, &second).await.1["id"], second);
    assert_eq!(server.call("identities.deleteIdentity", &key, json!({"identity": second})).await.status, 200);
    assert_eq!(get(&server, &key, &second).await.0, 404, "a deleted identity's id still names it alone");
    assert_eq!(get(&server, &key, &lookalike).await.1["externalId"], second, "the lookalike, by its own id");
}
