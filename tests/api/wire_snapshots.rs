//! The wire format, locked: the status, content type and body of every route × every status it returns,
//! on both databases, against one set of snapshots (`tests/api/snapshots/`). The official clients depend
//! on these bytes, so a change that alters one fails here until its snapshot is reviewed and accepted
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo test wire_snapshots` and read the diff).
//!
//! Generated values are redacted: request ids, identity and ratelimit ids (also inside error details and
//! cursors). Both backends must produce the very same text.

use serde_json::{Value, json};

use crate::harness::{ApiResponse, TestServer};

crate::backend_tests!(every_route_and_status_answers_in_its_locked_shape);

/// Replaces every generated id (`<prefix>_` followed by a 26-character ULID) with `<prefix>_[ulid]`.
fn redact_ids(text: &str) -> String {
    let is_ulid_char = |c: u8| c.is_ascii_digit() || c.is_ascii_uppercase();
    let bytes = text.as_bytes();
    let mut redacted = String::with_capacity(text.len());
    let mut at = 0;
    while at < bytes.len() {
        let prefix_ends = ["req_", "id_", "rl_", "ws_", "key_"].iter().find_map(|prefix| {
            let end = at + prefix.len();
            let starts_word = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
            let ulid = bytes.get(end..end + 26)?;
            let after = bytes.get(end + 26).copied();
            (starts_word
                && text[at..].starts_with(prefix)
                && ulid.iter().all(|&c| is_ulid_char(c))
                && !after.is_some_and(is_ulid_char))
            .then_some(end)
        });
        match prefix_ends {
            Some(end) => {
                redacted.push_str(&text[at..end]);
                redacted.push_str("[ulid]");
                at = end + 26;
            }
            None => {
                let next = text[at..].chars().next().expect("in bounds");
                redacted.push(next);
                at += next.len_utf8();
            }
        }
    }
    redacted
}

fn snapshot(name: &str, response: &ApiResponse) {
    let body: Value = serde_json::from_str(&response.text).expect("JSON body");
    let content_type = response.headers.get("content-type").and_then(|value| value.to_str().ok()).unwrap_or("");
    let shown =
        format!("{} {content_type}\n{}", response.status, serde_json::to_string_pretty(&body).expect("serializes"));
    insta::assert_snapshot!(name, redact_ids(&shown));
}

async fn every_route_and_status_answers_in_its_locked_shape(server: TestServer) {
    let admin = server.admin_key().await;
    let no_permission = server.root_key(&[]).await;
    let create_only = server.root_key(&["identity.*.create_identity"]).await;
    let writer = server.root_key(&["identity.*.create_identity", "identity.*.update_identity"]).await;
    let ratelimits = json!([{"name": "api", "limit": 10, "duration": 1000, "autoApply": true}]);
    let id = server
        .create_identity(&admin, json!({"externalId": "user_1", "meta": {"plan": "pro"}, "ratelimits": ratelimits}))
        .await;
    server.create_identity(&admin, json!({"externalId": "user_2"})).await;

    let cases: Vec<(&str, &str, &str, Value)> = vec![
        ("create_identity__200", "identities.createIdentity", &admin, json!({"externalId": "user_3"})),
        ("create_identity__400", "identities.createIdentity", &admin, json!({"externalId": ""})),
        ("create_identity__401", "identities.createIdentity", "sk_wrong", json!({"externalId": "user_4"})),
        ("create_identity__403", "identities.createIdentity", &no_permission, json!({"externalId": "user_4"})),
        ("create_identity__409", "identities.createIdentity", &admin, json!({"externalId": "user_1"})),
        ("create_identity__409_unreadable", "identities.createIdentity", &create_only, json!({"externalId": "user_1"})),
        ("get_identity__200", "identities.getIdentity", &admin, json!({"identity": id})),
        ("get_identity__400", "identities.getIdentity", &admin, json!({})),
        ("get_identity__401", "identities.getIdentity", "sk_wrong", json!({"identity": id})),
        ("get_identity__403", "identities.getIdentity", &no_permission, json!({"identity": id})),
        ("get_identity__404", "identities.getIdentity", &admin, json!({"identity": "nobody"})),
        ("list_identities__200", "identities.listIdentities", &admin, json!({"limit": 1})),
        ("list_identities__400", "identities.listIdentities", &admin, json!({"limit": 0})),
        ("list_identities__401", "identities.listIdentities", "sk_wrong", json!({})),
        ("list_identities__403", "identities.listIdentities", &no_permission, json!({"limit": 1})),
        (
            "update_identity__200",
            "identities.updateIdentity",
            &admin,
            json!({"identity": id, "meta": {"plan": "free"}}),
        ),
        ("update_identity__400", "identities.updateIdentity", &admin, json!({"identity": id, "meta": 1})),
        ("update_identity__401", "identities.updateIdentity", "sk_wrong", json!({"identity": id})),
        ("update_identity__403", "identities.updateIdentity", &no_permission, json!({"identity": id})),
        ("update_identity__404", "identities.updateIdentity", &admin, json!({"identity": "nobody", "meta": {}})),
        ("upsert_identity__200_created", "identities.upsertIdentity", &admin, json!({"externalId": "user_5"})),
        (
            "upsert_identity__200_updated",
            "identities.upsertIdentity",
            &admin,
            json!({"externalId": "user_1", "meta": {"plan": "team"}}),
        ),
        ("upsert_identity__200_unreadable", "identities.upsertIdentity", &writer, json!({"externalId": "user_1"})),
        ("upsert_identity__400", "identities.upsertIdentity", &admin, json!({"externalId": 5})),
        ("upsert_identity__401", "identities.upsertIdentity", "sk_wrong", json!({"externalId": "user_5"})),
        ("upsert_identity__403", "identities.upsertIdentity", &no_permission, json!({"externalId": "user_5"})),
        ("delete_identity__400", "identities.deleteIdentity", &admin, json!({"identity": ""})),
        ("delete_identity__401", "identities.deleteIdentity", "sk_wrong", json!({"identity": "user_2"})),
        ("delete_identity__403", "identities.deleteIdentity", &no_permission, json!({"identity": "user_2"})),
        ("delete_identity__404", "identities.deleteIdentity", &admin, json!({"identity": "nobody"})),
        ("delete_identity__200", "identities.deleteIdentity", &admin, json!({"identity": "user_2"})),
    ];
    for (name, operation, key, body) in cases {
        snapshot(name, &server.call(operation, key, body).await);
    }

    let malformed = server.post("identities.getIdentity").header("authorization", "Basic x").json(&json!({}));
    snapshot("any_route__400_malformed_authorization", &server.send(malformed).await);
    let no_json = server.post("identities.getIdentity").bearer_auth(&admin).body("{");
    snapshot("any_route__400_content_type", &server.send(no_json).await);
    let not_json =
        server.post("identities.getIdentity").bearer_auth(&admin).header("content-type", "application/json").body("{");
    snapshot("any_route__400_not_json", &server.send(not_json).await);
    let too_large = server
        .post("identities.createIdentity")
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(vec![b' '; sigil::Limits::default().max_body_bytes + 1]);
    snapshot("any_route__413", &server.send(too_large).await);
    let many_values =
        format!(r#"{{"externalId":"a","meta":{{"k":[{}0]}}}}"#, "0,".repeat(sigil::json_shape::MAX_VALUES));
    let too_many_values =
        server.post("identities.createIdentity").bearer_auth(&admin).header("content-type", "application/json");
    snapshot("any_route__413_too_many_values", &server.send(too_many_values.body(many_values)).await);
    snapshot("unknown_route__404", &server.send(server.post("identities.nothing")).await);
    let wrong_method = reqwest::Client::new().get(format!("{}/v2/identities.getIdentity", server.base_url));
    snapshot("any_route__405", &server.send(wrong_method).await);

    let first =
        server.call_idempotent("identities.createIdentity", &admin, "key_1", r#"{"externalId":"user_6"}"#).await;
    let replay =
        server.call_idempotent("identities.createIdentity", &admin, "key_1", r#"{"externalId":"user_6"}"#).await;
    assert_eq!(first.text, replay.text, "a replay is the first answer, byte for byte");
    snapshot("any_write__200_replayed", &replay);
    let reused =
        server.call_idempotent("identities.createIdentity", &admin, "key_1", r#"{"externalId":"user_7"}"#).await;
    snapshot("any_write__422_key_reused", &reused);

    server.store.close().await;
    snapshot(
        "any_route__503_database_unavailable",
        &server.call("identities.getIdentity", &admin, json!({"identity": id})).await,
    );
}

#[test]
fn generated_ids_are_redacted_and_nothing_else() {
    assert_eq!(
        redact_ids(r#"{"id":"id_01M8TVSWWNY3X0FTKWT7FGGAY0","x":"identity.id_01M8TVSWWNY3X0FTKWT7FGGAY0.read"}"#),
        r#"{"id":"id_[ulid]","x":"identity.id_[ulid].read"}"#
    );
    for kept in ["grid_01M8TVSWWNY3X0FTKWT7FGGAY0", "id_short", "id_01M8TVSWWNY3X0FTKWT7FGGAY0X", "ünï id_"] {
        assert_eq!(redact_ids(kept), kept);
    }
}
