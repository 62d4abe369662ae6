//! A real Sigil on a real socket and a real database for each test, and helpers that keep tests short.
//!
//! Every test runs once per backend (see [`backend_tests!`]): on a fresh SQLite file, and on PostgreSQL in a
//! schema of its own that is dropped afterwards. PostgreSQL is found at `SIGIL_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`). When it is unreachable the PostgreSQL variants are
//! skipped with a notice, except under `CI=true`, where they fail.

use std::process::Stdio;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sigil::domain::permission::all_permissions;
use sigil::idempotency::IdempotencySettings;
use sigil::server::mint_root_key;
use sigil::store::{self, Store};
use sigil::{AppState, Limits};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

pub const WORKSPACE: &str = "test";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates, for each named `async fn(TestServer)`, one `#[tokio::test]` per backend:
/// `<module>::sqlite::<name>` and `<module>::postgres::<name>`.
#[macro_export]
macro_rules! backend_tests {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let server = $crate::harness::TestServer::start($crate::harness::Backend::Sqlite).await;
                    super::$test(server.expect("SQLite is always available")).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(server) = $crate::harness::TestServer::start($crate::harness::Backend::Postgres).await {
                        super::$test(server).await;
                    }
                }
            )+
        }
    };
}

/// Generates, for each named `async fn(Backend)` (a test that starts what it needs itself), one
/// `#[tokio::test]` per backend: `<module>::each_backend::sqlite::<name>` and `…::postgres::<name>`.
#[macro_export]
macro_rules! each_backend {
    ($($test:ident),+ $(,)?) => {
        mod each_backend {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $test() {
                        super::super::$test($crate::harness::Backend::Sqlite).await;
                    }
                )+
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $test() {
                        super::super::$test($crate::harness::Backend::Postgres).await;
                    }
                )+
            }
        }
    };
}

pub struct TestServer {
    pub base_url: String,
    pub store: Arc<dyn Store>,
    client: reqwest::Client,
    server: JoinHandle<()>,
    database: Option<TestDatabase>,
}

pub struct Options {
    pub limits: Limits,
    pub idempotency: IdempotencySettings,
    pub router: axum::Router<AppState>,
}

impl Default for Options {
    fn default() -> Self {
        Self { limits: Limits::default(), idempotency: IdempotencySettings::default(), router: sigil::routes::router() }
    }
}

impl TestServer {
    /// `None` only for PostgreSQL when it is unreachable outside CI.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, Options::default()).await
    }

    /// A server with other settings or extra routes (for failure paths no real route can reach).
    pub async fn start_with(backend: Backend, options: Options) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        Some(Self::serve(database, options).await)
    }

    async fn serve(database: TestDatabase, options: Options) -> Self {
        let store = store::open_for_serving(&database.url()).await.expect("open test database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let state = AppState::new(store.clone(), options.limits, options.idempotency, None);
        let app = sigil::with_layers(options.router, state);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("server runs");
        });
        Self { base_url, store, client: reqwest::Client::new(), server, database: Some(database) }
    }

    /// Stops this server and starts a new one on the same database, as after a process restart.
    pub async fn restart(self) -> Self {
        self.restart_with(Options::default()).await
    }

    /// [`restart`](Self::restart) with other settings.
    pub async fn restart_with(mut self, options: Options) -> Self {
        self.server.abort();
        self.store.close().await;
        let database = self.database.take().expect("database");
        Self::serve(database, options).await
    }

    /// The URL of this server's database, for a second connection of the test's own.
    pub fn database_url(&self) -> String {
        self.database.as_ref().expect("database").url()
    }

    /// A root key in workspace `test` holding `permissions`.
    pub async fn root_key(&self, permissions: &[&str]) -> String {
        self.root_key_in(WORKSPACE, permissions).await
    }

    pub async fn root_key_in(&self, workspace: &str, permissions: &[&str]) -> String {
        let (workspace, _) = self.store.ensure_workspace(workspace).await.expect("workspace");
        let permissions = permissions.iter().map(|p| p.to_string()).collect();
        mint_root_key(&*self.store, &workspace, permissions).await.expect("root key")
    }

    /// An all-permissions root key in `workspace`, like the one `sigil root-key create` mints by default.
    pub async fn admin_key_in(&self, workspace: &str) -> String {
        let (id, _) = self.store.ensure_workspace(workspace).await.expect("workspace");
        mint_root_key(&*self.store, &id, vec![all_permissions(&id)]).await.expect("root key")
    }

    pub async fn admin_key(&self) -> String {
        self.admin_key_in(WORKSPACE).await
    }

    /// POSTs `body` as JSON to `/v2/<operation>` with `Bearer <key>` and an `Idempotency-Key`.
    pub async fn call_idempotent(&self, operation: &str, key: &str, idempotency_key: &str, body: &str) -> ApiResponse {
        let request = self
            .post(operation)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .body(body.to_owned());
        self.send(request).await
    }

    /// POSTs `body` as JSON to `/v2/<operation>` with `Bearer <key>`.
    pub async fn call(&self, operation: &str, key: &str, body: Value) -> ApiResponse {
        self.send(self.post(operation).bearer_auth(key).json(&body)).await
    }

    /// A POST to `/v2/<operation>` with nothing set, for requests the typed helpers cannot make.
    pub fn post(&self, operation: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}/v2/{operation}", self.base_url))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> ApiResponse {
        send(request).await
    }

    /// Creates an identity with the admin key and returns its id.
    pub async fn create_identity(&self, key: &str, body: Value) -> String {
        let response = self.call("identities.createIdentity", key, body).await;
        assert_eq!(response.status, 200, "{}", response.body);
        response.body["data"]["identityId"].as_str().expect("identityId").to_owned()
    }

    /// The ids of every live identity the key can see, in list order, following the cursor.
    pub async fn list_all_ids(&self, key: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = json!({"limit": 100});
            if let Some(cursor) = &cursor {
                body["cursor"] = json!(cursor);
            }
            let page = self.call("identities.listIdentities", key, body).await;
            assert_eq!(page.status, 200, "{}", page.body);
            ids.extend(page.body["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()));
            match page.body["pagination"]["cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }
}

/// Sends `request` and reads its answer, which must be JSON.
async fn send(request: reqwest::RequestBuilder) -> ApiResponse {
    let response = request.send().await.expect("request reaches the server");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text}"));
    ApiResponse { status, headers, body, text }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body exactly as sent, for byte-for-byte comparisons.
    pub text: String,
}

impl ApiResponse {
    /// Asserts the error envelope: status, `type` ending in `code_path`, the title, a request id, and
    /// for 400-family statuses an `errors` array.
    pub fn assert_error(&self, status: u16, code_path: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        let error = &self.body["error"];
        assert_eq!(error["status"], status, "{}", self.body);
        let type_url = error["type"].as_str().expect("type");
        assert_eq!(type_url, format!("https://unkey.com/docs/api-reference/errors-v2/{code_path}"));
        assert!(error["title"].as_str().is_some_and(|t| !t.is_empty()), "{}", self.body);
        assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", self.body);
        assert!(self.request_id().starts_with("req_"), "{}", self.body);
        if matches!(status, 400 | 408 | 413) {
            assert!(error["errors"].is_array(), "400-family bodies carry errors[]: {}", self.body);
        }
    }

    pub fn request_id(&self) -> &str {
        self.body["meta"]["requestId"].as_str().unwrap_or("")
    }

    pub fn detail(&self) -> &str {
        self.body["error"]["detail"].as_str().unwrap_or("")
    }
}

/// An all-permissions root key in workspace `test` of the database at `database_url`, minted as
/// `sigil root-key create` does, beside any server on it.
/// Runs `sigil serve` with `args` (and `env`), expects it to refuse to start within 30 s, and returns what it
/// printed on stderr.
pub async fn refused_to_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .output(),
    )
    .await
    .expect("it stops at once")
    .expect("runs");
    assert!(!refused.status.success(), "it started");
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

pub async fn admin_key(database_url: &str) -> String {
    let store = sigil::store::open(database_url).await.expect("open");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await.expect("key");
    store.close().await;
    key
}

/// A `sigil serve` process; killed when dropped. Its JSON log lines are collected.
pub struct SigilProcess {
    pub base_url: String,
    pub logs: Arc<Mutex<Vec<String>>>,
    process: Child,
    /// Held open and never read, for [`SigilProcess::start_with_unread_log`].
    _unread_log: Option<Lines<BufReader<ChildStderr>>>,
}

impl SigilProcess {
    /// POSTs `body` as JSON to `/v2/<operation>` with `Bearer <key>`, as [`TestServer::call`] does.
    pub async fn call(&self, operation: &str, key: &str, body: Value) -> ApiResponse {
        send(reqwest::Client::new().post(format!("{}/v2/{operation}", self.base_url)).bearer_auth(key).json(&body))
            .await
    }

    /// Starts the real binary on a free port and waits until it says where it listens.
    pub async fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[]).await
    }

    /// [`SigilProcess::start`] with more `serve` options.
    pub async fn start_with(database_url: &str, options: &[&str]) -> Self {
        Self::start_with_env(database_url, options, &[]).await
    }

    /// [`SigilProcess::start_with`] with more environment variables (such as `FAILPOINTS`).
    pub async fn start_with_env(database_url: &str, options: &[&str], env: &[(&str, &str)]) -> Self {
        let (process, mut lines, base_url) = Self::spawn(database_url, options, env).await;
        // Keep draining the log so the node never blocks on a full pipe.
        let logs = Arc::new(Mutex::new(Vec::new()));
        let collected = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().unwrap().push(line);
            }
        });
        Self { base_url, logs, process, _unread_log: None }
    }

    /// Like [`SigilProcess::start`], but nobody reads the log after the line saying where it listens, as
    /// when whatever reads the log stalls.
    pub async fn start_with_unread_log(database_url: &str) -> Self {
        let (process, lines, base_url) = Self::spawn(database_url, &[], &[]).await;
        Self { base_url, logs: Arc::default(), process, _unread_log: Some(lines) }
    }

    async fn spawn(
        database_url: &str,
        options: &[&str],
        env: &[(&str, &str)],
    ) -> (Child, Lines<BufReader<ChildStderr>>, String) {
        let mut process = Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--database", database_url])
            .args(options)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sigil");
        let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
        let address = loop {
            let line = lines.next_line().await.expect("read stderr").expect("sigil exited before serving");
            let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
            if let Some(address) = entry["fields"]["address"].as_str() {
                break address.to_owned();
            }
        };
        (process, lines, format!("http://{address}"))
    }

    /// The process's highest resident set size so far, in bytes (Linux's `VmHWM`).
    pub fn peak_rss_bytes(&self) -> u64 {
        let pid = self.process.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a Linux process status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib * 1024
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub async fn kill(mut self) {
        self.process.kill().await.expect("kill");
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited successfully.
    pub async fn terminate(mut self) -> bool {
        let pid = self.process.id().expect("running").to_string();
        let sent = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
        assert!(sent.success());
        self.process.wait().await.expect("wait").success()
    }
}

/// A database that exists for one test: a temporary SQLite file, or a PostgreSQL schema dropped afterwards.
pub enum TestDatabase {
    Sqlite(TempDir),
    Postgres { server_url: String, schema: String },
}

impl TestDatabase {
    /// `None` only for PostgreSQL when it is unreachable outside CI.
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::Sqlite(tempfile::tempdir().expect("temp dir"))),
            Backend::Postgres => {
                let server_url = postgres_url();
                let mut connection = connect_postgres(&server_url).await?;
                let schema = format!("sigil_test_{}", ulid::Ulid::new().to_string().to_lowercase());
                sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut connection).await.expect("create schema");
                Some(Self::Postgres { server_url, schema })
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}", dir.path().join("sigil.db").display()),
            Self::Postgres { server_url, schema } => {
                let separator = if server_url.contains('?') { '&' } else { '?' };
                format!("{server_url}{separator}options=-c%20search_path%3D{schema}")
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::Postgres { server_url, schema } = self {
            let (url, statement) = (server_url.clone(), format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            // Drop cannot await; a thread with its own runtime can, whatever runtime the test used.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async {
                    let mut connection = PgConnection::connect(&url).await?;
                    sqlx::query(&statement).execute(&mut connection).await.map(drop)
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {schema}");
            }
        }
    }
}

pub fn postgres_url() -> String {
    std::env::var("SIGIL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `None` (after one notice on the terminal) when PostgreSQL is unreachable; under `CI=true`, a failure.
async fn connect_postgres(url: &str) -> Option<PgConnection> {
    match PgConnection::connect(url).await {
        Ok(connection) => Some(connection),
        Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true and PostgreSQL at {url} is unreachable ({error}): the PostgreSQL suite must run in CI")
        }
        Err(error) => {
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                use std::io::Write;
                // Written to the terminal directly: libtest captures only print!/eprint!.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nSKIPPING every PostgreSQL test variant: PostgreSQL at {url} is unreachable ({error}).\n\
                     Only the SQLite variants ran. Set SIGIL_TEST_POSTGRES_URL or start PostgreSQL to run them.\n"
                );
            });
            None
        }
    }
}
