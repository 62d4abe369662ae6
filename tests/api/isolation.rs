//! No operation reads or writes across workspaces, and each permission allows exactly its operation:
//! every operation × {own workspace, other workspace, no permission, per-identity read grant}.

use serde_json::{Value, json};

use crate::harness::TestServer;

crate::backend_tests!(every_operation_respects_workspace_and_permission_boundaries);

async fn every_operation_respects_workspace_and_permission_boundaries(server: TestServer) {
    let own = server.admin_key_in("alpha").await;
    let other = server.admin_key_in("beta").await;
    let target = server.create_identity(&own, json!({"externalId": "alpha_user", "meta": {"owner": "alpha"}})).await;
    let theirs = server.create_identity(&other, json!({"externalId": "beta_user"})).await;
    let (workspace, _) = server.store.ensure_workspace("alpha").await.unwrap();
    let no_permission = sigil::server::mint_root_key(&*server.store, &workspace, vec![]).await.unwrap();
    let read_grant =
        sigil::server::mint_root_key(&*server.store, &workspace, vec![format!("identity.{target}.read_identity")])
            .await
            .unwrap();

    let by_id = json!({"identity": target});
    let update = json!({"identity": target, "meta": {"owner": "intruder"}});
    let create = json!({"externalId": "alpha_user", "meta": {"owner": "intruder"}});
    // (operation, body, [own, other workspace, no permission, read grant])
    let matrix: [(&str, &Value, [u16; 4]); 6] = [
        ("identities.getIdentity", &by_id, [200, 404, 403, 200]),
        ("identities.listIdentities", &json!({}), [200, 200, 403, 200]),
        ("identities.updateIdentity", &update, [200, 404, 403, 403]),
        ("identities.createIdentity", &create, [409, 200, 403, 403]),
        ("identities.upsertIdentity", &json!({"externalId": "alpha_user"}), [200, 200, 403, 403]),
        ("identities.deleteIdentity", &by_id, [200, 404, 403, 403]),
    ];
    let callers =
        [("own", &own), ("other workspace", &other), ("no permission", &no_permission), ("read grant", &read_grant)];
    for (operation, body, expected) in matrix {
        // Outsiders first, so the owner's write and delete come last and see what outsiders left.
        for index in [1, 2, 3, 0] {
            let (caller, key) = callers[index];
            let response = server.call(operation, key, body.clone()).await;
            assert_eq!(response.status, expected[index], "{operation} as {caller}: {}", response.body);
            if operation == "identities.listIdentities" && response.status == 200 {
                let ids: Vec<&str> =
                    response.body["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
                let visible = if caller == "other workspace" { theirs.as_str() } else { target.as_str() };
                assert_eq!(ids, [visible], "{caller} lists only its own workspace");
            }
            if operation == "identities.updateIdentity" && index != 0 {
                let stored = server.call("identities.getIdentity", &own, by_id.clone()).await;
                assert_eq!(stored.body["data"]["meta"], json!({"owner": "alpha"}), "{caller} changed nothing");
            }
        }
    }
    let gone = server.call("identities.getIdentity", &own, by_id).await;
    gone.assert_error(404, "unkey/data/identity_not_found");
    let beta = server.list_all_ids(&other).await;
    assert_eq!(beta.len(), 2, "beta holds its own identity and the alpha_user it created in its own namespace");
    assert!(beta.contains(&theirs));
}
