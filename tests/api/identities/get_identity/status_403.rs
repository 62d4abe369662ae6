use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    reading_without_permission_is_403,
    a_grant_for_another_identity_is_403,
    a_key_that_may_not_read_learns_nothing_of_what_exists,
);

async fn reading_without_permission_is_403(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "secret"})).await;
    let key = server.root_key(&["identity.*.create_identity"]).await;
    let by_external_id = server.call("identities.getIdentity", &key, json!({"identity": "secret"})).await;
    by_external_id.assert_error(403, "unkey/authorization/insufficient_permissions");
    assert!(by_external_id.detail().contains("identity.*.read_identity"));
    assert!(
        !by_external_id.detail().contains(&id),
        "the id behind an externalId stays hidden: {}",
        by_external_id.detail()
    );
    let other = server.create_identity(&admin, json!({"externalId": "other"})).await;
    let granted_another = server.root_key(&[&format!("identity.{other}.read_identity")]).await;
    let by_id = server.call("identities.getIdentity", &granted_another, json!({"identity": id})).await;
    by_id.assert_error(403, "unkey/authorization/insufficient_permissions");
    assert!(by_id.detail().contains(&format!("identity.{id}.read_identity")), "named by its id: {}", by_id.detail());
    assert!(!by_id.detail().contains('{'), "{}", by_id.detail());
}

async fn a_grant_for_another_identity_is_403(server: TestServer) {
    let admin = server.admin_key().await;
    let other = server.create_identity(&admin, json!({"externalId": "other"})).await;
    server.create_identity(&admin, json!({"externalId": "target"})).await;
    let key = server.root_key(&[&format!("identity.{other}.read_identity")]).await;
    let response = server.call("identities.getIdentity", &key, json!({"identity": "target"})).await;
    response.assert_error(403, "unkey/authorization/insufficient_permissions");
    assert!(!response.detail().contains(&other), "the detail names only what was needed");
}

/// Unkey looked the identity up first, so a key without read permission told 404 from 403 and learned
/// which externalIds exist. Here the answer is the same 403 either way.
async fn a_key_that_may_not_read_learns_nothing_of_what_exists(server: TestServer) {
    let admin = server.admin_key().await;
    let mine = server.create_identity(&admin, json!({"externalId": "mine"})).await;
    server.create_identity(&admin, json!({"externalId": "exists"})).await;
    let powerless = server.root_key(&["identity.*.create_identity"]).await;
    let granted_one = server.root_key(&[&format!("identity.{mine}.read_identity")]).await;
    for key in [&powerless, &granted_one] {
        let existing = server.call("identities.getIdentity", key, json!({"identity": "exists"})).await;
        let missing = server.call("identities.getIdentity", key, json!({"identity": "never_created"})).await;
        existing.assert_error(403, "unkey/authorization/insufficient_permissions");
        missing.assert_error(403, "unkey/authorization/insufficient_permissions");
        assert_eq!(existing.detail(), missing.detail());
    }
}
