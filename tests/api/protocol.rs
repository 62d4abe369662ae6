//! What every route shares: unknown routes and methods, panics, request ids, liveness, the OpenAPI document.

use axum::routing::post;
use serde_json::json;

use crate::harness::{Backend, Options, TestServer};

crate::backend_tests!(
    unknown_routes_and_methods_answer_in_the_envelope,
    every_response_carries_its_request_id_in_body_and_header,
    liveness_and_the_openapi_document_are_served,
    a_database_out_of_reach_answers_503_on_every_operation,
    a_wrong_root_key_is_remembered_as_wrong,
    errors_carry_the_media_type_unkeys_openapi_document_declares,
);

/// The official clients type an error only when its Content-Type is the declared one: problem+json for
/// every deleteIdentity error, application/json for the other operations' errors and every success.
async fn errors_carry_the_media_type_unkeys_openapi_document_declares(server: TestServer) {
    let key = server.admin_key().await;
    let media_type =
        |response: &crate::harness::ApiResponse| response.headers["content-type"].to_str().unwrap().to_owned();
    for operation in ["identities.getIdentity", "identities.updateIdentity", "identities.deleteIdentity"] {
        let missing = server.call(operation, &key, json!({"identity": "nobody"})).await;
        assert_eq!(missing.status, 404, "{operation}: {}", missing.body);
        let unknown_key = server.call(operation, "not_a_key", json!({"identity": "nobody"})).await;
        let declared =
            if operation.ends_with("deleteIdentity") { "application/problem+json" } else { "application/json" };
        for response in [&missing, &unknown_key] {
            assert_eq!(media_type(response), declared, "{operation} {}", response.status);
        }
    }
    let created = server.call("identities.createIdentity", &key, json!({"externalId": "u"})).await;
    assert_eq!(media_type(&created), "application/json");
    let deleted = server.call("identities.deleteIdentity", &key, json!({"identity": "u"})).await;
    assert_eq!((deleted.status, media_type(&deleted).as_str()), (200, "application/json"));
}

async fn unknown_routes_and_methods_answer_in_the_envelope(server: TestServer) {
    let key = server.admin_key().await;
    let unknown = server.call("identities.renameIdentity", &key, json!({})).await;
    unknown.assert_error(404, "sigil/request/route_not_found");
    let client = reqwest::Client::new();
    let get = client.get(format!("{}/v2/identities.createIdentity", server.base_url));
    let wrong_method = server.send(get).await;
    wrong_method.assert_error(405, "sigil/request/method_not_allowed");
}

async fn every_response_carries_its_request_id_in_body_and_header(server: TestServer) {
    let key = server.admin_key().await;
    let ok = server.call("identities.listIdentities", &key, json!({})).await;
    let failed = server.call("identities.getIdentity", &key, json!({"identity": "nobody"})).await;
    for response in [&ok, &failed] {
        let header = response.headers["x-request-id"].to_str().unwrap();
        assert_eq!(header, response.request_id());
        // Idle connections close after the 10 s read timeout; clients are told to retire them at 9 s.
        assert_eq!(response.headers["keep-alive"], "timeout=9");
    }
    assert_ne!(ok.request_id(), failed.request_id());
}

async fn a_database_out_of_reach_answers_503_on_every_operation(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "before_the_outage"})).await;
    server.store.close().await;
    let operations = [
        ("identities.createIdentity", json!({"externalId": "during_the_outage"})),
        ("identities.upsertIdentity", json!({"externalId": "during_the_outage"})),
        ("identities.getIdentity", json!({"identity": id})),
        ("identities.listIdentities", json!({})),
        ("identities.updateIdentity", json!({"identity": id, "meta": {"a": 1}})),
        ("identities.deleteIdentity", json!({"identity": id})),
    ];
    for (operation, body) in operations {
        let response = server.call(operation, &key, body).await;
        response.assert_error(503, "unkey/application/service_unavailable");
    }
    let unknown_key = server.call("identities.listIdentities", "sigil_not_cached", json!({})).await;
    unknown_key.assert_error(503, "unkey/application/service_unavailable");
}

/// A client retrying with a wrong key is answered from memory: even with the database gone, that key
/// still gets its 401, while a key never seen before needs the database.
async fn a_wrong_root_key_is_remembered_as_wrong(server: TestServer) {
    let wrong = "sigil_wrong_key_in_a_retry_loop";
    let first = server.call("identities.listIdentities", wrong, json!({})).await;
    first.assert_error(401, "unkey/authentication/key_not_found");
    server.store.close().await;
    let retry = server.call("identities.listIdentities", wrong, json!({})).await;
    retry.assert_error(401, "unkey/authentication/key_not_found");
    let never_seen = server.call("identities.listIdentities", "sigil_another_wrong_key", json!({})).await;
    never_seen.assert_error(503, "unkey/application/service_unavailable");
}

async fn liveness_and_the_openapi_document_are_served(server: TestServer) {
    let client = reqwest::Client::new();
    for path in ["/", "/v2/liveness"] {
        let response = server.send(client.get(format!("{}{path}", server.base_url))).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body["data"]["message"], "OK");
    }
    let document = server.send(client.get(format!("{}/openapi.json", server.base_url))).await;
    assert_eq!(document.body["openapi"], "3.1.0");
    assert!(document.body["paths"]["/v2/identities.createIdentity"].is_object());
}

async fn panics() -> &'static str {
    panic!("boom")
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    let router = sigil::routes::router().route("/v2/test.panic", post(panics));
    let server = TestServer::start_with(Backend::Sqlite, Options { router, ..Options::default() }).await.unwrap();
    let key = server.admin_key().await;
    let response = server.call("test.panic", &key, json!({})).await;
    response.assert_error(500, "unkey/application/unexpected_error");
    assert!(!response.detail().contains("boom"), "panic messages stay in the log");
    assert_eq!(server.call("identities.listIdentities", &key, json!({})).await.status, 200);
}

#[tokio::test]
async fn a_request_over_the_timeout_answers_408() {
    let slow = || async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    };
    let router = sigil::routes::router().route("/v2/test.slow", post(slow));
    let limits = sigil::Limits { request_timeout: std::time::Duration::from_millis(100), ..sigil::Limits::default() };
    let server =
        TestServer::start_with(Backend::Sqlite, Options { limits, router, ..Options::default() }).await.unwrap();
    let response = server.send(server.post("test.slow")).await;
    response.assert_error(408, "user/bad_request/request_timeout");
}

#[tokio::test]
async fn every_error_type_has_a_served_documentation_page() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let index = reqwest::get(format!("{}/docs/errors", server.base_url)).await.unwrap().text().await.unwrap();
    let paths: Vec<&str> =
        index.split("href=\"/docs/errors/").skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
    assert!(paths.contains(&"unkey/data/identity_already_exists"), "{index}");
    assert!(paths.contains(&"sigil/idempotency/key_reused"));
    for path in paths {
        let page = reqwest::get(format!("{}/docs/errors/{path}", server.base_url)).await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let html = page.text().await.unwrap();
        for section in ["Example response", "What happened", "Common scenarios", "How to fix", "Common mistakes"] {
            assert!(html.contains(section), "{path} lacks {section}");
        }
    }
    let unknown =
        server.send(reqwest::Client::new().get(format!("{}/docs/errors/unkey/data/nope", server.base_url))).await;
    unknown.assert_error(404, "sigil/request/route_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_capacity_liveness_and_metrics_still_answer() {
    let slow = || async {
        tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
        "done"
    };
    let router = sigil::routes::router().route("/v2/test.slow", post(slow));
    let limits = sigil::Limits { max_in_flight: 1, ..sigil::Limits::default() };
    let server =
        TestServer::start_with(Backend::Sqlite, Options { limits, router, ..Options::default() }).await.unwrap();
    let client = reqwest::Client::new();
    let holding = tokio::spawn(client.post(format!("{}/v2/test.slow", server.base_url)).send());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let shed = client.post(format!("{}/v2/test.slow", server.base_url)).send().await.unwrap();
    assert_eq!(shed.status(), 503, "the one slot is taken");
    for path in ["/", "/v2/liveness", "/metrics"] {
        let response = client.get(format!("{}{path}", server.base_url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} answers while every slot is taken");
    }
    assert_eq!(holding.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_capacity_the_server_sheds_load_with_503_and_recovers() {
    // Long enough that all 40 requests arrive while the first 4 still run, even on a loaded CI machine.
    let slow = || async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        "done"
    };
    let router = sigil::routes::router().route("/v2/test.slow", post(slow));
    let limits = sigil::Limits { max_in_flight: 4, ..sigil::Limits::default() };
    let server =
        TestServer::start_with(Backend::Sqlite, Options { limits, router, ..Options::default() }).await.unwrap();
    let client = reqwest::Client::new();
    let flood = (0..40).map(|_| client.post(format!("{}/v2/test.slow", server.base_url)).send());
    let responses = futures::future::join_all(flood).await;
    let mut served = 0;
    for response in responses {
        let response = response.expect("every request is answered");
        if response.status() == 200 {
            served += 1;
            continue;
        }
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "https://unkey.com/docs/api-reference/errors-v2/sigil/capacity/overloaded");
    }
    assert_eq!(served, 4, "exactly the configured capacity ran");
    assert_eq!(crate::metrics::sample(&server.base_url, "sigil_requests_shed_total").await, 36.0);
    let key = server.admin_key().await;
    let after = server.call("identities.listIdentities", &key, json!({})).await;
    assert_eq!(after.status, 200, "capacity frees up once the flood has passed");
}
