//! v1 `identities.createIdentity`, `getIdentity`, `listIdentities`, `updateIdentity` and `deleteIdentity`:
//! every status each can answer, and v1 and v2 over the same data.

use reqwest::Method;
use serde_json::json;

use crate::harness::TestServer;
use crate::v1::{assert_v1_error, v1};

crate::backend_tests!(
    create_identity_200_is_visible_to_v2_with_its_ratelimits,
    create_identity_400_names_the_first_problem_before_the_key_is_checked,
    create_identity_403_for_a_missing_unknown_or_unpermitted_key,
    create_identity_409_for_a_taken_external_id_or_a_repeated_ratelimit_name,
    an_external_id_with_capitals_beyond_ascii_is_found_by_every_lookup,
    create_identity_replays_with_an_idempotency_key,
    get_identity_200_by_id_and_by_external_id,
    get_identity_400_without_either_id_even_without_a_key,
    get_identity_403_without_read_permission_whether_or_not_it_exists,
    get_identity_404_names_what_was_asked,
    list_identities_200_pages_after_the_cursor_with_total,
    list_identities_400_for_a_bad_limit,
    list_identities_403_without_read_permission,
    list_identities_200_with_the_environments_grant,
    update_identity_200_with_the_error_pages_request_verbatim,
    update_identity_200_replaces_ratelimits_by_name_keeping_ids,
    update_identity_400_without_either_id,
    update_identity_404_for_a_missing_identity,
    update_identity_409_for_a_repeated_ratelimit_name,
    delete_identity_200_then_404,
    delete_identity_400_without_identity_id,
    delete_identity_403_without_delete_permission,
    delete_identity_replays_its_200_to_a_retry_with_its_key,
    create_identity_400_for_what_unkey_answered_500_or_stored,
    create_identity_takes_whole_numbers_written_as_floats,
    get_identity_by_id_never_matches_an_external_id,
    get_identity_by_external_id_never_matches_an_id,
    a_search_finds_a_non_ascii_external_id_by_its_own_text,
    update_identity_keeps_auto_apply_on_a_ratelimit_it_names_again,
    errors_of_the_outer_layers_come_in_v1s_envelope,
);

async fn delete_identity_replays_its_200_to_a_retry_with_its_key(server: TestServer) {
    let key = server.admin_key().await;
    let id = create(&server, &key, "user_1").await;
    let send = || {
        server.send(
            reqwest::Client::new()
                .post(format!("{}/v1/{DELETE}", server.base_url))
                .bearer_auth(&key)
                .header("idempotency-key", "delete-once")
                .json(&json!({"identityId": id})),
        )
    };
    let first = send().await;
    assert_eq!((first.status, &first.body), (200, &json!({})));
    let retry = send().await;
    assert_eq!(retry.status, 200, "the identity is gone, and the retry is told what the delete answered");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
}

async fn create_identity_400_for_what_unkey_answered_500_or_stored(server: TestServer) {
    let key = server.admin_key().await;
    let limits: Vec<_> = (0..51).map(|n| json!({"name": format!("l{n}"), "limit": 1, "duration": 1000})).collect();
    for (body, message) in [
        (json!({"externalId": "x".repeat(257)}), "externalId: String must contain at most 256 character(s)"),
        (json!({"externalId": "nul\u{0}here"}), "externalId: String must not contain NUL"),
        (json!({"externalId": "abc", "ratelimits": limits}), "ratelimits: Array must contain at most 50 element(s)"),
    ] {
        let response = v1(&server, Method::POST, CREATE, Some(&key), &body).await;
        assert_v1_error(&response, 400, "BAD_REQUEST", message);
    }
}

async fn create_identity_takes_whole_numbers_written_as_floats(server: TestServer) {
    let key = server.admin_key().await;
    let body = json!({"externalId": "floats", "ratelimits": [{"name": "a", "limit": 10.0, "duration": 1e3}]});
    let created = v1(&server, Method::POST, CREATE, Some(&key), &body).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let got = v1(&server, Method::GET, GET, Some(&key), &json!({"externalId": "floats"})).await;
    assert_eq!(got.body["ratelimits"], json!([{"name": "a", "limit": 10, "duration": 1000}]));
}

async fn get_identity_by_id_never_matches_an_external_id(server: TestServer) {
    let key = server.admin_key().await;
    create(&server, &key, "id_looks_like_an_id").await;
    let response = v1(&server, Method::GET, GET, Some(&key), &json!({"identityId": "id_looks_like_an_id"})).await;
    assert_v1_error(&response, 404, "NOT_FOUND", "identity id_looks_like_an_id not found");
}

/// An externalId may spell another identity's id: asked by externalId, v1 finds the identity holding it,
/// while the other is live and after it was deleted.
async fn get_identity_by_external_id_never_matches_an_id(server: TestServer) {
    let key = server.admin_key().await;
    let first = create(&server, &key, "first").await;
    let namesake = create(&server, &key, &first).await;
    for moment in ["while the identity with that id is live", "after its delete"] {
        let got = v1(&server, Method::GET, GET, Some(&key), &json!({"externalId": first})).await;
        assert_eq!(got.body["id"], namesake, "{moment}: {}", got.body);
        let update = json!({"externalId": first, "meta": {"moment": moment}});
        assert_eq!(v1(&server, Method::POST, UPDATE, Some(&key), &update).await.status, 200, "{moment}");
        server.call("identities.deleteIdentity", &key, json!({"identity": first})).await;
    }
    let got = v1(&server, Method::GET, GET, Some(&key), &json!({"identityId": namesake})).await;
    assert_eq!(got.body["meta"], json!({"moment": "after its delete"}), "both updates reached the namesake");
}

/// v1 takes any externalId. Case folds only for ASCII letters, as the databases' `LOWER` folds them.
async fn a_search_finds_a_non_ascii_external_id_by_its_own_text(server: TestServer) {
    let key = server.admin_key().await;
    let id = create(&server, &key, "Ölfirma-7").await;
    let search = |term: &str| server.call("identities.listIdentities", &key, json!({"search": term}));
    for term in ["Ölfirma", " ÖLFIRMA-7 ", "lfirma"] {
        let found = search(term).await;
        assert_eq!(found.body["data"][0]["id"], id, "{term:?}: {}", found.body);
    }
    assert_eq!(search("ölfirma").await.body["data"], json!([]), "Ö is not folded");
    let reader = server.root_key(&[&format!("identity.{id}.read_identity")]).await;
    let granted = server.call("identities.listIdentities", &reader, json!({"search": "ÖLFIRMA"})).await;
    assert_eq!(granted.body["data"][0]["id"], id, "a per-identity grant's search folds alike: {}", granted.body);
}

async fn update_identity_keeps_auto_apply_on_a_ratelimit_it_names_again(server: TestServer) {
    let key = server.admin_key().await;
    let limit = |name: &str| json!({"name": name, "limit": 1, "duration": 1000, "autoApply": true});
    let body = json!({"externalId": "auto", "ratelimits": [limit("kept"), limit("dropped")]});
    let id = server.create_identity(&key, body).await;
    let update = json!({"identityId": id, "ratelimits": [
        {"name": "kept", "limit": 2, "duration": 1000}, {"name": "new", "limit": 3, "duration": 1000}]});
    assert_eq!(v1(&server, Method::POST, UPDATE, Some(&key), &update).await.status, 200);
    let v2 = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    let auto_apply: Vec<(String, bool)> = v2.body["data"]["ratelimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|limit| (limit["name"].as_str().unwrap().to_owned(), limit["autoApply"].as_bool().unwrap()))
        .collect();
    assert_eq!(auto_apply, [("kept".to_owned(), true), ("new".to_owned(), false)]);
}

/// Answers made before a v1 handler runs (a body over the limit, an unknown route) reach v1's client in v1's
/// envelope, with `Unkey-Request-Id`, as the handlers' own do.
async fn errors_of_the_outer_layers_come_in_v1s_envelope(server: TestServer) {
    let too_large = server
        .send(
            reqwest::Client::new()
                .post(format!("{}/v1/{CREATE}", server.base_url))
                .header("content-type", "application/json")
                .body(vec![b' '; 5 * 1024 * 1024]),
        )
        .await;
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    assert_eq!(too_large.body["error"]["code"], "BAD_REQUEST");
    assert_eq!(too_large.body["error"]["requestId"], too_large.headers["unkey-request-id"].to_str().unwrap());
    let unknown = v1(&server, Method::POST, "identities.renameIdentity", None, &json!({})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"]["code"], "NOT_FOUND", "{}", unknown.body);
}

const CREATE: &str = "identities.createIdentity";
const GET: &str = "identities.getIdentity";
const LIST: &str = "identities.listIdentities";
const UPDATE: &str = "identities.updateIdentity";
const DELETE: &str = "identities.deleteIdentity";

async fn create(server: &TestServer, key: &str, external_id: &str) -> String {
    let created = v1(server, Method::POST, CREATE, Some(key), &json!({"externalId": external_id})).await;
    assert_eq!(created.status, 200, "{}", created.body);
    created.body["identityId"].as_str().expect("identityId").to_owned()
}

async fn create_identity_200_is_visible_to_v2_with_its_ratelimits(server: TestServer) {
    let key = server.admin_key().await;
    let body = json!({"externalId": "user@example.com", "meta": {"plan": "pro"},
        "ratelimits": [{"name": "tokens", "limit": 10, "duration": 1000}]});
    let created = v1(&server, Method::POST, CREATE, Some(&key), &body).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let id = created.body["identityId"].as_str().unwrap();
    assert_eq!(created.body, json!({"identityId": id}));
    assert!(created.headers["unkey-request-id"].to_str().unwrap().starts_with("req_"));
    let v2 = server.call("identities.getIdentity", &key, json!({"identity": "user@example.com"})).await;
    assert_eq!(v2.body["data"]["id"], id);
    assert_eq!(v2.body["data"]["meta"], json!({"plan": "pro"}));
    assert_eq!(v2.body["data"]["ratelimits"][0]["autoApply"], false);
}

async fn create_identity_400_names_the_first_problem_before_the_key_is_checked(server: TestServer) {
    let cases = [
        (json!({"externalId": "ab"}), "externalId: String must contain at least 3 character(s)"),
        (json!({}), "externalId: Required"),
        (json!({"externalId": 7}), "externalId: Expected string, received number"),
        (json!({"externalId": "abc", "meta": null}), "meta: Expected object, received null"),
        (
            json!({"externalId": "abc", "ratelimits": [{"name": "a", "limit": 1, "duration": 10}]}),
            "ratelimits.0.duration: Number must be greater than or equal to 1000",
        ),
        (
            json!({"externalId": "abc", "ratelimits": [{"name": "a", "limit": 1.5, "duration": 1000}]}),
            "ratelimits.0.limit: Expected integer, received float",
        ),
        (json!([]), ": Expected object, received array"),
    ];
    for (body, message) in cases {
        let response = v1(&server, Method::POST, CREATE, None, &body).await;
        assert_v1_error(&response, 400, "BAD_REQUEST", message);
    }
    let malformed = server
        .send(
            reqwest::Client::new()
                .post(format!("{}/v1/{CREATE}", server.base_url))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_v1_error(&malformed, 400, "BAD_REQUEST", "Malformed JSON in request body");
    let key = server.admin_key().await;
    let huge = json!({"externalId": "abc", "meta": {"k": "x".repeat(64_001)}});
    let response = v1(&server, Method::POST, CREATE, Some(&key), &huge).await;
    assert_v1_error(
        &response,
        400,
        "BAD_REQUEST",
        "metadata is too large, it must be less than 64k characters when json encoded, got: 64009",
    );
}

async fn create_identity_403_for_a_missing_unknown_or_unpermitted_key(server: TestServer) {
    let body = json!({"externalId": "user_1"});
    assert_v1_error(&v1(&server, Method::POST, CREATE, None, &body).await, 403, "UNAUTHORIZED", "key required");
    let unknown = v1(&server, Method::POST, CREATE, Some("nope"), &body).await;
    assert_v1_error(&unknown, 403, "UNAUTHORIZED", "key not found");
    let reader = server.root_key(&["identity.*.read_identity"]).await;
    let denied = v1(&server, Method::POST, CREATE, Some(&reader), &body).await;
    assert_eq!(denied.body["error"]["code"], "INSUFFICIENT_PERMISSIONS", "{}", denied.body);
    let message = denied.body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Missing one of these permissions: ['\""), "{message}");
    assert!(message.contains("create_identity"), "{message}");
}

async fn create_identity_409_for_a_taken_external_id_or_a_repeated_ratelimit_name(server: TestServer) {
    let key = server.admin_key().await;
    create(&server, &key, "user_123").await;
    let taken = v1(&server, Method::POST, CREATE, Some(&key), &json!({"externalId": "user_123"})).await;
    assert_v1_error(&taken, 409, "CONFLICT", "Identity with externalId \"user_123\" already exists in this workspace");
    let limit = json!({"name": "tokens", "limit": 1, "duration": 1000});
    let repeated = json!({"externalId": "user_456", "ratelimits": [limit, limit]});
    let response = v1(&server, Method::POST, CREATE, Some(&key), &repeated).await;
    assert_v1_error(&response, 409, "CONFLICT", "Ratelimit with name \"tokens\" is already defined in the request");
}

async fn create_identity_replays_with_an_idempotency_key(server: TestServer) {
    let key = server.admin_key().await;
    let body = r#"{"externalId":"user_1"}"#;
    let send = || {
        server.send(
            reqwest::Client::new()
                .post(format!("{}/v1/{CREATE}", server.base_url))
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .header("idempotency-key", "v1-order")
                .body(body),
        )
    };
    let first = send().await;
    assert_eq!(first.status, 200, "{}", first.body);
    let retry = send().await;
    assert_eq!(retry.text, first.text);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
}

async fn get_identity_200_by_id_and_by_external_id(server: TestServer) {
    let key = server.admin_key().await;
    let body = json!({"externalId": "user_123", "meta": {"stripeCustomerId": "cus_123"},
        "ratelimits": [{"name": "tokens", "limit": 10, "duration": 1000}]});
    let id = v1(&server, Method::POST, CREATE, Some(&key), &body).await.body["identityId"].as_str().unwrap().to_owned();
    let expected = json!({"id": id, "externalId": "user_123", "meta": {"stripeCustomerId": "cus_123"},
        "ratelimits": [{"name": "tokens", "limit": 10, "duration": 1000}]});
    for query in
        [json!({"identityId": id}), json!({"externalId": "user_123"}), json!({"identityId": id, "externalId": "x"})]
    {
        let got = v1(&server, Method::GET, GET, Some(&key), &query).await;
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(got.body, expected);
    }
}

async fn get_identity_400_without_either_id_even_without_a_key(server: TestServer) {
    let response = v1(&server, Method::GET, GET, None, &json!({})).await;
    assert_v1_error(&response, 400, "BAD_REQUEST", "Provide either identityId or externalId");
    let empty = v1(&server, Method::GET, GET, None, &json!({"identityId": ""})).await;
    assert_v1_error(&empty, 400, "BAD_REQUEST", "identityId: String must contain at least 1 character(s)");
}

async fn get_identity_403_without_read_permission_whether_or_not_it_exists(server: TestServer) {
    let admin = server.admin_key().await;
    create(&server, &admin, "exists").await;
    let writer = server.root_key(&["identity.*.create_identity"]).await;
    for external_id in ["exists", "missing"] {
        let response = v1(&server, Method::GET, GET, Some(&writer), &json!({"externalId": external_id})).await;
        assert_eq!(response.status, 403, "{}", response.body);
        assert_eq!(response.body["error"]["code"], "INSUFFICIENT_PERMISSIONS");
        assert!(!response.text.contains("id_"), "no identity id is named: {}", response.text);
    }
}

async fn get_identity_404_names_what_was_asked(server: TestServer) {
    let key = server.admin_key().await;
    let by_id = v1(&server, Method::GET, GET, Some(&key), &json!({"identityId": "id_missing"})).await;
    assert_v1_error(&by_id, 404, "NOT_FOUND", "identity id_missing not found");
    let by_external = v1(&server, Method::GET, GET, Some(&key), &json!({"externalId": "nobody"})).await;
    assert_v1_error(&by_external, 404, "NOT_FOUND", "identity nobody not found");
}

async fn list_identities_200_pages_after_the_cursor_with_total(server: TestServer) {
    let key = server.admin_key().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(create(&server, &key, &format!("user_{n}")).await);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut query = json!({"limit": "2"});
    loop {
        let page = v1(&server, Method::GET, LIST, Some(&key), &query).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.body["total"], 5);
        let identities = page.body["identities"].as_array().unwrap();
        if identities.is_empty() {
            assert!(page.body.get("cursor").is_none(), "an empty page has no cursor");
            break;
        }
        assert!(identities.iter().all(|identity| identity.get("meta").is_none()), "list items have no meta");
        seen.extend(identities.iter().map(|identity| identity["id"].as_str().unwrap().to_owned()));
        assert_eq!(page.body["cursor"], identities.last().unwrap()["id"], "the cursor is the page's last id");
        query = json!({"limit": "2", "cursor": page.body["cursor"]});
    }
    assert_eq!(seen, ids, "every identity once, in id order");
    let elsewhere = v1(&server, Method::GET, LIST, Some(&key), &json!({"environment": "staging"})).await;
    assert_eq!(elsewhere.body, json!({"identities": [], "total": 0}));
}

async fn list_identities_400_for_a_bad_limit(server: TestServer) {
    let key = server.admin_key().await;
    for (limit, message) in [
        ("abc", "limit: Expected number, received nan"),
        ("0", "limit: Number must be greater than or equal to 1"),
        ("101", "limit: Number must be less than or equal to 100"),
        ("1.5", "limit: Expected integer, received float"),
    ] {
        let response = v1(&server, Method::GET, LIST, Some(&key), &json!({"limit": limit})).await;
        assert_v1_error(&response, 400, "BAD_REQUEST", message);
    }
}

async fn list_identities_403_without_read_permission(server: TestServer) {
    let writer = server.root_key(&["identity.*.create_identity"]).await;
    let response = v1(&server, Method::GET, LIST, Some(&writer), &json!({})).await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(response.body["error"]["code"], "INSUFFICIENT_PERMISSIONS");
    let other_environment = server.root_key(&["identity.staging.read_identity"]).await;
    let response = v1(&server, Method::GET, LIST, Some(&other_environment), &json!({})).await;
    assert_eq!(response.status, 403, "the default environment's list needs its grant: {}", response.body);
}

/// Unkey's v1 list takes the grant of the environment listed, as its own test does.
async fn list_identities_200_with_the_environments_grant(server: TestServer) {
    let admin = server.admin_key().await;
    let id = create(&server, &admin, "listed").await;
    let reader = server.root_key(&["identity.default.read_identity"]).await;
    let response = v1(&server, Method::GET, LIST, Some(&reader), &json!({})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!((&response.body["identities"][0]["id"], &response.body["total"]), (&json!(id), &json!(1)));
}

/// The fix on Unkey's `identity_already_exists` page, as it is written there.
async fn update_identity_200_with_the_error_pages_request_verbatim(server: TestServer) {
    let key = server.admin_key().await;
    let id = create(&server, &key, "user_123").await;
    let body = json!({"externalId": "user_123", "meta": {"name": "Updated User", "email": "updated@example.com"}});
    let updated = v1(&server, Method::POST, UPDATE, Some(&key), &body).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(
        updated.body,
        json!({"id": id, "externalId": "user_123",
            "meta": {"name": "Updated User", "email": "updated@example.com"}, "ratelimits": []})
    );
}

async fn update_identity_200_replaces_ratelimits_by_name_keeping_ids(server: TestServer) {
    let key = server.admin_key().await;
    let body = json!({"externalId": "user_1", "ratelimits": [
        {"name": "a", "limit": 1, "duration": 1000}, {"name": "b", "limit": 2, "duration": 1000}]});
    let id = v1(&server, Method::POST, CREATE, Some(&key), &body).await.body["identityId"].as_str().unwrap().to_owned();
    let before = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    let kept_id = before.body["data"]["ratelimits"][0]["id"].clone();
    let update = json!({"identityId": id, "ratelimits": [
        {"name": "a", "limit": 5, "duration": 2000}, {"name": "c", "limit": 3, "duration": 1000}]});
    let updated = v1(&server, Method::POST, UPDATE, Some(&key), &update).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(
        updated.body["ratelimits"],
        json!([{"name": "a", "limit": 5, "duration": 2000}, {"name": "c", "limit": 3, "duration": 1000}])
    );
    let after = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    assert_eq!(after.body["data"]["ratelimits"][0]["id"], kept_id, "a ratelimit named again keeps its id");
}

async fn update_identity_400_without_either_id(server: TestServer) {
    let key = server.admin_key().await;
    let response = v1(&server, Method::POST, UPDATE, Some(&key), &json!({"meta": {}})).await;
    assert_v1_error(&response, 400, "BAD_REQUEST", "Provide either identityId or externalId");
}

async fn update_identity_404_for_a_missing_identity(server: TestServer) {
    let key = server.admin_key().await;
    let response = v1(&server, Method::POST, UPDATE, Some(&key), &json!({"identityId": "id_nope", "meta": {}})).await;
    assert_v1_error(&response, 404, "NOT_FOUND", "identity id_nope not found");
    let by_external = v1(&server, Method::POST, UPDATE, Some(&key), &json!({"externalId": "nobody"})).await;
    assert_v1_error(&by_external, 404, "NOT_FOUND", "identity nobody not found");
}

async fn update_identity_409_for_a_repeated_ratelimit_name(server: TestServer) {
    let key = server.admin_key().await;
    let id = create(&server, &key, "user_1").await;
    let limit = json!({"name": "tokens", "limit": 1, "duration": 1000});
    let body = json!({"identityId": id, "ratelimits": [limit, limit]});
    let response = v1(&server, Method::POST, UPDATE, Some(&key), &body).await;
    assert_v1_error(&response, 409, "CONFLICT", "Ratelimit with name \"tokens\" is already defined in the request");
}

async fn delete_identity_200_then_404(server: TestServer) {
    let key = server.admin_key().await;
    let id = create(&server, &key, "user_1").await;
    let deleted = v1(&server, Method::POST, DELETE, Some(&key), &json!({"identityId": id})).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body, json!({}));
    let again = v1(&server, Method::POST, DELETE, Some(&key), &json!({"identityId": id})).await;
    assert_v1_error(&again, 404, "NOT_FOUND", &format!("identity {id} not found"));
    create(&server, &key, "user_1").await;
}

async fn delete_identity_400_without_identity_id(server: TestServer) {
    let key = server.admin_key().await;
    let response = v1(&server, Method::POST, DELETE, Some(&key), &json!({"externalId": "user_1"})).await;
    assert_v1_error(&response, 400, "BAD_REQUEST", "identityId: Required");
}

async fn delete_identity_403_without_delete_permission(server: TestServer) {
    let admin = server.admin_key().await;
    let id = create(&server, &admin, "user_1").await;
    let reader = server.root_key(&["identity.*.read_identity"]).await;
    let response = v1(&server, Method::POST, DELETE, Some(&reader), &json!({"identityId": id})).await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(response.body["error"]["code"], "INSUFFICIENT_PERMISSIONS");
    let still = v1(&server, Method::GET, GET, Some(&admin), &json!({"identityId": id})).await;
    assert_eq!(still.status, 200);
}

/// v1 takes any externalId, capitals beyond ASCII included, and every lookup by externalId (v1's and v2's)
/// seeks the folded externalId first: on PostgreSQL a stored `Ä` had been folded in the "C" collation (to
/// `Ä`) and a looked-up one in the database's (to `ä`), so such an identity could be neither read, updated,
/// collided with nor deleted by its externalId.
async fn an_external_id_with_capitals_beyond_ascii_is_found_by_every_lookup(server: TestServer) {
    let key = server.admin_key().await;
    let external_id = "Ärger-Öl@example.com";
    let id = create(&server, &key, external_id).await;
    let updated = server.call(UPDATE, &key, json!({"identity": external_id, "meta": {"n": 1}})).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let got = server.call(GET, &key, json!({"identity": external_id})).await;
    assert_eq!(got.body["data"], json!({"id": id, "externalId": external_id, "meta": {"n": 1}}), "{}", got.body);
    let v1_got = v1(&server, Method::GET, GET, Some(&key), &json!({"externalId": external_id})).await;
    assert_eq!(v1_got.body["id"], id.as_str(), "{}", v1_got.body);
    let taken = v1(&server, Method::POST, CREATE, Some(&key), &json!({"externalId": external_id})).await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let deleted = server.call(DELETE, &key, json!({"identity": external_id})).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
}
