//! A migration keeps what was stored before it: each test stores data the way an earlier version of Sigil
//! did, then lets this version open (and migrate) the database and reads the data back.

use std::str::FromStr;

use sigil::domain::identity::Ratelimit;
use sigil::domain::workspace::WorkspaceId;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::harness::{Backend, TestDatabase};

/// What version 4 of the schema held: one identity with two ratelimits, stored out of name order, and one
/// identity with none.
const STORED_BY_VERSION_4: [&str; 3] = [
    "INSERT INTO workspaces (id, name, created_at) VALUES ('ws_1', 'test', 0)",
    "INSERT INTO identities (id, workspace_id, external_id, meta, created_at) \
     VALUES ('id_1', 'ws_1', 'limited', '{\"plan\":\"pro\"}', 0), ('id_2', 'ws_1', 'unlimited', '{}', 0)",
    "INSERT INTO identity_ratelimits (id, identity_id, name, request_limit, duration_ms, auto_apply, created_at) \
     VALUES ('rl_b', 'id_1', 'web', 10, 1000, true, 0), ('rl_a', 'id_1', 'api', 5, 60000, false, 0)",
];

async fn ratelimits_move_into_their_identity_with_their_ids(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let url = database.url();
    let version_4 = migrations_up_to(backend, 4).await;
    match backend {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(&url).expect("url").create_if_missing(true);
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("open");
            version_4.run(&pool).await.expect("migrate to version 4");
            for statement in STORED_BY_VERSION_4 {
                sqlx::query(statement).execute(&pool).await.expect(statement);
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = PgPoolOptions::new().max_connections(1).connect(&url).await.expect("connect");
            version_4.run(&pool).await.expect("migrate to version 4");
            for statement in STORED_BY_VERSION_4 {
                sqlx::query(statement).execute(&pool).await.expect(statement);
            }
            pool.close().await;
        }
    }

    let store = sigil::store::open(&url).await.expect("open migrates to the current version");
    let workspace = WorkspaceId::from_stored("ws_1".into());
    let limited = store.get_identity(&workspace, "limited").await.expect("read").expect("still there");
    assert_eq!(limited.meta.get(), r#"{"plan":"pro"}"#);
    let ratelimits: Vec<Ratelimit> = serde_json::from_str(limited.ratelimits.get()).expect("ratelimits");
    assert_eq!(
        ratelimits,
        [
            Ratelimit { id: "rl_a".into(), name: "api".into(), limit: 5, duration: 60_000, auto_apply: false },
            Ratelimit { id: "rl_b".into(), name: "web".into(), limit: 10, duration: 1000, auto_apply: true },
        ]
    );
    let unlimited = store.get_identity(&workspace, "id_2").await.expect("read").expect("still there");
    assert_eq!(unlimited.ratelimits.get(), "[]");
    store.close().await;
}

/// The backend's migrations numbered up to `last`, as that version of Sigil shipped them.
async fn migrations_up_to(backend: Backend, last: i64) -> Migrator {
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(folder);
    let earlier = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let version: i64 = name.split('_').next().and_then(|number| number.parse().ok()).expect("numbered");
        if version <= last {
            std::fs::copy(&path, earlier.path().join(&name)).expect("copy");
        }
    }
    let migrator = Migrator::new(earlier.path()).await.expect("read migrations");
    assert_eq!(migrator.iter().count(), usize::try_from(last).expect("count"));
    migrator
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ratelimits_move_into_their_identity_with_their_ids() {
    ratelimits_move_into_their_identity_with_their_ids(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ratelimits_move_into_their_identity_with_their_ids() {
    ratelimits_move_into_their_identity_with_their_ids(Backend::Postgres).await;
}
