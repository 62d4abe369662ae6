//! `sigil backup`: a SQLite copy made while `serve` takes writes holds everything acknowledged before it
//! began, and opens as a database of its own.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::harness::{Backend, SigilProcess, TestDatabase, admin_key};

async fn backup(database_url: &str, to: &std::path::Path) -> std::process::Output {
    let to = to.to_str().expect("UTF-8 path");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["backup", "--database", database_url, "--to", to])
        .output()
        .await
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_writes_holds_every_identity_acknowledged_before_it() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let url = database.url();
    let node = SigilProcess::start(&url).await;
    let key = admin_key(&url).await;
    let client = reqwest::Client::new();
    let create = |external_id: String| {
        let request = client
            .post(format!("{}/v2/identities.createIdentity", node.base_url))
            .bearer_auth(&key)
            .json(&json!({"externalId": external_id, "meta": {"kept": true}}));
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let acknowledged: Vec<String> = (0..200).map(|n| format!("before_{n}")).collect();
    let statuses = join_all(acknowledged.iter().cloned().map(create)).await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let writing = async {
        for n in 0..300 {
            assert_eq!(create(format!("during_{n}")).await, 200);
        }
    };
    let directory = tempfile::tempdir().expect("a directory");
    let copy = directory.path().join("copy.db");
    let (output, ()) = tokio::join!(backup(&url, &copy), writing);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    node.kill().await;

    let store = sigil::store::open(&format!("sqlite://{}", copy.display())).await.expect("the copy opens");
    let workspace = store.find_workspace("test").await.expect("read").expect("the workspace is in the copy");
    for external_id in &acknowledged {
        let identity = store.get_identity(&workspace, external_id).await.expect("read");
        let identity = identity.unwrap_or_else(|| panic!("{external_id} is missing from the copy"));
        let meta: Value = serde_json::from_str(identity.meta.get()).expect("meta");
        assert_eq!(meta, json!({"kept": true}));
    }
    store.close().await;

    let again = backup(&url, &copy).await;
    assert!(!again.status.success(), "a backup never overwrites a file");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_points_to_pg_dump() {
    let directory = tempfile::tempdir().expect("a directory");
    let output = backup("postgres://postgres@127.0.0.1:5432/test", &directory.path().join("copy")).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("pg_dump"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_halfway_leaves_nothing_at_its_target_and_the_next_one_succeeds() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let url = database.url();
    let node = SigilProcess::start(&url).await;
    let key = admin_key(&url).await;
    let client = reqwest::Client::new();
    let padding = "x".repeat(20_000);
    for n in 0..100 {
        let created = client
            .post(format!("{}/v2/identities.createIdentity", node.base_url))
            .bearer_auth(&key)
            .json(&json!({"externalId": format!("big_{n}"), "meta": {"padding": padding}}))
            .send()
            .await
            .expect("answers");
        assert_eq!(created.status(), 200);
    }
    let directory = tempfile::tempdir().expect("a directory");
    let copy = directory.path().join("copy.db");
    // Past 100 KB of file the kernel kills the process (SIGXFSZ), as a kill or a power cut would stop it.
    let killed = tokio::process::Command::new("sh")
        .args(["-c", "ulimit -f 200; exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_sigil")])
        .args(["backup", "--database", &url, "--to", copy.to_str().expect("UTF-8 path")])
        .output()
        .await
        .expect("runs");
    assert!(!killed.status.success(), "the backup was stopped halfway");
    assert!(!copy.exists(), "a backup that never finished leaves no file that looks like a backup");

    let output = backup(&url, &copy).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    node.kill().await;
    let names: Vec<String> = std::fs::read_dir(directory.path())
        .expect("listed")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["copy.db"], "only the copy remains");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&copy).expect("the copy").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy holds every identity's meta: only its owner may read it");
    let store = sigil::store::open(&format!("sqlite://{}", copy.display())).await.expect("the copy opens");
    let workspace = store.find_workspace("test").await.expect("read").expect("the workspace is in the copy");
    assert!(store.get_identity(&workspace, "big_99").await.expect("read").is_some(), "the copy is whole");
    store.close().await;
}
