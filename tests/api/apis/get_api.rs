use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    get_api_200_with_a_grant_for_that_api_alone,
    get_api_403_before_the_lookup,
    get_api_404_for_missing_deleted_or_another_workspaces,
);

async fn create_api(server: &TestServer, key: &str) -> String {
    let created = server.call("apis.createApi", key, json!({"name": "production"})).await;
    created.body["data"]["apiId"].as_str().expect("apiId").to_owned()
}

async fn get_api_200_with_a_grant_for_that_api_alone(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let granted = server.root_key(&[&format!("api.{api_id}.read_api")]).await;
    let got = server.call("apis.getApi", &granted, json!({"apiId": api_id})).await;
    assert_eq!(got.status, 200, "{}", got.body);
}

async fn get_api_403_before_the_lookup(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let stranger = server.root_key(&["identity.*.read_identity"]).await;
    for asked in [api_id.as_str(), "api_missing_one"] {
        let response = server.call("apis.getApi", &stranger, json!({"apiId": asked})).await;
        response.assert_error(403, "unkey/authorization/insufficient_permissions");
    }
}

async fn get_api_404_for_missing_deleted_or_another_workspaces(server: TestServer) {
    let admin = server.admin_key().await;
    let deleted = create_api(&server, &admin).await;
    assert_eq!(server.call("apis.deleteApi", &admin, json!({"apiId": deleted})).await.status, 200);
    let theirs = create_api(&server, &server.admin_key_in("other").await).await;
    for asked in ["api_missing_one", deleted.as_str(), theirs.as_str()] {
        let response = server.call("apis.getApi", &admin, json!({"apiId": asked})).await;
        response.assert_error(404, "unkey/data/api_not_found");
    }
}
