//! Renaming an identity's externalId (Sigil's own; Unkey #4432): 200, and 409 as on create.

use futures::future::join_all;
use serde_json::json;

use crate::harness::TestServer;
use crate::keys::get_key::api_and_key;

crate::backend_tests!(
    renaming_moves_the_identity_and_its_keys_to_the_new_externalid,
    renaming_to_a_taken_externalid_is_409_and_writes_nothing,
    fifty_concurrent_renames_to_one_free_externalid_give_one_success_and_clean_409s,
);

async fn renaming_moves_the_identity_and_its_keys_to_the_new_externalid(server: TestServer) {
    let key = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &key, json!({"externalId": "user_old"})).await;
    // Collisions teach a SQLite node who holds user_old; the rename must make it forget before it answers.
    for _ in 0..2 {
        let collision = server.call("identities.createIdentity", &key, json!({"externalId": "user_old"})).await;
        collision.assert_error(409, "unkey/data/identity_already_exists");
    }
    let renamed = server
        .call(
            "identities.updateIdentity",
            &key,
            json!({"identity": "user_old", "externalId": "user_new", "meta": {"v": 2}}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(
        (&renamed.body["data"]["externalId"], &renamed.body["data"]["meta"]),
        (&json!("user_new"), &json!({"v": 2}))
    );
    let by_new = server.call("identities.getIdentity", &key, json!({"identity": "user_new"})).await;
    assert_eq!(by_new.body["data"]["id"], renamed.body["data"]["id"], "{}", by_new.body);
    let by_old = server.call("identities.getIdentity", &key, json!({"identity": "user_old"})).await;
    by_old.assert_error(404, "unkey/data/identity_not_found");
    let linked = server.call("keys.getKey", &key, json!({"keyId": key_id})).await;
    assert_eq!(linked.body["data"]["identity"]["externalId"], "user_new", "the key follows its identity");
    let same =
        server.call("identities.updateIdentity", &key, json!({"identity": "user_new", "externalId": "user_new"})).await;
    assert_eq!(same.status, 200, "renaming to its own externalId changes nothing: {}", same.body);
    let freed = server.create_identity(&key, json!({"externalId": "user_old"})).await;
    assert_ne!(freed, renamed.body["data"]["id"].as_str().unwrap(), "the old externalId is free again");
}

async fn renaming_to_a_taken_externalid_is_409_and_writes_nothing(server: TestServer) {
    let key = server.admin_key().await;
    let holder = server.create_identity(&key, json!({"externalId": "taken"})).await;
    server.create_identity(&key, json!({"externalId": "mine", "meta": {"v": 1}})).await;
    let body = json!({"identity": "mine", "externalId": "taken", "meta": {"v": 2}});
    let response = server.call("identities.updateIdentity", &key, body).await;
    response.assert_error(409, "unkey/data/identity_already_exists");
    let error = &response.body["error"];
    assert_eq!((&error["conflictingField"], &error["conflictingValue"]), (&json!("externalId"), &json!("taken")));
    assert_eq!(error["existingIdentityId"], holder.as_str());
    let mine = server.call("identities.getIdentity", &key, json!({"identity": "mine"})).await;
    assert_eq!(mine.body["data"]["meta"], json!({"v": 1}), "nothing was written");
    let updater = server.root_key(&["identity.*.update_identity"]).await;
    let blind =
        server.call("identities.updateIdentity", &updater, json!({"identity": "mine", "externalId": "taken"})).await;
    blind.assert_error(409, "unkey/data/identity_already_exists");
    assert!(blind.body["error"].get("existingIdentityId").is_none(), "withheld from a key that cannot read it");
}

async fn fifty_concurrent_renames_to_one_free_externalid_give_one_success_and_clean_409s(server: TestServer) {
    let key = server.admin_key().await;
    let mut ids = Vec::new();
    for index in 0..50 {
        ids.push(server.create_identity(&key, json!({"externalId": format!("user_{index}")})).await);
    }
    let renames = ids
        .iter()
        .map(|id| server.call("identities.updateIdentity", &key, json!({"identity": id, "externalId": "wanted"})));
    let statuses: Vec<u16> = join_all(renames).await.iter().map(|response| response.status).collect();
    assert_eq!(statuses.iter().filter(|status| **status == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 409).count(), 49, "{statuses:?}");
}
