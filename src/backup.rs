//! `sigil backup`: a consistent copy of a SQLite database, made while `serve` runs on it. `VACUUM INTO`
//! writes the database as one read transaction sees it, on a connection of its own that only reads, so
//! the server's writes go on meanwhile (WAL) and the copy holds exactly what was committed when it began.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::config::without_password;

pub async fn backup(database_url: &str, to: &Path) -> anyhow::Result<()> {
    let shown = without_password(database_url);
    if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        anyhow::bail!(
            "sigil backup copies SQLite databases; for PostgreSQL use pg_dump (pg_dump --format=custom \
             --file=sigil.dump '{shown}'), and pg_restore to restore"
        );
    }
    anyhow::ensure!(!to.exists(), "{} exists already: back up to a new file", to.display());
    let options = SqliteConnectOptions::from_str(database_url)
        .with_context(|| format!("{shown} is no sqlite:// URL"))?
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    // The copy is written beside the target and named as the target only once it is whole and on disk:
    // `VACUUM INTO` writes straight into its file, so a backup killed or failing halfway left a file at the
    // target that SQLite later rolled back to an empty database passing its integrity check.
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    remove_leftovers_of_an_interrupted_backup(&partial)?;
    let copied = copy_into(&options, &shown, &partial).await;
    if copied.is_err() {
        let _ = remove_leftovers_of_an_interrupted_backup(&partial);
    }
    copied?;
    // A hard link, unlike a rename, never replaces a target that appeared meanwhile.
    std::fs::hard_link(&partial, to).with_context(|| format!("naming the copy {}", to.display()))?;
    std::fs::remove_file(&partial).with_context(|| format!("removing {}", partial.display()))?;
    let directory = to.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(directory).and_then(|directory| directory.sync_all()).context("syncing the backup's directory")?;
    Ok(())
}

/// Copies the database into `partial`, a new file only its owner may read (it holds every identity's meta),
/// and syncs it to disk.
async fn copy_into(options: &SqliteConnectOptions, shown: &str, partial: &Path) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let target = partial.to_str().context("the backup's path is not UTF-8")?;
    let mut connection = options.connect().await.with_context(|| format!("opening {shown}"))?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(&mut connection).await.context("copying the database")?;
    connection.close().await?;
    File::open(partial).and_then(|copy| copy.sync_all()).context("syncing the copy")?;
    Ok(())
}

/// A `.partial` copy and its rollback journal, which only a backup that never finished leaves.
fn remove_leftovers_of_an_interrupted_backup(partial: &Path) -> anyhow::Result<()> {
    for leftover in [partial.to_path_buf(), PathBuf::from(format!("{}-journal", partial.display()))] {
        match std::fs::remove_file(&leftover) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).with_context(|| format!("removing {}", leftover.display()));
            }
            _ => {}
        }
    }
    Ok(())
}
