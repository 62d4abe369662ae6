//! What the database itself can do, measured with its own tools rather than through sqlx: the `sqlite3`
//! command-line shell (one connection, single-row autocommit INSERTs) and `pgbench` (a single-row INSERT
//! script at the bench's concurrency), into a table shaped like `identities` with its indexes. A floor whose
//! tool is missing is left out, with a note.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::process::Command;

/// `{GENERATED}`: how the folded externalId is kept, as each database's migration keeps it (SQLite: VIRTUAL,
/// PostgreSQL: STORED).
const TABLE: &str = "CREATE TABLE floor_identities (id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, \
    external_id TEXT NOT NULL, meta TEXT NOT NULL, ratelimits TEXT NOT NULL, created_at BIGINT NOT NULL, \
    updated_at BIGINT, deleted_at BIGINT, external_id_folded TEXT GENERATED ALWAYS AS (lower(external_id)) {GENERATED});
CREATE UNIQUE INDEX floor_live_external_id ON floor_identities (external_id_folded, external_id, workspace_id) \
    WHERE deleted_at IS NULL;
CREATE INDEX floor_live_by_workspace ON floor_identities (workspace_id, id) WHERE deleted_at IS NULL;";

/// Rows per second that `sqlite3` inserts, each its own transaction, in WAL mode at `synchronous`
/// (FULL: durable; NORMAL: not across a power loss), over about `duration`.
pub async fn sqlite3_inserts_per_second(dir: &Path, synchronous: &str, duration: Duration) -> Option<f64> {
    let database = dir.join(format!("floor-{synchronous}.db"));
    let table = TABLE.replace("{GENERATED}", "VIRTUAL");
    let setup = format!("PRAGMA journal_mode=WAL;\nPRAGMA synchronous={synchronous};\n{table}\n");
    run_sqlite3(&database, &setup).await?;
    // A first batch sizes the measured one to about `duration`.
    let probe = 500;
    let started = Instant::now();
    run_sqlite3(&database, &inserts(synchronous, 0, probe)).await?;
    let per_second = probe as f64 / started.elapsed().as_secs_f64();
    let rows = ((per_second * duration.as_secs_f64()) as usize).max(probe);
    let started = Instant::now();
    run_sqlite3(&database, &inserts(synchronous, probe, rows)).await?;
    Some(rows as f64 / started.elapsed().as_secs_f64())
}

fn inserts(synchronous: &str, first: usize, rows: usize) -> String {
    let mut script = format!("PRAGMA synchronous={synchronous};\n");
    for n in first..first + rows {
        script.push_str(&format!(
            "INSERT INTO floor_identities VALUES ('id_{n}', 'ws', 'e_{n}', '{{}}', '[]', 0, NULL, NULL);\n"
        ));
    }
    script
}

async fn run_sqlite3(database: &Path, script: &str) -> Option<()> {
    let script_file = database.with_extension("sql");
    std::fs::write(&script_file, script).ok()?;
    let output = Command::new("sqlite3")
        .arg(database)
        .arg(format!(".read {}", script_file.display()))
        .output()
        .await
        .map_err(|error| eprintln!("sqlite3 floor left out: {error}"))
        .ok()?;
    if !output.status.success() {
        eprintln!("sqlite3 floor left out: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    Some(())
}

/// `pgbench`'s transactions per second for a single-row INSERT into `schema`'s floor table, at
/// `concurrency` clients on 2 threads, over `duration`.
pub async fn pgbench_inserts_per_second(
    url: &str,
    schema: &str,
    concurrency: usize,
    duration: Duration,
    dir: &Path,
) -> Option<f64> {
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.ok()?;
    let table =
        TABLE.replace("floor_identities", &format!("{schema}.floor_identities")).replace("{GENERATED}", "STORED");
    sqlx::raw_sql(&table).execute(&mut connection).await.ok()?;
    let script = dir.join("pgbench-insert.sql");
    let insert = format!(
        "INSERT INTO {schema}.floor_identities VALUES (md5(random()::text || clock_timestamp()::text), 'ws', \
         md5(random()::text || clock_timestamp()::text), '{{}}', '[]', 0, NULL, NULL);\n"
    );
    std::fs::write(&script, insert).ok()?;
    let seconds = duration.as_secs().max(1).to_string();
    let output = Command::new("pgbench")
        .args(["-n", "-c", &concurrency.to_string(), "-j", "2", "-T", &seconds, "-f"])
        .arg(&script)
        .arg(url)
        .output()
        .await
        .map_err(|error| eprintln!("pgbench floor left out: {error}"))
        .ok()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tps = stdout.lines().find_map(|line| line.strip_prefix("tps = "))?;
    tps.split_whitespace().next()?.parse().ok()
}
