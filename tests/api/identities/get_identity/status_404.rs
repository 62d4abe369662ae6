use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    a_missing_identity_is_404,
    a_missing_identity_granted_by_id_is_404,
    a_deleted_identity_is_404,
    another_workspaces_identity_is_404,
    a_404_names_an_external_id_that_differs_only_in_case,
);

/// Case sensitivity is the most common mistake behind this 404: the answer names the externalId that
/// differs only in case, to a key that may read that identity, and to no other.
async fn a_404_names_an_external_id_that_differs_only_in_case(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "user_123"})).await;
    let response = server.call("identities.getIdentity", &admin, json!({"identity": "User_123"})).await;
    response.assert_error(404, "unkey/data/identity_not_found");
    assert_eq!(response.body["error"]["otherCaseExternalId"], "user_123", "{}", response.body);
    assert!(response.detail().contains("'user_123'") && response.detail().contains("case-sensitive"));
    // A key granted "USER_123" by id, which no identity has, gets the 404 for it, but may not read the
    // identity holding "user_123": it is not named.
    let granted_by_name = server.root_key(&["identity.USER_123.read_identity"]).await;
    let response = server.call("identities.getIdentity", &granted_by_name, json!({"identity": "USER_123"})).await;
    response.assert_error(404, "unkey/data/identity_not_found");
    assert_eq!(response.detail(), "This identity does not exist.", "{}", response.body);
    let granted_it =
        server.root_key(&[&format!("identity.{id}.read_identity"), "identity.USER_123.read_identity"]).await;
    let response = server.call("identities.getIdentity", &granted_it, json!({"identity": "USER_123"})).await;
    assert_eq!(response.body["error"]["otherCaseExternalId"], "user_123", "a key that may read it is told");
    server.call("identities.deleteIdentity", &admin, json!({"identity": id})).await;
    let gone = server.call("identities.getIdentity", &admin, json!({"identity": "User_123"})).await;
    assert_eq!(gone.detail(), "This identity does not exist.", "a deleted identity gives no hint");
}

async fn a_missing_identity_is_404(server: TestServer) {
    let admin = server.admin_key().await;
    let reader = server.root_key(&["identity.*.read_identity"]).await;
    for key in [&admin, &reader] {
        for lookup in ["nobody", "id_01ZZZZZZZZZZZZZZZZZZZZZZZZ", "@#$%", "nul\u{0}byte"] {
            let response = server.call("identities.getIdentity", key, json!({"identity": lookup})).await;
            response.assert_error(404, "unkey/data/identity_not_found");
            assert_eq!(response.detail(), "This identity does not exist.");
            assert_eq!(response.body["error"]["title"], "Not Found");
        }
    }
}

async fn a_deleted_identity_is_404(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "gone"})).await;
    assert_eq!(server.call("identities.deleteIdentity", &key, json!({"identity": id})).await.status, 200);
    for lookup in [id.as_str(), "gone"] {
        server
            .call("identities.getIdentity", &key, json!({"identity": lookup}))
            .await
            .assert_error(404, "unkey/data/identity_not_found");
    }
}

async fn another_workspaces_identity_is_404(server: TestServer) {
    let owner = server.admin_key_in("owner").await;
    let id = server.create_identity(&owner, json!({"externalId": "private"})).await;
    let stranger = server.admin_key_in("stranger").await;
    for lookup in [id.as_str(), "private"] {
        server
            .call("identities.getIdentity", &stranger, json!({"identity": lookup}))
            .await
            .assert_error(404, "unkey/data/identity_not_found");
    }
}

/// A key granted one identity by id learns that it is gone.
async fn a_missing_identity_granted_by_id_is_404(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "gone"})).await;
    let reader = server.root_key(&[&format!("identity.{id}.read_identity")]).await;
    assert_eq!(server.call("identities.deleteIdentity", &admin, json!({"identity": id})).await.status, 200);
    let response = server.call("identities.getIdentity", &reader, json!({"identity": id})).await;
    response.assert_error(404, "unkey/data/identity_not_found");
}
