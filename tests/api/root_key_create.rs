//! `sigil root-key create`: a grant that could never match is refused with the fix, and writes nothing.

use crate::harness::{Backend, TestDatabase};

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
