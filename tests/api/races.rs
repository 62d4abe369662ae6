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
    concurrent_meta_updates_of_one_identity_by_id_and_externalid_each_answer_their_own_meta,
    concurrent_meta_updates_of_many_identities_each_write_their_own_identity,
    meta_updates_racing_a_delete_get_200_or_404_and_none_outlives_it,
    concurrent_upserts_with_and_without_meta_each_create_or_update_their_own_identity,
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

/// On PostgreSQL concurrent updates of meta alone share one statement; two of them naming one identity (by id
/// and by externalId, too) must still both be written, one after the other.
async fn concurrent_meta_updates_of_one_identity_by_id_and_externalid_each_answer_their_own_meta(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "hot"})).await;
    let updates = (0..60).map(|n| {
        let identity = if n % 2 == 0 { id.as_str() } else { "hot" };
        server.call("identities.updateIdentity", &key, json!({"identity": identity, "meta": {"n": n}}))
    });
    let responses = join_all(updates).await;
    for (n, response) in responses.iter().enumerate() {
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.body["data"]["id"], id.as_str());
        assert_eq!(response.body["data"]["meta"], json!({"n": n}), "each update answers with what it wrote");
    }
    let after = server.call("identities.getIdentity", &key, json!({"identity": "hot"})).await;
    let n = after.body["data"]["meta"]["n"].as_u64().expect("the last update's meta");
    assert!(n < 60);
}

async fn concurrent_meta_updates_of_many_identities_each_write_their_own_identity(server: TestServer) {
    let key = server.admin_key().await;
    let ids =
        join_all((0..100).map(|n| server.create_identity(&key, json!({"externalId": format!("user_{n}")})))).await;
    let updates = (0..100).map(|n| {
        let identity = if n % 2 == 0 { ids[n].clone() } else { format!("user_{n}") };
        server.call("identities.updateIdentity", &key, json!({"identity": identity, "meta": {"n": n}}))
    });
    for (n, response) in join_all(updates).await.iter().enumerate() {
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.body["data"]["id"], ids[n].as_str());
        assert_eq!(response.body["data"]["externalId"], format!("user_{n}"));
        assert_eq!(response.body["data"]["meta"], json!({"n": n}));
    }
    for (n, id) in ids.iter().enumerate() {
        let got = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
        assert_eq!(got.body["data"]["meta"], json!({"n": n}), "identity {n} holds its own update");
    }
}

/// An update answered 404 found the identity deleted; one answered 200 wrote before the delete, which
/// therefore answered after it. Nothing written after the delete brings the identity back.
async fn meta_updates_racing_a_delete_get_200_or_404_and_none_outlives_it(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "doomed"})).await;
    let update =
        |n: usize| server.call("identities.updateIdentity", &key, json!({"identity": "doomed", "meta": {"n": n}}));
    let delete = server.call("identities.deleteIdentity", &key, json!({"identity": id}));
    let (before, deleted, after) =
        futures::join!(join_all((0..40).map(update)), delete, join_all((40..80).map(update)));
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    for response in before.iter().chain(&after) {
        assert!(response.status == 200 || response.status == 404, "{}: {}", response.status, response.text);
    }
    let late = server.call("identities.updateIdentity", &key, json!({"identity": "doomed", "meta": {}})).await;
    late.assert_error(404, "unkey/data/identity_not_found");
    let got = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    got.assert_error(404, "unkey/data/identity_not_found");
}

/// On PostgreSQL concurrent upserts share statements: those that send meta one, those that do not another,
/// and a second upsert of one externalId in a group runs after them.
async fn concurrent_upserts_with_and_without_meta_each_create_or_update_their_own_identity(server: TestServer) {
    let key = server.admin_key().await;
    let existing = join_all(
        (0..20).map(|n| server.create_identity(&key, json!({"externalId": format!("user_{n}"), "meta": {"old": n}}))),
    )
    .await;
    let upsert = |n: usize, with_meta: bool| {
        let mut body = json!({"externalId": format!("user_{n}")});
        if with_meta {
            body["meta"] = json!({"n": n});
        }
        server.call("identities.upsertIdentity", &key, body)
    };
    let (with_meta, without_meta) =
        futures::join!(join_all((0..40).map(|n| upsert(n, true))), join_all((0..40).map(|n| upsert(n, false))));
    for (n, (sent, kept)) in with_meta.iter().zip(&without_meta).enumerate() {
        assert_eq!((sent.status, kept.status), (200, 200), "{} {}", sent.text, kept.text);
        assert_eq!(sent.body["data"]["externalId"], format!("user_{n}"));
        assert_eq!(sent.body["data"]["meta"], json!({"n": n}), "an upsert answers with the meta it wrote");
        assert_eq!(sent.body["data"]["id"], kept.body["data"]["id"], "both upserts of user_{n} name one identity");
        let created = [sent, kept].iter().filter(|response| response.body["data"]["created"] == true).count();
        if n < 20 {
            assert_eq!(sent.body["data"]["id"], existing[n].as_str());
            assert_eq!(created, 0, "user_{n} existed");
            let meta = &kept.body["data"]["meta"];
            assert!(*meta == json!({"old": n}) || *meta == json!({"n": n}), "user_{n} kept its meta: {meta}");
        } else {
            assert_eq!(created, 1, "user_{n} was created once");
        }
    }
    assert_eq!(server.list_all_ids(&key).await.len(), 40);
}
