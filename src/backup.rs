//! `sigil backup`: a consistent copy of a SQLite database, made while `serve` runs on it. `VACUUM INTO`
//! writes the database as one read transaction sees it, on a connection of its own that only reads, so
//! the server's writes go on meanwhile (WAL) and the copy holds exactly what was committed when it began.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

pub async fn backup(database_url: &str, to: &Path) -> anyhow::Result<()> {
    if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        anyhow::bail!(
            "sigil backup copies SQLite databases; for PostgreSQL use pg_dump (pg_dump --format=custom \
             --file=sigil.dump '{database_url}'), and pg_restore to restore"
        );
    }
    anyhow::ensure!(!to.exists(), "{} exists already: back up to a new file", to.display());
    let target = to.to_str().context("the backup's path is not UTF-8")?;
    let options = SqliteConnectOptions::from_str(database_url)
        .with_context(|| format!("{database_url} is no sqlite:// URL"))?
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    let mut connection = options.connect().await.with_context(|| format!("opening {database_url}"))?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(&mut connection).await.context("copying the database")?;
    connection.close().await?;
    Ok(())
}
