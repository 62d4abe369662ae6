//! The error documentation at `/docs/errors`: a complete page for every error type, in HTML for browsers and
//! in JSON for tools, whose commands call the server that served the page.

use reqwest::header::{ACCEPT, HOST};
use serde_json::Value;

use crate::harness::{Backend, TestServer};

const SECTIONS: [&str; 7] = [
    "Example response",
    "What happened",
    "Common scenarios",
    "Request that triggers it",
    "How to fix",
    "Code examples",
    "Common mistakes",
];

const JSON_SECTIONS: [&str; 7] = [
    "exampleResponse",
    "whatHappened",
    "commonScenarios",
    "triggeringRequest",
    "howToFix",
    "codeExamples",
    "commonMistakes",
];

/// The error type paths the HTML index links to.
async fn linked_paths(server: &TestServer) -> Vec<String> {
    let index = reqwest::get(format!("{}/docs/errors", server.base_url)).await.unwrap().text().await.unwrap();
    let paths: Vec<String> =
        index.split("href=\"/docs/errors/").skip(1).map(|rest| rest.split('"').next().unwrap().to_owned()).collect();
    assert!(paths.len() >= 15, "the index links every error type: {index}");
    paths
}

async fn html_page(server: &TestServer, path: &str) -> String {
    let response = reqwest::get(format!("{}/docs/errors/{path}", server.base_url)).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
    response.text().await.unwrap()
}

async fn json_page(url: &str) -> Value {
    let response = reqwest::Client::new().get(url).header(ACCEPT, "application/json").send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    assert_eq!(response.headers()["content-type"], "application/json", "{url}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn every_error_page_has_every_section_in_order_and_commands_for_this_server() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    for path in linked_paths(&server).await {
        let html = html_page(&server, &path).await;
        let mut previous = 0;
        for section in SECTIONS {
            let at = html.find(&format!("<h2>{section}</h2>")).unwrap_or_else(|| panic!("{path} lacks {section}"));
            assert!(at > previous, "{path}: {section} is out of order");
            previous = at;
        }
        assert!(html.contains("<pre><code>"), "{path} has no code block");
        assert!(html.contains(&format!("curl -s -X POST {}/v2/", server.base_url)), "{path}: {html}");
        assert!(!html.contains("{base}") && !html.contains("127.0.0.1:7070"), "{path} names another server");
        assert!(html.contains("<style>") && !html.contains("<link") && !html.contains("<script"), "{path}");
    }
}

#[tokio::test]
async fn commands_name_the_host_the_page_was_asked_for_at() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let url = format!("{}/docs/errors/unkey/data/identity_not_found", server.base_url);
    let page = reqwest::Client::new().get(url).header(HOST, "sigil.internal:8443").send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("curl -s -X POST http://sigil.internal:8443/v2/identities.getIdentity"), "{html}");
    assert!(!html.contains(&server.base_url));
}

#[tokio::test]
async fn the_identity_already_exists_page_names_every_way_out() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let html = html_page(&server, "unkey/data/identity_already_exists").await;
    for expected in [
        "different externalId",
        "/v2/identities.updateIdentity",
        "/v2/identities.getIdentity",
        "/v2/identities.upsertIdentity",
        "Idempotency-Key: signup-",
        "ConflictErrorResponse",
        "@unkey/api",
        "unkey.py",
        "User_123",
        "Case sensitivity",
        "one workspace per environment",
        "existingIdentityId",
        "retrieve",
    ] {
        assert!(html.contains(expected), "the page lacks {expected:?}");
    }
    let fixes = &html[html.find("<h2>How to fix</h2>").unwrap()..html.find("<h2>Code examples</h2>").unwrap()];
    assert!(fixes.matches("<li>").count() >= 5, "four fixes and a safe retry: {fixes}");
    assert_eq!(fixes.matches("$SIGIL_ROOT_KEY").count(), fixes.matches("<li>").count(), "{fixes}");
}

#[tokio::test]
async fn every_error_page_is_served_as_json_with_every_section_filled() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let index = json_page(&format!("{}/docs/errors", server.base_url)).await;
    let entries = index.as_array().expect("the index is a list");
    assert_eq!(entries.len(), linked_paths(&server).await.len());
    for entry in entries {
        let url = entry["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/docs/errors/", server.base_url)), "{entry}");
        let page = json_page(url).await;
        for field in ["type", "status", "title"] {
            assert_eq!(page[field], entry[field], "{url}");
        }
        let sections = &page["sections"];
        for section in JSON_SECTIONS {
            let value = &sections[section];
            let filled = value.as_str().is_some_and(|text| !text.is_empty())
                || value.as_array().is_some_and(|items| !items.is_empty());
            assert!(filled, "{url}: {section} is empty");
        }
        let example: Value = serde_json::from_str(sections["exampleResponse"].as_str().unwrap()).unwrap();
        assert_eq!(example["error"]["type"], page["type"], "{url}");
        assert_eq!(example["error"]["status"], page["status"], "{url}");
        assert!(example["meta"]["requestId"].as_str().unwrap().starts_with("req_"), "{url}");
        let status = page["status"].as_u64().unwrap();
        assert_eq!(example["error"]["errors"].is_array(), matches!(status, 400 | 408 | 413), "{url}");
        for fix in sections["howToFix"].as_array().unwrap() {
            assert!(!fix["description"].as_str().unwrap().is_empty(), "{url}");
            assert!(fix["request"].as_str().unwrap().contains("curl "), "{url}: {fix}");
        }
        for example in sections["codeExamples"].as_array().unwrap() {
            assert!(matches!(example["language"].as_str(), Some("typescript" | "python")), "{url}");
            assert!(!example["code"].as_str().unwrap().contains("{base}"), "{url}");
        }
        assert!(sections["triggeringRequest"].as_str().unwrap().contains(&server.base_url), "{url}");
    }
}

#[tokio::test]
async fn the_conflict_example_carries_the_extension_members_create_sends() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let url = format!("{}/docs/errors/unkey/data/identity_already_exists", server.base_url);
    let page = json_page(&url).await;
    let example: Value = serde_json::from_str(page["sections"]["exampleResponse"].as_str().unwrap()).unwrap();
    let error = &example["error"];
    assert_eq!(error["status"], 409);
    assert_eq!(error["conflictingField"], "externalId");
    assert_eq!(error["retrieve"]["path"], "/v2/identities.getIdentity");
    assert_eq!(error["retrieve"]["body"]["identity"], error["existingIdentityId"]);
    assert!(error["conflictingValue"].is_string() && error.get("errors").is_none(), "{example}");
}

#[tokio::test]
async fn an_unknown_error_type_is_404_in_the_envelope() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let client = reqwest::Client::new();
    for accept in ["text/html", "application/json"] {
        let request = client.get(format!("{}/docs/errors/unkey/data/nope", server.base_url)).header(ACCEPT, accept);
        server.send(request).await.assert_error(404, "sigil/request/route_not_found");
    }
}
