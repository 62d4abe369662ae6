use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(deleting_what_is_not_there_is_404);

async fn deleting_what_is_not_there_is_404(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "once"})).await;
    assert_eq!(server.call("identities.deleteIdentity", &key, json!({"identity": id})).await.status, 200);
    let stranger = server.admin_key_in("stranger").await;
    server.create_identity(&stranger, json!({"externalId": "theirs"})).await;
    let nul_padded = format!("test_{}", "\u{0}".repeat(1000));
    for identity in [id.as_str(), "once", "theirs", "@#$%", nul_padded.as_str()] {
        let response = server.call("identities.deleteIdentity", &key, json!({"identity": identity})).await;
        response.assert_error(404, "unkey/data/identity_not_found");
    }
    assert_eq!(server.list_all_ids(&stranger).await.len(), 1, "another workspace's identity survives");
}
