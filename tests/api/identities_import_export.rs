//! `sigil identities export` and `import`: a round trip into a fresh database gives the same identities (ids
//! included); a re-import creates nothing; every bad line is reported and none stops the import.

use serde_json::{Value, json};

use crate::harness::{Backend, TestDatabase, TestServer};

crate::each_backend!(
    an_export_imported_into_a_fresh_database_lists_the_same_and_a_second_import_creates_nothing,
    every_line_of_a_file_with_duplicates_and_bad_lines_is_reported,
    a_piped_file_is_imported_and_a_line_that_is_not_utf8_is_reported,
);

async fn sigil(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil")).args(args).output().await.expect("runs")
}

async fn export(database_url: &str) -> String {
    let output = sigil(&["identities", "export", "--database", database_url, "--workspace", "test"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Imports `file`, returning whether it succeeded, its per-line report and its summary.
async fn import(database_url: &str, file: &std::path::Path, extra: &[&str]) -> (bool, Vec<Value>, String) {
    let report = file.with_extension("report.jsonl");
    let (file, report_path) = (file.to_str().unwrap(), report.to_str().unwrap());
    let mut args = vec!["identities", "import", "--database", database_url, "--workspace", "test"];
    args.extend(extra);
    args.extend(["--report", report_path, file]);
    let output = sigil(&args).await;
    let lines = std::fs::read_to_string(&report).expect("the report");
    let reports = lines.lines().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    (output.status.success(), reports, String::from_utf8_lossy(&output.stderr).into_owned())
}

async fn an_export_imported_into_a_fresh_database_lists_the_same_and_a_second_import_creates_nothing(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else { return };
    let key = server.admin_key().await;
    for n in 0..150 {
        let ratelimits = json!([{"name": "requests", "limit": n + 1, "duration": 60_000, "autoApply": n % 2 == 0}]);
        server
            .create_identity(
                &key,
                json!({"externalId": format!("user_{n}"), "meta": {"n": n}, "ratelimits": ratelimits}),
            )
            .await;
    }
    server.create_identity(&key, json!({"externalId": "bare"})).await;
    server.call("identities.deleteIdentity", &key, json!({"identity": "user_7"})).await;
    let exported = export(&server.database_url()).await;
    assert_eq!(exported.lines().count(), 150, "the live identities alone");

    let fresh = TestDatabase::create(backend).await.expect("a database");
    let directory = tempfile::tempdir().expect("a directory");
    let file = directory.path().join("identities.jsonl");
    std::fs::write(&file, &exported).expect("written");
    let (succeeded, reports, summary) = import(&fresh.url(), &file, &[]).await;
    assert!(succeeded, "{summary}");
    assert!(reports.iter().all(|report| report["outcome"] == "created"), "{reports:?}");
    assert!(summary.contains("150 created, 0 already existing, 0 updated, 0 invalid, of 150 lines"), "{summary}");
    assert_eq!(export(&fresh.url()).await, exported, "the same identities, ids and ratelimit ids included");

    let (succeeded, reports, summary) = import(&fresh.url(), &file, &[]).await;
    assert!(succeeded, "{summary}");
    let first: Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert_eq!(reports[0]["id"], first["id"], "the holder's id");
    assert!(reports.iter().all(|report| report["outcome"] == "already_exists"), "{reports:?}");
    assert_eq!(export(&fresh.url()).await, exported, "a re-run changes nothing");
}

async fn every_line_of_a_file_with_duplicates_and_bad_lines_is_reported(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let directory = tempfile::tempdir().expect("a directory");
    let file = directory.path().join("identities.jsonl");
    let lines = [
        r#"{"externalId":"alice","meta":{"plan":"pro"}}"#,
        r#"{"externalId":"bob","id":"id_kept_for_bob"}"#,
        r#"{"externalId":"not json""#,
        r#"{"externalId":"has space"}"#,
        r#"{"externalId":"carol","id":"id_kept_for_bob"}"#,
        r#"{"externalId":"dave","ratelimits":[{"name":"x","limit":1,"duration":1000,"autoApply":true}]}"#,
    ];
    std::fs::write(&file, lines.join("\n")).expect("written");
    let (succeeded, reports, summary) = import(&database.url(), &file, &["--on-conflict", "fail"]).await;
    assert!(!succeeded && summary.contains("2 created") && summary.contains("4 invalid"), "{summary}");
    let outcomes: Vec<&str> = reports.iter().map(|report| report["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["created", "created", "invalid", "invalid", "invalid", "invalid"]);
    assert_eq!(reports[1]["id"], "id_kept_for_bob", "an export's id is kept");
    assert!(reports[2]["reason"].as_str().unwrap().starts_with("not JSON"), "{}", reports[2]);
    assert!(reports[3]["reason"].as_str().unwrap().contains("externalId"), "{}", reports[3]);
    assert!(reports[4]["reason"].as_str().unwrap().contains("bob"), "the id is bob's: {}", reports[4]);
    assert!(reports[5]["reason"].as_str().unwrap().contains("ratelimits"), "{}", reports[5]);

    let again = directory.path().join("again.jsonl");
    let duplicate =
        [r#"{"externalId":"eve"}"#, r#"{"externalId":"alice","meta":{"plan":"team"}}"#, r#"{"externalId":"frank"}"#];
    std::fs::write(&again, duplicate.join("\n")).expect("written");
    let (succeeded, reports, summary) = import(&database.url(), &again, &["--on-conflict", "fail"]).await;
    assert!(!succeeded && summary.contains("stopped at line 2"), "{summary}");
    assert_eq!(reports.len(), 2, "fail stops at the first taken externalId: {reports:?}");
    let (succeeded, reports, summary) = import(&database.url(), &again, &["--on-conflict", "update"]).await;
    assert!(succeeded, "{summary}");
    let outcomes: Vec<&str> = reports.iter().map(|report| report["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["updated", "updated", "created"], "eve came in before the stop");
    assert!(export(&database.url()).await.contains(r#""externalId":"alice","meta":{"plan":"team"}"#));
}

async fn a_piped_file_is_imported_and_a_line_that_is_not_utf8_is_reported(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let directory = tempfile::tempdir().expect("a directory");
    let file = directory.path().join("identities.jsonl");
    let mut bytes = br#"{"externalId":"alice"}"#.to_vec();
    bytes.extend(b"\n{\"externalId\":\"b\xffb\"}\r\n");
    bytes.extend(br#"{"externalId":"carol"}"#);
    std::fs::write(&file, bytes).expect("written");
    let report = directory.path().join("report.jsonl");
    // Through a pipe, which can be read only once.
    let output = tokio::process::Command::new("sh")
        .args([
            "-c",
            "cat \"$1\" | \"$0\" identities import --database \"$2\" --workspace test --report \"$3\" /dev/stdin",
        ])
        .args([env!("CARGO_BIN_EXE_sigil"), file.to_str().unwrap(), &database.url(), report.to_str().unwrap()])
        .output()
        .await
        .expect("runs");
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a line was invalid: {summary}");
    assert!(summary.contains("2 created") && summary.contains("1 invalid, of 3 lines"), "{summary}");
    let reports: Vec<Value> = std::fs::read_to_string(&report)
        .expect("the report")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let outcomes: Vec<&str> = reports.iter().map(|report| report["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["created", "invalid", "created"], "{reports:?}");
    assert_eq!(reports[1]["reason"], "not UTF-8");
    let exported = export(&database.url()).await;
    assert!(exported.contains(r#""externalId":"carol""#), "the line after the bad one was imported: {exported}");
}
