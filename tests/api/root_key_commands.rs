//! `sigil root-key create` and `revoke`, beside a running server: a grant that could never match is refused
//! with the fix and writes nothing; a revoked key stops working on the server within the bound.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::harness::{Backend, SigilProcess, TestDatabase};
use crate::multi_node::call;

async fn root_key_create(database_url: &str, workspace: &str, permissions: &[&str]) -> std::process::Output {
    let mut args = vec!["root-key", "create", "--workspace", workspace, "--database", database_url];
    for permission in permissions {
        args.extend(["--permission", permission]);
    }
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil")).args(args).output().await.expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_could_never_match_is_refused_with_its_fix() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let url = database.url();
    let first = root_key_create(&url, "acme", &["identity.*.read_identity"]).await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let store = sigil::store::open(&url).await.expect("open");
    let workspace = store.find_workspace("acme").await.expect("read").expect("created");

    let by_name = root_key_create(&url, "acme", &["unkey:v1:acme:**#*"]).await;
    assert!(!by_name.status.success());
    let stderr = String::from_utf8_lossy(&by_name.stderr);
    assert!(stderr.contains("by its name"), "{stderr}");
    assert!(stderr.contains(&format!("unkey:v1:{}:**#*", workspace.as_str())), "the fix names the id: {stderr}");
    assert!(by_name.stdout.is_empty(), "no key is printed");

    for refused in ["identity.*.read", "identities.*.read_identity", "unkey:v1:ws_other:**#*"] {
        let output = root_key_create(&url, "acme", &["identity.*.read_identity", refused]).await;
        assert!(!output.status.success(), "{refused} was accepted");
    }
    let by_id = root_key_create(&url, "acme", &[&format!("unkey:v1:{}:**#*", workspace.as_str())]).await;
    assert!(by_id.status.success(), "{}", String::from_utf8_lossy(&by_id.stderr));

    let in_a_new_workspace = root_key_create(&url, "fresh", &["unkey:v1:fresh:**#*"]).await;
    assert!(!in_a_new_workspace.status.success());
    assert!(String::from_utf8_lossy(&in_a_new_workspace.stderr).contains("does not exist yet"));
    assert_eq!(store.find_workspace("fresh").await.expect("read"), None, "a refused key creates no workspace");
    store.close().await;
}

async fn root_key_revoke(database_url: &str, key: &str) -> std::process::Output {
    let mut revoke = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["root-key", "revoke", "--database", database_url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut stdin = revoke.stdin.take().expect("stdin");
    stdin.write_all(format!("{key}\n").as_bytes()).await.expect("write the key");
    drop(stdin);
    revoke.wait_with_output().await.expect("exits")
}

/// A key used (and so held in the server's memory), then revoked by another process, is refused within
/// `within`.
async fn a_revoked_key_stops_working_within(backend: Backend, within: Duration) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let url = database.url();
    let node = SigilProcess::start(&url).await;
    let minted = root_key_create(&url, "acme", &[]).await;
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let key = String::from_utf8_lossy(&minted.stdout).lines().last().expect("a key").to_owned();
    let (status, _) = call(&node, &key, "listIdentities", json!({})).await;
    assert_eq!(status, 200);

    let revoked = root_key_revoke(&url, &key).await;
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let started = tokio::time::Instant::now();
    loop {
        let (status, body) = call(&node, &key, "listIdentities", json!({})).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(started.elapsed() < within, "the revoked key still works after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = root_key_revoke(&url, &key).await;
    assert!(!again.status.success(), "revoking twice says there is nothing to revoke");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no root key has this value"));
}

/// On PostgreSQL the revoking command tells every node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_revoked_root_key_stops_working_on_a_running_node_at_once() {
    a_revoked_key_stops_working_within(Backend::Postgres, Duration::from_secs(1)).await;
}

/// A SQLite server hears of nobody's writes but its own: what it read of the key expires instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_revoked_root_key_stops_working_on_the_server_within_its_time_to_live() {
    let bound = sigil::store::CACHED_IDENTITY_TIME_TO_LIVE + Duration::from_secs(1);
    a_revoked_key_stops_working_within(Backend::Sqlite, bound).await;
}
