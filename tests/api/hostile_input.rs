//! Property tests of request decoding and validation: whatever arrives (random bytes, arbitrary JSON,
//! deep nesting, hostile unicode, wrong types) every route answers in the envelope, with no 5xx, no
//! panic and no hang. Bounded: a fixed number of cases per property.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::harness::{Backend, TestServer};

const OPERATIONS: [&str; 6] = [
    "identities.createIdentity",
    "identities.getIdentity",
    "identities.listIdentities",
    "identities.updateIdentity",
    "identities.deleteIdentity",
    "identities.upsertIdentity",
];
const CASES: u32 = 96;

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9_.-]{0,300}",
        Just("\u{0}".repeat(64)),
        Just("\u{202e}\u{200b}\u{feff}é\u{301}👩‍👩‍👧".to_owned()),
        Just("x".repeat(70_000)),
        Just("'; DROP TABLE identities; --".to_owned()),
        Just("%_\\".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        hostile_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(8, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(hostile_string(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Valid-looking bodies with one field replaced by anything.
fn near_miss_body() -> impl Strategy<Value = Value> {
    let field = prop::sample::select(vec!["externalId", "identity", "meta", "ratelimits", "limit", "cursor", "search"]);
    (field, json_value()).prop_map(|(field, value)| {
        let mut body = json!({
            "externalId": "user_1", "identity": "user_1", "meta": {"a": 1},
            "ratelimits": [{"name": "api", "limit": 1, "duration": 1000, "autoApply": true}]
        });
        body[field] = value;
        body
    })
}

#[derive(Debug)]
enum Payload {
    Bytes(Vec<u8>),
    Json(Value),
}

fn payload() -> impl Strategy<Value = (usize, Payload)> {
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Payload::Bytes),
        json_value().prop_map(Payload::Json),
        near_miss_body().prop_map(Payload::Json),
    ];
    (0..OPERATIONS.len(), body)
}

#[test]
fn no_request_body_gets_a_5xx_or_leaves_the_envelope() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (server, key) = runtime.block_on(async {
        let server = TestServer::start(Backend::Sqlite).await.unwrap();
        let key = server.admin_key().await;
        server.create_identity(&key, json!({"externalId": "user_1"})).await;
        (server, key)
    });
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    runner
        .run(&payload(), |(operation, payload)| {
            let request =
                server.post(OPERATIONS[operation]).bearer_auth(&key).header("content-type", "application/json");
            let request = match payload {
                Payload::Bytes(bytes) => request.body(bytes),
                Payload::Json(value) => request.body(serde_json::to_vec(&value).unwrap()),
            };
            let sent = async { tokio::time::timeout(std::time::Duration::from_secs(10), server.send(request)).await };
            let response = runtime.block_on(sent).expect("answered within 10 s");
            prop_assert!(response.status < 500, "{}: {} {}", OPERATIONS[operation], response.status, response.text);
            prop_assert!(response.request_id().starts_with("req_"), "{}", response.text);
            if response.status >= 400 {
                prop_assert!(response.body["error"]["type"].is_string(), "{}", response.text);
            }
            Ok(())
        })
        .unwrap();
    let alive = runtime.block_on(server.call("identities.listIdentities", &key, json!({})));
    assert_eq!(alive.status, 200);
}

#[tokio::test]
async fn pathological_bodies_are_rejected_cleanly() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let key = server.admin_key().await;
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_meta = format!("{{\"externalId\":\"u\",\"meta\":{{\"a\":{}1{}}}}}", "[".repeat(5_000), "]".repeat(5_000));
    let huge_number = r#"{"externalId":"u","meta":{"n":1e999}}"#.to_owned();
    for body in [deep_array, deep_meta, huge_number] {
        let request =
            server.post("identities.createIdentity").bearer_auth(&key).header("content-type", "application/json");
        let response = server.send(request.body(body.clone())).await;
        assert!((400..500).contains(&response.status), "{}: {}", &body[..40.min(body.len())], response.text);
        assert!(response.body["error"]["type"].is_string());
    }
    // As in Unkey's Go server and JSON.parse, a repeated member takes its last value.
    let request = server.post("identities.createIdentity").bearer_auth(&key).header("content-type", "application/json");
    let created = server.send(request.body(r#"{"externalId":"first","externalId":"last"}"#)).await;
    assert_eq!(created.status, 200);
    let got = server.call("identities.getIdentity", &key, json!({"identity": "last"})).await;
    assert_eq!(got.status, 200);
}
