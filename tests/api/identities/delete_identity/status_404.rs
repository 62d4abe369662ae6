use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(deleting_what_is_not_there_is_404, a_deleted_identitys_id_never_names_another_identity);

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

/// An externalId may be any text, another identity's id too; once that identity is deleted, its id still
/// names it alone, so that a retried delete by id deletes nothing more.
async fn a_deleted_identitys_id_never_names_another_identity(server: TestServer) {
    let key = server.admin_key().await;
    let first = server.create_identity(&key, json!({"externalId": "first"})).await;
    let namesake = server.create_identity(&key, json!({"externalId": first})).await;
    let got = server.call("identities.getIdentity", &key, json!({"identity": first})).await;
    assert_eq!(got.body["data"]["id"], first, "the id first, while it is live");
    assert_eq!(server.call("identities.deleteIdentity", &key, json!({"identity": first})).await.status, 200);
    let retried = server.call("identities.deleteIdentity", &key, json!({"identity": first})).await;
    retried.assert_error(404, "unkey/data/identity_not_found");
    let got = server.call("identities.getIdentity", &key, json!({"identity": first})).await;
    got.assert_error(404, "unkey/data/identity_not_found");
    let update = json!({"identity": first, "meta": {"plan": "pro"}});
    server.call("identities.updateIdentity", &key, update).await.assert_error(404, "unkey/data/identity_not_found");
    assert_eq!(server.list_all_ids(&key).await, [namesake.as_str()], "the namesake is untouched");
    let by_its_id = server.call("identities.getIdentity", &key, json!({"identity": namesake})).await;
    assert_eq!(by_its_id.body["data"]["externalId"], first, "{}", by_its_id.body);
}
