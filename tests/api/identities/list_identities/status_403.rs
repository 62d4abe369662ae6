use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(a_key_without_any_read_grant_is_403_whatever_the_workspace_holds);

/// Whether a workspace is empty, or what a search matches, must not change the answer to a key that may
/// read nothing: Unkey's 200 for an empty page and 403 otherwise let any key find out which externalIds
/// exist, and the 403's detail named their ids.
async fn a_key_without_any_read_grant_is_403_whatever_the_workspace_holds(server: TestServer) {
    let admin = server.admin_key().await;
    let key = server.root_key(&["identity.*.create_identity", "identity.*.update_identity"]).await;
    let empty = server.call("identities.listIdentities", &key, json!({})).await;
    empty.assert_error(403, "unkey/authorization/insufficient_permissions");
    let id = server.create_identity(&admin, json!({"externalId": "hidden"})).await;
    for search in [json!({}), json!({"search": "hidden"}), json!({"search": "nothing matches this"})] {
        let response = server.call("identities.listIdentities", &key, search).await;
        response.assert_error(403, "unkey/authorization/insufficient_permissions");
        assert_eq!(response.detail(), empty.detail(), "the same answer whatever is stored");
        assert!(!response.detail().contains(&id));
    }
}
