use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(a_key_without_create_permission_is_403);

async fn a_key_without_create_permission_is_403(server: TestServer) {
    for permissions in
        [&[][..], &["identity.*.read_identity"], &["identity.create_identity"], &["IDENTITY.*.CREATE_IDENTITY"]]
    {
        let key = server.root_key(permissions).await;
        let response = server.call("identities.createIdentity", &key, json!({"externalId": "u"})).await;
        response.assert_error(403, "unkey/authorization/insufficient_permissions");
        assert_eq!(response.body["error"]["title"], "Insufficient Permissions");
        assert!(response.detail().starts_with("Missing one of these permissions: identity.*.create_identity or"));
    }
    let admin = server.admin_key().await;
    assert!(server.list_all_ids(&admin).await.is_empty(), "a denied create writes nothing");
}
