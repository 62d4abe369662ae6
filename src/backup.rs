//! `sigil backup`: a consistent copy of a SQLite database, made while `serve` runs on it. `VACUUM INTO`
//! writes the database as one read transaction sees it, on a connection of its own that only reads, so
//! the server's writes go on meanwhile (WAL) and the copy holds exactly what was committed when it began.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
    let claimed = claim(&partial)?;
    let copied = copy_into(&options, &shown, &partial, &claimed).await;
    if copied.is_err() {
        let _ = remove_copy_and_journal(&partial);
    }
    copied?;
    name_the_copy(&partial, to)?;
    remove_copy_and_journal(&partial)?;
    drop(claimed);
    let directory = to.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(directory).and_then(|directory| directory.sync_all()).context("syncing the backup's directory")?;
    Ok(())
}

/// Opens `partial` (mode 0600: it will hold every identity's meta) and locks it for this backup alone, so
/// that a second backup to the same target stops instead of writing into this one's copy. What an
/// interrupted backup left there, which nobody holds, is emptied.
fn claim(partial: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("another backup is writing {} now", partial.display())
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("locking {}", partial.display()));
        }
    }
    file.set_len(0).with_context(|| format!("emptying {}", partial.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    remove_if_there(&journal(partial))?;
    Ok(file)
}

/// Copies the database into `partial`, empty and claimed, and syncs it to disk.
async fn copy_into(options: &SqliteConnectOptions, shown: &str, partial: &Path, claimed: &File) -> anyhow::Result<()> {
    let target = partial.to_str().context("the backup's path is not UTF-8")?;
    let mut connection = options.connect().await.with_context(|| format!("opening {shown}"))?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(&mut connection).await.context("copying the database")?;
    connection.close().await?;
    claimed.sync_all().context("syncing the copy")?;
    Ok(())
}

/// Gives the copy the target's name. A hard link, unlike a rename, never replaces a target that appeared
/// meanwhile; a filesystem without hard links (vfat, exFAT, some network mounts) gets a rename after the
/// target is looked for once more.
fn name_the_copy(partial: &Path, to: &Path) -> anyhow::Result<()> {
    match std::fs::hard_link(partial, to) {
        Ok(()) => Ok(()),
        Err(error)
            if matches!(error.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::Unsupported) =>
        {
            anyhow::ensure!(!to.exists(), "{} exists already: back up to a new file", to.display());
            std::fs::rename(partial, to).with_context(|| format!("naming the copy {}", to.display()))
        }
        Err(error) => Err(error).with_context(|| format!("naming the copy {}", to.display())),
    }
}

fn journal(partial: &Path) -> PathBuf {
    PathBuf::from(format!("{}-journal", partial.display()))
}

/// Removes `partial` and its rollback journal, where they are.
fn remove_copy_and_journal(partial: &Path) -> anyhow::Result<()> {
    remove_if_there(partial)?;
    remove_if_there(&journal(partial))
}

fn remove_if_there(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::claim;

    #[test]
    fn a_second_backup_to_the_same_target_stops_while_the_first_writes() {
        let directory = tempfile::tempdir().expect("a directory");
        let partial = directory.path().join("copy.db.partial");
        std::fs::write(&partial, b"left by a backup that was killed").expect("written");
        let first = claim(&partial).expect("a leftover nobody holds is claimed");
        assert_eq!(std::fs::metadata(&partial).expect("there").len(), 0, "and emptied");
        let second = claim(&partial).expect_err("held by the first");
        assert!(second.to_string().contains("another backup"), "{second}");
        drop(first);
        claim(&partial).expect("free once the first is done");
    }
}
