use futures::future::join_all;
use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    a_second_create_of_one_externalid_is_409_naming_the_existing_identity,
    the_existing_id_is_withheld_from_a_key_that_cannot_read_it,
    a_deleted_externalid_can_be_created_again,
    each_workspace_is_told_its_own_holder_of_a_shared_externalid,
);

async fn a_second_create_of_one_externalid_is_409_naming_the_existing_identity(server: TestServer) {
    let key = server.admin_key().await;
    let existing = server.create_identity(&key, json!({"externalId": "user_1", "meta": {"v": 1}})).await;
    let response =
        server.call("identities.createIdentity", &key, json!({"externalId": "user_1", "meta": {"v": 2}})).await;
    response.assert_error(409, "unkey/data/identity_already_exists");
    let error = &response.body["error"];
    assert_eq!(error["title"], "Conflict");
    assert_eq!(error["detail"], "Identity with externalId 'user_1' already exists in this workspace.");
    assert_eq!(error["conflictingField"], "externalId");
    assert_eq!(error["conflictingValue"], "user_1");
    assert_eq!(error["existingIdentityId"], existing.as_str());
    assert_eq!(error["retrieve"]["path"], "/v2/identities.getIdentity");

    let retrieve = server.call("identities.getIdentity", &key, error["retrieve"]["body"].clone()).await;
    assert_eq!(retrieve.status, 200);
    assert_eq!(retrieve.body["data"]["meta"], json!({"v": 1}), "the losing create changed nothing");
}

async fn the_existing_id_is_withheld_from_a_key_that_cannot_read_it(server: TestServer) {
    let admin = server.admin_key().await;
    server.create_identity(&admin, json!({"externalId": "user_1"})).await;
    let creator = server.root_key(&["identity.*.create_identity"]).await;
    let response = server.call("identities.createIdentity", &creator, json!({"externalId": "user_1"})).await;
    response.assert_error(409, "unkey/data/identity_already_exists");
    assert_eq!(response.body["error"]["conflictingField"], "externalId");
    assert!(response.body["error"].get("existingIdentityId").is_none(), "{}", response.body);
    assert!(response.body["error"].get("retrieve").is_none());
}

async fn a_deleted_externalid_can_be_created_again(server: TestServer) {
    let key = server.admin_key().await;
    for generation in 0..3 {
        let id =
            server.create_identity(&key, json!({"externalId": "recycled", "meta": {"generation": generation}})).await;
        // The second collision is answered from what the first taught the node (SQLite): the delete must
        // void it before it is acknowledged.
        for _ in 0..2 {
            let response = server.call("identities.createIdentity", &key, json!({"externalId": "recycled"})).await;
            response.assert_error(409, "unkey/data/identity_already_exists");
            assert_eq!(response.body["error"]["existingIdentityId"], id.as_str());
        }
        let deleted = server.call("identities.deleteIdentity", &key, json!({"identity": id})).await;
        assert_eq!(deleted.status, 200, "{}", deleted.body);
    }
    assert!(server.list_all_ids(&key).await.is_empty());
}

/// Concurrent creates from several workspaces share a group commit (PostgreSQL), and the holders of a
/// colliding externalId are looked up across workspaces: each 409 must still name its own workspace's.
async fn each_workspace_is_told_its_own_holder_of_a_shared_externalid(server: TestServer) {
    let workspaces = ["alpha", "beta", "gamma"];
    let mut holders = Vec::new();
    for workspace in workspaces {
        let key = server.admin_key_in(workspace).await;
        let existing = server.create_identity(&key, json!({"externalId": "shared"})).await;
        holders.push((key, existing));
    }
    let server = &server;
    let retries = holders.iter().cycle().take(30).map(|(key, existing)| async move {
        (server.call("identities.createIdentity", key, json!({"externalId": "shared"})).await, existing)
    });
    for (response, existing) in join_all(retries).await {
        response.assert_error(409, "unkey/data/identity_already_exists");
        assert_eq!(response.body["error"]["existingIdentityId"], existing.as_str(), "{}", response.body);
    }
}
