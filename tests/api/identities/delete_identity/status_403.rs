use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(deleting_without_permission_is_403_and_deletes_nothing);

async fn deleting_without_permission_is_403_and_deletes_nothing(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "u"})).await;
    for permissions in [
        &[][..],
        &["identity.*.create_identity"],
        &["identity.*.read_identity"],
        &["key.*.delete_key"],
        &["IDENTITY.*.DELETE_IDENTITY"],
    ] {
        let key = server.root_key(permissions).await;
        let response = server.call("identities.deleteIdentity", &key, json!({"identity": id})).await;
        response.assert_error(403, "unkey/authorization/insufficient_permissions");
        assert!(response.detail().contains("permission"));
    }
    assert_eq!(server.list_all_ids(&admin).await, [id]);
}
