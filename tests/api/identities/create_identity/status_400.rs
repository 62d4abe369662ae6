use serde_json::{Value, json};

use crate::harness::TestServer;

crate::backend_tests!(
    schema_violations_are_rejected_with_their_keyword_path,
    duplicate_ratelimit_names_are_rejected,
    malformed_json_and_wrong_content_type_are_rejected,
    a_missing_authorization_header_is_400,
    a_malformed_authorization_header_is_400,
    the_body_is_validated_before_the_key,
    a_rejected_request_writes_nothing,
    meta_over_one_mebibyte_is_rejected,
    a_nul_in_a_ratelimit_name_is_rejected,
);

fn limit(name: &str) -> Value {
    json!({"name": name, "limit": 10, "duration": 1000, "autoApply": false})
}

async fn schema_violations_are_rejected_with_their_keyword_path(server: TestServer) {
    let key = server.admin_key().await;
    let many_keys: serde_json::Map<String, Value> = (0..101).map(|i| (format!("k{i}"), json!(i))).collect();
    let cases = [
        (json!({}), "/required"),
        (json!({"externalId": ""}), "/properties/externalId/minLength"),
        (json!({"externalId": "x".repeat(256)}), "/properties/externalId/maxLength"),
        (json!({"externalId": "has space"}), "/properties/externalId/pattern"),
        (json!({"externalId": "ünïcode"}), "/properties/externalId/pattern"),
        (json!({"externalId": 42}), "/properties/externalId/type"),
        (json!({"externalId": "u", "meta": "text"}), "/properties/meta/type"),
        (json!({"externalId": "u", "meta": many_keys}), "/properties/meta/maxProperties"),
        (
            json!({"externalId": "u", "ratelimits": [{"name": "ab", "limit": 1, "duration": 1000, "autoApply": true}]}),
            "/properties/ratelimits/items/properties/name/minLength",
        ),
        (
            json!({"externalId": "u", "ratelimits": [{"name": "api", "limit": 0, "duration": 1000, "autoApply": true}]}),
            "/properties/ratelimits/items/properties/limit/minimum",
        ),
        (
            json!({"externalId": "u", "ratelimits": [{"name": "api", "limit": -5, "duration": 1000, "autoApply": true}]}),
            "/properties/ratelimits/items/properties/limit/minimum",
        ),
        (
            json!({"externalId": "u", "ratelimits": [{"name": "api", "limit": 1, "duration": 999, "autoApply": true}]}),
            "/properties/ratelimits/items/properties/duration/minimum",
        ),
        (
            json!({"externalId": "u", "ratelimits": [{"name": "api", "limit": 1, "duration": 1000}]}),
            "/properties/ratelimits/items/required",
        ),
        (
            json!({"externalId": "u", "ratelimits": (0..51).map(|i| limit(&format!("limit{i}"))).collect::<Vec<_>>()}),
            "/properties/ratelimits/maxItems",
        ),
        (json!({"externalId": "u", "unknown": true}), "/additionalProperties"),
        (json!(["externalId"]), "/type"),
    ];
    for (body, location) in cases {
        let response = server.call("identities.createIdentity", &key, body.clone()).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(
            response.detail(),
            "POST request body for '/v2/identities.createIdentity' failed to validate schema",
            "{body}"
        );
        let locations: Vec<&str> = response.body["error"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["location"].as_str().unwrap())
            .collect();
        assert!(locations.contains(&location), "{body}: expected {location} in {locations:?}");
    }
}

async fn duplicate_ratelimit_names_are_rejected(server: TestServer) {
    let key = server.admin_key().await;
    let body = json!({"externalId": "u", "ratelimits": [limit("api"), limit("web"), limit("api")]});
    let response = server.call("identities.createIdentity", &key, body).await;
    response.assert_error(400, "unkey/application/invalid_input");
    assert_eq!(response.detail(), "Ratelimit with name 'api' is already defined in the request");
    assert_eq!(response.body["error"]["errors"][0]["location"], "/ratelimits/2/name");
}

async fn malformed_json_and_wrong_content_type_are_rejected(server: TestServer) {
    let key = server.admin_key().await;
    for body in ["{\"externalId\": ", "not json", "", "{\"externalId\": \"\\ud800\"}"] {
        let request =
            server.post("identities.createIdentity").bearer_auth(&key).header("content-type", "application/json");
        let response = server.send(request.body(body)).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert!(response.detail().contains("not valid JSON"), "{body:?}: {}", response.body);
    }
    let invalid_utf8 = server
        .post("identities.createIdentity")
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}']);
    server.send(invalid_utf8).await.assert_error(400, "unkey/application/invalid_input");
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut request = server.post("identities.createIdentity").bearer_auth(&key).body(r#"{"externalId":"u"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = server.send(request).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(response.body["error"]["errors"][0]["location"], "header.Content-Type");
    }
    let with_charset = server
        .post("identities.createIdentity")
        .bearer_auth(&key)
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"externalId":"charset"}"#);
    assert_eq!(server.send(with_charset).await.status, 200);
}

async fn a_missing_authorization_header_is_400(server: TestServer) {
    let response = server.send(server.post("identities.createIdentity").json(&json!({"externalId": "u"}))).await;
    response.assert_error(400, "unkey/application/invalid_input");
    assert_eq!(response.detail(), "Authorization header for 'bearer' scheme");
    assert_eq!(response.body["error"]["errors"][0]["location"], "security");
}

async fn a_malformed_authorization_header_is_400(server: TestServer) {
    for header in ["malformed_header", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer", "InvalidFormat xyz"] {
        let request =
            server.post("identities.createIdentity").header("authorization", header).json(&json!({"externalId": "u"}));
        let response = server.send(request).await;
        response.assert_error(400, "unkey/authentication/malformed");
        assert!(response.detail().contains("Bearer"), "{header}: {}", response.body);
    }
}

async fn the_body_is_validated_before_the_key(server: TestServer) {
    let response = server.call("identities.createIdentity", "not_a_key", json!({"externalId": ""})).await;
    response.assert_error(400, "unkey/application/invalid_input");
}

async fn a_rejected_request_writes_nothing(server: TestServer) {
    let key = server.admin_key().await;
    let bad_limit = json!({"name": "x", "limit": 1, "duration": 1000, "autoApply": true});
    let body = json!({"externalId": "half", "meta": {"a": 1}, "ratelimits": [limit("good"), bad_limit]});
    server.call("identities.createIdentity", &key, body).await.assert_error(400, "unkey/application/invalid_input");
    assert!(server.list_all_ids(&key).await.is_empty());
}

async fn meta_over_one_mebibyte_is_rejected(server: TestServer) {
    let key = server.admin_key().await;
    let body = json!({"externalId": "big", "meta": {"blob": "x".repeat(1024 * 1024)}});
    let response = server.call("identities.createIdentity", &key, body).await;
    response.assert_error(400, "unkey/application/invalid_input");
    assert!(response.detail().starts_with("Metadata is too large"), "{}", response.detail());
    assert!(server.list_all_ids(&key).await.is_empty());
}

async fn a_nul_in_a_ratelimit_name_is_rejected(server: TestServer) {
    let key = server.admin_key().await;
    let ratelimit = json!({"name": "api\u{0}calls", "limit": 1, "duration": 1000, "autoApply": true});
    let response =
        server.call("identities.createIdentity", &key, json!({"externalId": "u", "ratelimits": [ratelimit]})).await;
    response.assert_error(400, "unkey/application/invalid_input");
    assert_eq!(response.body["error"]["errors"][0]["location"], "/properties/ratelimits/items/properties/name/pattern");
    assert!(server.list_all_ids(&key).await.is_empty());
}
