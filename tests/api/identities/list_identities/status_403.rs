use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(one_unreadable_identity_makes_the_page_403);

async fn one_unreadable_identity_makes_the_page_403(server: TestServer) {
    let admin = server.admin_key().await;
    let readable = server.create_identity(&admin, json!({"externalId": "readable"})).await;
    server.create_identity(&admin, json!({"externalId": "hidden"})).await;
    for key in [server.root_key(&[]).await, server.root_key(&[&format!("identity.{readable}.read_identity")]).await] {
        let response = server.call("identities.listIdentities", &key, json!({})).await;
        response.assert_error(403, "unkey/authorization/insufficient_permissions");
        assert!(response.detail().starts_with("Missing one of these permissions"));
    }
}
