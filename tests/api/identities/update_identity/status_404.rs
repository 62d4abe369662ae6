use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(updating_a_missing_deleted_or_foreign_identity_is_404);

async fn updating_a_missing_deleted_or_foreign_identity_is_404(server: TestServer) {
    let key = server.admin_key().await;
    let gone = server.create_identity(&key, json!({"externalId": "gone"})).await;
    server.call("identities.deleteIdentity", &key, json!({"identity": gone})).await;
    let stranger = server.admin_key_in("stranger").await;
    server.create_identity(&stranger, json!({"externalId": "theirs"})).await;
    for identity in ["nobody", gone.as_str(), "gone", "theirs", "nul\u{0}"] {
        let response =
            server.call("identities.updateIdentity", &key, json!({"identity": identity, "meta": {"x": 1}})).await;
        response.assert_error(404, "unkey/data/identity_not_found");
        assert_eq!(response.detail(), "This identity does not exist.");
    }
    let theirs = server.call("identities.getIdentity", &stranger, json!({"identity": "theirs"})).await;
    assert!(theirs.body["data"].get("meta").is_none(), "another workspace's identity is untouched");
}
