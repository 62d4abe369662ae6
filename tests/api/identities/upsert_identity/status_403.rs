use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(upsert_needs_both_create_and_update);

async fn upsert_needs_both_create_and_update(server: TestServer) {
    for (permissions, missing) in [
        (&["identity.*.create_identity"][..], "identity.*.update_identity"),
        (&["identity.*.update_identity"][..], "identity.*.create_identity"),
    ] {
        let key = server.root_key(permissions).await;
        let response = server.call("identities.upsertIdentity", &key, json!({"externalId": "u"})).await;
        response.assert_error(403, "unkey/authorization/insufficient_permissions");
        assert!(response.detail().contains(missing), "{}", response.detail());
    }
    let both = server.root_key(&["identity.*.create_identity", "identity.*.update_identity"]).await;
    assert_eq!(server.call("identities.upsertIdentity", &both, json!({"externalId": "u"})).await.status, 200);
}
