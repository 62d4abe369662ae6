//! Concurrency properties the database must decide, not the application.

use futures::future::join_all;
use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    concurrent_creates_of_one_externalid_give_one_success_and_the_rest_409,
    concurrent_deletes_of_one_identity_give_one_success_and_the_rest_404,
    concurrent_upserts_of_one_externalid_end_with_one_identity,
    conflicting_creates_do_not_fail_the_creates_committed_with_them,
    creates_racing_deletes_of_their_externalid_each_get_200_or_a_409_naming_a_created_identity,
);

const CONCURRENT_CREATES: usize = 200;

async fn concurrent_creates_of_one_externalid_give_one_success_and_the_rest_409(server: TestServer) {
    let key = server.admin_key().await;
    let creates = (0..CONCURRENT_CREATES)
        .map(|n| server.call("identities.createIdentity", &key, json!({"externalId": "contested", "meta": {"n": n}})));
    let responses = join_all(creates).await;
    let winners: Vec<_> = responses.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "statuses: {:?}", responses.iter().map(|r| r.status).collect::<Vec<_>>());
    let winner_id = winners[0].body["data"]["identityId"].as_str().unwrap();
    for loser in responses.iter().filter(|r| r.status != 200) {
        loser.assert_error(409, "unkey/data/identity_already_exists");
        assert_eq!(loser.body["error"]["existingIdentityId"], winner_id);
    }
    assert_eq!(server.list_all_ids(&key).await, [winner_id]);
}

async fn concurrent_deletes_of_one_identity_give_one_success_and_the_rest_404(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "doomed"})).await;
    let deletes = (0..20).map(|_| server.call("identities.deleteIdentity", &key, json!({"identity": id})));
    let statuses: Vec<u16> = join_all(deletes).await.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200 || s == 404), "{statuses:?}");
}

async fn concurrent_upserts_of_one_externalid_end_with_one_identity(server: TestServer) {
    let key = server.admin_key().await;
    let upserts = (0..100)
        .map(|n| server.call("identities.upsertIdentity", &key, json!({"externalId": "contested", "meta": {"n": n}})));
    let responses = join_all(upserts).await;
    assert!(responses.iter().all(|r| r.status == 200), "{:?}", responses.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(responses.iter().filter(|r| r.body["data"]["created"] == true).count(), 1);
    let ids: std::collections::HashSet<&str> =
        responses.iter().map(|r| r.body["data"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(server.list_all_ids(&key).await.len(), 1);
}

/// On SQLite concurrent creates share one transaction (group commit); a conflict must roll back alone.
async fn conflicting_creates_do_not_fail_the_creates_committed_with_them(server: TestServer) {
    let key = server.admin_key().await;
    let limit = json!([{"name": "api", "limit": 1, "duration": 1000, "autoApply": false}]);
    let creates = (0..100).map(|n| {
        let external_id = if n % 2 == 0 { format!("unique_{n}") } else { "shared".to_owned() };
        server.call("identities.createIdentity", &key, json!({"externalId": external_id, "ratelimits": limit}))
    });
    let responses = join_all(creates).await;
    let created = responses.iter().filter(|r| r.status == 200).count();
    let conflicts = responses.iter().filter(|r| r.status == 409).count();
    assert_eq!((created, conflicts), (51, 49), "{:?}", responses.iter().map(|r| r.status).collect::<Vec<_>>());
    let ids = server.list_all_ids(&key).await;
    assert_eq!(ids.len(), 51);
    let got = server.call("identities.getIdentity", &key, json!({"identity": "unique_0"})).await;
    assert_eq!(got.body["data"]["ratelimits"][0]["name"], "api", "a committed create kept its ratelimits");
}

/// A create that collides names the holder it collided with; when deletes keep removing that holder, the create
/// is tried again. Every create then either stores an identity or names one that another create stored.
async fn creates_racing_deletes_of_their_externalid_each_get_200_or_a_409_naming_a_created_identity(
    server: TestServer,
) {
    let key = server.admin_key().await;
    let create = || server.call("identities.createIdentity", &key, json!({"externalId": "flapping"}));
    let delete = || server.call("identities.deleteIdentity", &key, json!({"identity": "flapping"}));
    let (creates, deletes) = futures::join!(join_all((0..60).map(|_| create())), join_all((0..60).map(|_| delete())));
    let created: std::collections::HashSet<&str> =
        creates.iter().filter(|r| r.status == 200).map(|r| r.body["data"]["identityId"].as_str().unwrap()).collect();
    assert!(!created.is_empty());
    for response in &creates {
        match response.status {
            200 => {}
            409 => {
                let holder = response.body["error"]["existingIdentityId"].as_str().unwrap();
                assert!(created.contains(holder), "a 409 names {holder}, which no create stored");
            }
            _ => panic!("a create racing deletes answered {}: {}", response.status, response.text),
        }
    }
    assert!(
        deletes.iter().all(|r| r.status == 200 || r.status == 404),
        "{:?}",
        deletes.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let deleted = deletes.iter().filter(|r| r.status == 200).count();
    assert_eq!(server.list_all_ids(&key).await.len(), created.len() - deleted, "live identities left");
}
