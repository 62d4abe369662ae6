//! What the request log says: every authenticated request names its workspace and root key (by id, never
//! the key or its hash), and a conflict names what collided and which identity holds it.

use std::time::Duration;

use serde_json::{Value, json};
use sigil::domain::permission::all_permissions;
use sigil::server::mint_root_key;
use sqlx::{Connection, SqliteConnection};

use crate::harness::SigilProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicts_log_line_names_workspace_root_key_field_value_and_holder() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sigil.db").display());
    let node = SigilProcess::start(&url).await;
    let store = sigil::store::open(&url).await.expect("open");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await.expect("key");
    store.close().await;
    let mut database = SqliteConnection::connect(&url).await.expect("connect");
    let root_key_id: String = sqlx::query_scalar("SELECT id FROM root_keys WHERE key_hash = $1")
        .bind(sigil::domain::root_key::hash(&key))
        .fetch_one(&mut database)
        .await
        .expect("root key id");

    let client = reqwest::Client::new();
    let create = |external_id: &'static str| {
        client
            .post(format!("{}/v2/identities.createIdentity", node.base_url))
            .bearer_auth(&key)
            .json(&json!({"externalId": external_id}))
            .send()
    };
    let created: Value = create("user_123").await.unwrap().json().await.unwrap();
    let conflict: Value = create("user_123").await.unwrap().json().await.unwrap();
    let existing_id = created["data"]["identityId"].as_str().unwrap();
    let conflict_id = conflict["meta"]["requestId"].as_str().unwrap();

    let line = log_line(&node, conflict_id).await;
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    let fields = &entry["fields"];
    assert_eq!(fields["workspace"], workspace.as_str(), "{line}");
    assert_eq!(fields["root_key_id"], root_key_id, "{line}");
    assert_eq!(fields["conflicting_field"], "externalId", "{line}");
    assert_eq!(fields["conflicting_value"], "user_123", "{line}");
    assert_eq!(fields["existing_identity_id"], existing_id, "{line}");
    let created_line = log_line(&node, created["meta"]["requestId"].as_str().unwrap()).await;
    assert!(created_line.contains(&root_key_id) && created_line.contains(workspace.as_str()), "{created_line}");
    for secret in [key.as_str(), &sigil::domain::root_key::hash(&key)] {
        assert!(!node.logs.lock().unwrap().join("\n").contains(secret), "the log holds a secret");
    }
    node.kill().await;
}

/// The log line of request `request_id`, once the node has written it (read from its stderr pipe).
async fn log_line(node: &SigilProcess, request_id: &str) -> String {
    for _ in 0..50 {
        let found = node.logs.lock().unwrap().iter().find(|line| line.contains(request_id)).cloned();
        if let Some(line) = found {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no log line names {request_id}");
}
