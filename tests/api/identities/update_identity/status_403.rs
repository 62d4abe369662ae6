use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(updating_without_permission_is_403_before_the_lookup);

async fn updating_without_permission_is_403_before_the_lookup(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "u"})).await;
    for permissions in [&[][..], &["identity.*.create_identity"], &[&format!("identity.{id}.update_identity")]] {
        let key = server.root_key(permissions).await;
        for identity in ["u", "does_not_exist"] {
            let response =
                server.call("identities.updateIdentity", &key, json!({"identity": identity, "meta": {"x": 1}})).await;
            response.assert_error(403, "unkey/authorization/insufficient_permissions");
            assert!(response.detail().contains("identity.*.update_identity"));
        }
    }
    let after = server.call("identities.getIdentity", &admin, json!({"identity": "u"})).await;
    assert!(after.body["data"].get("meta").is_none(), "a denied update changes nothing");
}
