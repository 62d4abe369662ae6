//! SQLite on a disk that fills: no write is acknowledged that was not stored, no write answered as failed
//! was stored, the failures are clean 503s, and the service writes again once space is freed, before and
//! after a SIGKILL.
//!
//! The database lives on a tmpfs of its own, most of it taken by a ballast file; deleting the ballast is
//! freeing space. Mounting needs root (which CI has); elsewhere the test is skipped with a notice, and under
//! `CI=true` it fails instead.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{SigilProcess, admin_key};

const FILE_SYSTEM_BYTES: u64 = 24 * 1024 * 1024;
/// What the ballast leaves free: room for a few thousand creates with the meta below.
const LEFT_FREE_BYTES: u64 = 3 * 1024 * 1024;
const WORKERS: usize = 16;
/// Creates answered 503 before space is freed, and 200 after it.
const FAILURES_WANTED: usize = 200;
const SUCCESSES_AFTER_FREEING: usize = 200;
const PHASE_LIMIT: Duration = Duration::from_secs(60);

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallFileSystem {
    dir: tempfile::TempDir,
}

impl SmallFileSystem {
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Self { dir }),
            outcome if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!("CI=true and a tmpfs cannot be mounted for the disk-full test: {outcome:?}")
            }
            outcome => {
                eprintln!("SKIPPING the disk-full test: mounting a tmpfs needs root ({outcome:?})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system but for `left_free` bytes.
fn lay_ballast(file_system: &SmallFileSystem, left_free: u64) -> PathBuf {
    let path = file_system.path().join("ballast");
    let free = free_bytes(file_system.path());
    let ballast = vec![0_u8; usize::try_from(free.saturating_sub(left_free)).expect("fits")];
    std::fs::write(&path, ballast).expect("write the ballast");
    path
}

fn free_bytes(path: &Path) -> u64 {
    let output = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().expect("df");
    String::from_utf8_lossy(&output.stdout).lines().nth(1).expect("a figure").trim().parse().expect("bytes")
}

#[derive(Default, Clone)]
struct Ledger {
    /// externalId → id, for every create answered 200.
    acknowledged: HashMap<String, String>,
    /// Every create answered with a failure.
    failed: HashSet<String>,
    /// Statuses other than 200 and 503.
    unexpected: Vec<(u16, String)>,
}

type SharedLedger = Arc<Mutex<Ledger>>;

/// Creates identities with about 2 KB of meta from [`WORKERS`] workers until `enough` says so.
async fn create_until(
    base_url: &str,
    key: &str,
    ledger: &SharedLedger,
    phase: &str,
    enough: impl Fn(&Ledger) -> bool + Send + Sync + 'static,
) {
    let enough = Arc::new(enough);
    let deadline = Instant::now() + PHASE_LIMIT;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let (client, base_url, key, ledger, enough, phase) = (
            reqwest::Client::new(),
            base_url.to_owned(),
            key.to_owned(),
            ledger.clone(),
            enough.clone(),
            phase.to_owned(),
        );
        workers.spawn(async move {
            for n in 0.. {
                if enough(&ledger.lock().unwrap()) || Instant::now() > deadline {
                    return;
                }
                let external_id = format!("{phase}_{worker}_{n}");
                let mut body = json!({"externalId": external_id, "meta": {"padding": "x".repeat(2048)}});
                // Creates are single statements in their group; upserts with ratelimits take a savepoint.
                let (operation, id_field) = if n % 2 == 0 {
                    ("createIdentity", "identityId")
                } else {
                    body["ratelimits"] = json!([{"name": "api", "limit": 10, "duration": 1000, "autoApply": false}]);
                    ("upsertIdentity", "id")
                };
                let response = client
                    .post(format!("{base_url}/v2/identities.{operation}"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .expect("the server answers");
                let status = response.status().as_u16();
                let text = response.text().await.expect("body");
                let mut ledger = ledger.lock().unwrap();
                match status {
                    200 => {
                        let body: Value = serde_json::from_str(&text).expect("JSON");
                        let id = body["data"][id_field].as_str().expect("the new id").to_owned();
                        ledger.acknowledged.insert(external_id, id);
                    }
                    503 => {
                        assert!(text.contains("service_unavailable"), "{text}");
                        ledger.failed.insert(external_id);
                    }
                    _ => {
                        ledger.unexpected.push((status, text));
                        ledger.failed.insert(external_id);
                    }
                }
            }
        });
    }
    workers.join_all().await;
}

/// Every identity a node lists, externalId → id.
async fn stored_identities(base_url: &str, key: &str) -> HashMap<String, String> {
    let client = reqwest::Client::new();
    let mut stored = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = json!({"limit": 100});
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let response = client
            .post(format!("{base_url}/v2/identities.listIdentities"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.expect("JSON");
        for identity in page["data"].as_array().expect("data") {
            let external_id = identity["externalId"].as_str().expect("externalId").to_owned();
            stored.insert(external_id, identity["id"].as_str().expect("id").to_owned());
        }
        match page["pagination"]["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return stored,
        }
    }
}

fn assert_stored_exactly_what_was_acknowledged(stored: &HashMap<String, String>, ledger: &Ledger, when: &str) {
    for (external_id, id) in &ledger.acknowledged {
        assert_eq!(stored.get(external_id), Some(id), "{when}: acknowledged create of {external_id} is missing");
    }
    for external_id in &ledger.failed {
        assert!(!stored.contains_key(external_id), "{when}: {external_id} was answered as failed but is stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_acknowledges_only_what_it_stored() {
    let Some(file_system) = SmallFileSystem::mount(FILE_SYSTEM_BYTES) else { return };
    let url = format!("sqlite://{}", file_system.path().join("sigil.db").display());
    let key = admin_key(&url).await;
    let node = SigilProcess::start(&url).await;
    let ballast = lay_ballast(&file_system, LEFT_FREE_BYTES);
    let ledger = SharedLedger::default();

    create_until(&node.base_url, &key, &ledger, "filling", |ledger| ledger.failed.len() >= FAILURES_WANTED).await;
    let filled = ledger.lock().unwrap().clone();
    assert!(filled.unexpected.is_empty(), "a full disk answers 503 only: {:?}", &filled.unexpected[..1]);
    assert!(filled.failed.len() >= FAILURES_WANTED, "the disk never filled: {} failures", filled.failed.len());
    assert!(filled.acknowledged.len() >= 100, "too little was stored to prove anything");
    let stored = stored_identities(&node.base_url, &key).await;
    assert_stored_exactly_what_was_acknowledged(&stored, &filled, "with the disk full");

    let metrics = reqwest::get(format!("{}/metrics", node.base_url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"sigil_database_errors_total{kind="storage_full"}"#), "{metrics}");

    std::fs::remove_file(&ballast).expect("free the space");
    let acknowledged_before = filled.acknowledged.len();
    create_until(&node.base_url, &key, &ledger, "freed", move |ledger| {
        ledger.acknowledged.len() >= acknowledged_before + SUCCESSES_AFTER_FREEING
    })
    .await;
    let ledger = Arc::try_unwrap(ledger).ok().expect("workers are done").into_inner().unwrap();
    assert!(
        ledger.acknowledged.len() >= acknowledged_before + SUCCESSES_AFTER_FREEING,
        "writes did not come back after space was freed"
    );
    assert!(ledger.unexpected.is_empty(), "{:?}", &ledger.unexpected[..1]);
    let stored = stored_identities(&node.base_url, &key).await;
    assert_stored_exactly_what_was_acknowledged(&stored, &ledger, "after space was freed");

    node.kill().await;
    let restarted = SigilProcess::start(&url).await;
    let stored = stored_identities(&restarted.base_url, &key).await;
    assert_stored_exactly_what_was_acknowledged(&stored, &ledger, "after SIGKILL and restart");
    restarted.kill().await;
}
