//! SQLite mode is single-node: a `bursar serve` holds an exclusive OS lock (`flock`) on
//! `<database file>.lock` for its lifetime, and a second one on the same file refuses to
//! start. Only servers take it: `bursar ingest`, `migrate`, `poll` and `import-catalog` share
//! the file with a running server as before. The kernel drops the lock when the process
//! ends, however it ends (kill -9 included), so a stale lock file never blocks a restart.
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustix::fs::{FlockOperation, flock};
use sqlx::sqlite::SqliteConnectOptions;

use super::{StoreError, redact_url};

/// Held while a server runs on a SQLite file; dropping it releases the lock.
#[derive(Debug)]
pub struct NodeLock {
    path: PathBuf,
    _file: File,
}

impl NodeLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the single-node lock for a server on `url`: `None` for Postgres (several replicas
/// share it) and for an in-memory SQLite database; [`StoreError::InUse`] when another
/// server holds it.
pub fn lock_single_node(url: &str) -> Result<Option<NodeLock>, StoreError> {
    if !url.starts_with("sqlite:") || url.contains("mode=memory") || url.contains(":memory:") {
        return Ok(None);
    }
    let opts = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Connect {
        url: redact_url(url),
        detail: e.to_string(),
    })?;
    let db = opts.get_filename();
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Connect {
            url: redact_url(url),
            detail: format!("cannot open the lock file {}: {e}", path.display()),
        })?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(NodeLock { path, _file: file })),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StoreError::InUse {
            database: db.display().to_string(),
        }),
        Err(e) => Err(StoreError::Connect {
            url: redact_url(url),
            detail: format!("cannot lock {}: {e}", path.display()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let first = lock_single_node(&url).unwrap().expect("a lock for a file");
        assert_eq!(first.path(), dir.path().join("b.db.lock"));
        // Spelled another way, the same file is still the same lock.
        let other = format!(
            "sqlite://{}/./b.db?mode=rwc",
            dir.path().join(".").display()
        );
        match lock_single_node(&other) {
            Err(StoreError::InUse { database }) => assert!(database.ends_with("b.db")),
            r => panic!("expected InUse, got {r:?}"),
        }
        let msg = lock_single_node(&url).unwrap_err().to_string();
        assert!(msg.contains("single-node"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        drop(first);
        assert!(lock_single_node(&url).unwrap().is_some());
    }

    #[test]
    fn postgres_and_memory_databases_take_no_lock() {
        assert!(
            lock_single_node("postgres://u@127.0.0.1/db")
                .unwrap()
                .is_none()
        );
        assert!(lock_single_node("sqlite::memory:").unwrap().is_none());
        assert!(lock_single_node("sqlite://?mode=memory").unwrap().is_none());
    }
}
