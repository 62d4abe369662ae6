//! The command line. Every option also reads a `SIGIL_…` environment variable, and every default works
//! with nothing installed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::Limits;
use crate::http_server::ConnectionLimits;
use crate::idempotency::IdempotencySettings;
use crate::sealed_secrets::RecordKey;

#[derive(Debug, Parser)]
#[command(name = "sigil", version, about = "Self-hosted identity service speaking Unkey's v2 API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log line format (logs go to stderr).
    #[arg(long, global = true, env = "SIGIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API. On a first start with an empty database, creates workspace "default" and prints a root key.
    Serve(ServeArgs),
    /// Manage root keys.
    #[command(subcommand)]
    RootKey(RootKeyCommand),
    /// Exit 0 when the server at --url is ready (its database answers), 1 otherwise: for container health
    /// checks in images without curl.
    Healthcheck(HealthcheckArgs),
    /// Copy a SQLite database, consistent as of one moment, while `serve` runs on it.
    Backup(BackupArgs),
    /// Move identities in and out as JSON Lines.
    #[command(subcommand)]
    Identities(IdentitiesCommand),
}

#[derive(Debug, Subcommand)]
pub enum IdentitiesCommand {
    /// Write a workspace's live identities to stdout, one JSON object per line, as getIdentity shows each.
    Export(ExportArgs),
    /// Create identities from a JSON Lines file (export's format) through the store, reporting every line.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long)]
    pub workspace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnConflict {
    /// Leave the existing identity as it is, and report the line as already existing.
    Skip,
    /// Replace the existing identity's meta and ratelimits with the line's.
    Update,
    /// Stop at the first line whose externalId is taken (lines before it stay imported).
    Fail,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Created when missing, as `root-key create` does.
    #[arg(long)]
    pub workspace: String,
    /// What to do with a line whose externalId a live identity already holds.
    #[arg(long, value_enum, default_value_t = OnConflict::Skip)]
    pub on_conflict: OnConflict,
    /// Also write the per-line report here, as JSON Lines.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// The JSON Lines file to read.
    pub file: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The server's base URL (http only: the check runs beside the server); by default the address `serve`
    /// listens on (SIGIL_LISTEN, or 127.0.0.1:7070).
    #[arg(long, env = "SIGIL_HEALTHCHECK_URL")]
    pub url: Option<String>,
}

impl HealthcheckArgs {
    pub fn url(&self) -> String {
        self.url.clone().unwrap_or_else(|| {
            let listen = std::env::var("SIGIL_LISTEN").unwrap_or_else(|_| "127.0.0.1:7070".to_owned());
            format!("http://{listen}")
        })
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The file to write; it must not exist yet.
    #[arg(long)]
    pub to: std::path::PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum RootKeyCommand {
    /// Mint a root key (creating the workspace if missing) and print it as the last line of stdout.
    Create(CreateRootKeyArgs),
    /// Revoke a root key, read from standard input: every node stops accepting it.
    Revoke(RevokeRootKeyArgs),
}

#[derive(Debug, Args)]
pub struct RevokeRootKeyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// sqlite://PATH (created if missing) or postgres://USER@HOST:PORT/DATABASE.
    #[arg(long = "database", env = "SIGIL_DATABASE_URL", default_value = "sqlite://sigil.db")]
    pub url: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "SIGIL_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Largest accepted request body; larger ones get 413.
    #[arg(long, env = "SIGIL_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// A request running longer gets 408.
    #[arg(long, env = "SIGIL_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// How long a client may take to send a request's head, and then its body, and to take in any part of
    /// an answer; slower ones are cut off (the head, the answer) or answered 408 (the body).
    #[arg(long, env = "SIGIL_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub read_timeout_ms: u64,
    /// Connections open at once; more wait in the kernel's accept queue.
    #[arg(long, env = "SIGIL_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// After SIGTERM or Ctrl-C, how long requests in flight may take before the process stops anyway.
    #[arg(long, env = "SIGIL_SHUTDOWN_GRACE_MS", default_value_t = 35_000)]
    pub shutdown_grace_ms: u64,
    /// Identities one listIdentities search looks at, at most; a page that found too few ends early with a
    /// cursor to the rest.
    #[arg(long, env = "SIGIL_SEARCH_SCAN_ROWS", default_value_t = Limits::default().search_scan_rows)]
    pub search_scan_rows: usize,
    /// Requests running at once; beyond this, requests are refused at once with 503 and Retry-After.
    #[arg(long, env = "SIGIL_MAX_IN_FLIGHT", default_value_t = Limits::default().max_in_flight)]
    pub max_in_flight: usize,
    /// Bytes of request bodies held in memory at once, all requests together; a body that would pass it is
    /// refused with 503 and Retry-After.
    #[arg(long, env = "SIGIL_MAX_BODY_MEMORY_BYTES", default_value_t = Limits::default().max_body_memory_bytes)]
    pub max_body_memory_bytes: usize,
    /// Base of error `type` URLs. Point it at this server's own pages with http://HOST:PORT/docs/errors.
    #[arg(long, env = "SIGIL_ERROR_DOCS_BASE", default_value = crate::error::DEFAULT_ERROR_DOCS_BASE)]
    pub error_docs_base: String,
    /// How long a response to a request with an Idempotency-Key is kept for replay.
    #[arg(long, env = "SIGIL_IDEMPOTENCY_RETENTION_SECS", default_value_t = 24 * 60 * 60)]
    pub idempotency_retention_secs: u64,
    /// How long a retry waits for the first request with its key to finish before answering 409.
    #[arg(long, env = "SIGIL_IDEMPOTENCY_WAIT_MS", default_value_t = 5_000)]
    pub idempotency_wait_ms: u64,
    /// 32 random bytes in base64 (`openssl rand -base64 32`) that seal the new key in a recorded createKey
    /// answer, so that createKey takes an Idempotency-Key. Keep it out of the database and its backups.
    #[arg(long, env = "SIGIL_RECORD_KEY", hide_env_values = true, conflicts_with = "record_key_file")]
    pub record_key: Option<String>,
    /// A file holding the record key, as `--record-key` takes it (for systemd credentials and the like).
    #[arg(long, env = "SIGIL_RECORD_KEY_FILE")]
    pub record_key_file: Option<std::path::PathBuf>,
    /// A `redis://` URL: keep verifyKey's ratelimit counters in that Redis instead of the database. For
    /// PostgreSQL nodes whose keys share hot limits (README, "Ratelimit counters"); every node must name the
    /// same Redis.
    #[arg(long, env = "SIGIL_RATELIMIT_COUNTERS")]
    pub ratelimit_counters: Option<String>,
}

impl ServeArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            body_read_timeout: Duration::from_millis(self.read_timeout_ms),
            max_in_flight: self.max_in_flight,
            max_body_memory_bytes: self.max_body_memory_bytes,
            search_scan_rows: self.search_scan_rows,
        }
    }

    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_stall_timeout: Duration::from_millis(self.read_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }

    pub fn idempotency(&self) -> anyhow::Result<IdempotencySettings> {
        let record_key = match (&self.record_key, &self.record_key_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|error| anyhow::anyhow!("reading the record key file {}: {error}", path.display()))?,
            ),
            (None, None) => None,
        };
        let record_key = record_key
            .map(|text| RecordKey::from_base64(&text).map(Arc::new))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok(IdempotencySettings {
            retention: Duration::from_secs(self.idempotency_retention_secs),
            in_flight_wait: Duration::from_millis(self.idempotency_wait_ms),
            record_key,
        })
    }
}

#[derive(Debug, Args)]
pub struct CreateRootKeyArgs {
    /// Workspace name; created if missing.
    #[arg(long)]
    pub workspace: String,
    /// A permission to grant, e.g. identity.*.create_identity (repeatable). None means all permissions.
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `url` as messages and logs may show it: a password in it (`user:password@`, or the `password` or `pass`
/// query parameter that sqlx and redis read) is replaced by `***`, since errors go to the terminal and the
/// journal, which the 0600 environment file holding the URL is meant to keep it out of.
pub fn without_password(url: &str) -> String {
    let (url, query) = url.split_once('?').map_or((url, None), |(url, query)| (url, Some(query)));
    let mut shown = without_user_password(url);
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if ["password", "pass"].contains(&name) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{shown}?{}", pairs.join("&"));
    }
    shown
}

fn without_user_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else { return url.to_owned() };
    let user = user_info.split_once(':').map_or(user_info, |(user, _password)| user);
    let hidden = if user_info.contains(':') { ":***" } else { "" };
    format!("{scheme}://{user}{hidden}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            without_password("postgres://sigil:s3cr%40t@db.internal:5432/sigil?sslmode=require"),
            "postgres://sigil:***@db.internal:5432/sigil?sslmode=require"
        );
        assert_eq!(without_password("redis://:pw@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(without_password("postgres://a:b@c@host/db"), "postgres://a:***@host/db");
        assert_eq!(without_password("postgres://sigil@db.internal/sigil"), "postgres://sigil@db.internal/sigil");
        assert_eq!(without_password("sqlite:///var/lib/sigil/sigil.db"), "sqlite:///var/lib/sigil/sigil.db");
        assert_eq!(without_password("not a url"), "not a url");
        assert_eq!(
            without_password("postgres://sigil@db/sigil?sslmode=require&password=hunter2"),
            "postgres://sigil@db/sigil?sslmode=require&password=***"
        );
        assert_eq!(
            without_password("redis+unix:///run/redis.sock?db=1&pass=pw"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
    }
}
