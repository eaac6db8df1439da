//! A polling watcher for a drop directory of billing exports (no inotify, no extra crate:
//! works the same on network mounts and in containers).
//!
//! Each `scan` walks the directory (and its subdirectories, as exports are often nested per
//! billing period) and notes every billing-looking file's size and modification time. A
//! file is reported once those were identical on two consecutive scans — so a file still
//! being written or copied is left alone until it settles — and again whenever it later
//! changes and settles anew. Files that disappear are forgotten (reported again if they
//! come back). State lives in memory only: a fresh watcher reports every settled file, so
//! the consumer must recognise files it has already ingested.
//!
//! Billing-looking: `.csv`, `.csv.gz`, `.gz`, `.parquet`, `.json`, `.jsonl` (any case).
//! Skipped: names starting with `.` (editor and upload temporaries, and hidden
//! directories), empty files, and directories reached through symlinks (no loops).
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// File name endings that look like billing exports.
pub const BILLING_SUFFIXES: &[&str] = &[".csv", ".csv.gz", ".gz", ".parquet", ".json", ".jsonl"];

/// Whether a file name looks like a billing export (and is not a dotfile).
pub fn is_billing_file(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    BILLING_SUFFIXES
        .iter()
        .any(|s| lower.len() > s.len() && lower.ends_with(s))
}

/// Polls one directory tree for new or changed billing files.
#[derive(Debug)]
pub struct DirWatcher {
    dir: PathBuf,
    /// (size, mtime) of every candidate file at the last scan.
    seen: HashMap<PathBuf, (u64, SystemTime)>,
    /// (size, mtime) at which each file was last reported.
    reported: HashMap<PathBuf, (u64, SystemTime)>,
}

impl DirWatcher {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirWatcher {
            dir: dir.into(),
            seen: HashMap::new(),
            reported: HashMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Forgets a reported file, so it is reported again once it is (still) settled — for
    /// a consumer that failed on it and wants another try.
    pub fn forget(&mut self, path: &Path) {
        self.reported.remove(path);
    }

    /// Files that are new or changed since they were last reported and whose size and
    /// modification time did not change since the previous scan, sorted by path. An error
    /// reading the watched directory itself is returned; files or subdirectories that
    /// vanish or cannot be read during the walk are skipped this time.
    pub fn scan(&mut self) -> io::Result<Vec<PathBuf>> {
        let mut now = HashMap::new();
        collect(&self.dir, &mut now, true)?;
        let mut ready = Vec::new();
        for (path, state) in &now {
            let settled = self.seen.get(path) == Some(state);
            if settled && self.reported.get(path) != Some(state) {
                ready.push(path.clone());
            }
        }
        ready.sort();
        for path in &ready {
            self.reported.insert(path.clone(), now[path]);
        }
        let present: HashSet<&PathBuf> = now.keys().collect();
        self.reported.retain(|p, _| present.contains(p));
        self.seen = now;
        Ok(ready)
    }
}

/// Adds every candidate file under `dir` to `out`. Only the top level's errors propagate.
fn collect(dir: &Path, out: &mut HashMap<PathBuf, (u64, SystemTime)>, top: bool) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if top => return Err(e),
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "skipping unreadable directory");
            return Ok(());
        }
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            collect(&path, out, false)?;
            continue;
        }
        if !is_billing_file(&name) {
            continue;
        }
        // Follows a symlinked file; skips a symlink to a directory or a dangling one.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.len() == 0 {
            continue;
        }
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        out.insert(path, (meta.len(), mtime));
    }
    Ok(())
}

/// Scans `dir` every `every` (the first scan at once, so a file present at start is ready
/// after the second) and awaits `on_file(path)` for each ready file, in order, until
/// `shutdown` turns true or its sender is dropped. Scans run on the blocking pool; a scan
/// error (directory missing or unreadable) is logged and retried at the next tick. Shutdown
/// is checked between files, not in the middle of `on_file`.
pub async fn watch_loop<F, Fut>(
    dir: impl Into<PathBuf>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut on_file: F,
) where
    F: FnMut(PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut watcher = Some(DirWatcher::new(dir));
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = tick.tick() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        }
        let mut w = watcher.take().expect("watcher is put back after each scan");
        let (w, result) = match tokio::task::spawn_blocking(move || {
            let r = w.scan();
            (w, r)
        })
        .await
        {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(error = %e, "directory scan task failed; stopping the watcher");
                return;
            }
        };
        let dir = w.dir().display().to_string();
        watcher = Some(w);
        match result {
            Ok(files) => {
                last_error = None;
                for path in files {
                    if *shutdown.borrow() {
                        return;
                    }
                    tracing::info!(file = %path.display(), "billing file ready");
                    on_file(path).await;
                }
            }
            Err(e) => {
                let e = e.to_string();
                // Log a persisting error once, not every tick.
                if last_error.as_deref() != Some(&e) {
                    tracing::warn!(dir = %dir, error = %e, "cannot scan the watched directory");
                }
                last_error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    fn names(paths: &[PathBuf], root: &Path) -> Vec<String> {
        paths
            .iter()
            .map(|p| {
                p.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect()
    }

    #[test]
    fn billing_names() {
        for ok in [
            "a.csv",
            "B.CSV.GZ",
            "x.gz",
            "part-0.snappy.parquet",
            "r.json",
            "r.jsonl",
        ] {
            assert!(is_billing_file(ok), "{ok}");
        }
        for no in [
            ".a.csv",
            "a.txt",
            "a.csv.tmp",
            "a.parquet.part",
            "csv",
            ".gz",
            "manifest",
        ] {
            assert!(!is_billing_file(no), "{no}");
        }
    }

    #[test]
    fn reports_files_once_settled_then_on_change() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("b.csv"), "x,y\n1,2\n").unwrap();
        fs::write(root.join("a.parquet"), b"PAR1").unwrap();
        fs::write(root.join("notes.txt"), "no").unwrap();
        fs::write(root.join(".hidden.csv"), "no").unwrap();
        fs::write(root.join("empty.csv"), "").unwrap();
        fs::create_dir_all(root.join("2024-01/.tmp")).unwrap();
        fs::write(root.join("2024-01/c.csv.gz"), b"\x1f\x8b").unwrap();
        fs::write(root.join("2024-01/.tmp/d.csv"), "no").unwrap();

        let mut w = DirWatcher::new(root);
        // First sight: nothing is known to be complete yet.
        assert!(w.scan().unwrap().is_empty());
        // Unchanged on the second scan: ready, sorted.
        assert_eq!(
            names(&w.scan().unwrap(), root),
            ["2024-01/c.csv.gz", "a.parquet", "b.csv"]
        );
        // Reported once only.
        assert!(w.scan().unwrap().is_empty());

        // A file being written: grows between scans, reported only once it stops.
        let mut f = fs::File::create(root.join("e.jsonl")).unwrap();
        f.write_all(b"{\"a\":1}\n").unwrap();
        f.flush().unwrap();
        assert!(w.scan().unwrap().is_empty());
        f.write_all(b"{\"a\":2}\n").unwrap();
        f.flush().unwrap();
        assert!(w.scan().unwrap().is_empty(), "still growing");
        assert_eq!(names(&w.scan().unwrap(), root), ["e.jsonl"]);
        drop(f);

        // A reported file that changes is reported again once settled.
        fs::write(root.join("b.csv"), "x,y\n1,2\n3,4\n").unwrap();
        assert!(w.scan().unwrap().is_empty());
        assert_eq!(names(&w.scan().unwrap(), root), ["b.csv"]);

        // A file that disappears and comes back is new again.
        fs::remove_file(root.join("a.parquet")).unwrap();
        assert!(w.scan().unwrap().is_empty());
        fs::write(root.join("a.parquet"), b"PAR1").unwrap();
        assert!(w.scan().unwrap().is_empty());
        assert_eq!(names(&w.scan().unwrap(), root), ["a.parquet"]);

        // `forget` asks for a file again.
        w.forget(&root.join("b.csv"));
        assert_eq!(names(&w.scan().unwrap(), root), ["b.csv"]);
        assert!(w.scan().unwrap().is_empty());
    }

    #[test]
    fn mtime_change_alone_counts_as_change() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("r.json");
        fs::write(&p, "[1]").unwrap();
        let mut w = DirWatcher::new(tmp.path());
        w.scan().unwrap();
        assert_eq!(w.scan().unwrap(), std::slice::from_ref(&p));
        // Same size, different content and mtime.
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        drop(f);
        assert!(w.scan().unwrap().is_empty());
        assert_eq!(w.scan().unwrap(), [p]);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = DirWatcher::new(tmp.path().join("nope"));
        assert_eq!(w.scan().unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    async fn wait(rx: &mut tokio::sync::mpsc::UnboundedReceiver<PathBuf>) -> PathBuf {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a file within 10s")
            .unwrap()
    }

    #[tokio::test]
    async fn loop_delivers_ready_files_and_stops_on_shutdown() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        fs::write(dir.join("a.csv"), "1").unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (file_tx, mut file_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(watch_loop(
            dir.clone(),
            Duration::from_millis(20),
            stop_rx,
            move |p| {
                let tx = file_tx.clone();
                async move {
                    tx.send(p).unwrap();
                }
            },
        ));
        assert_eq!(wait(&mut file_rx).await, dir.join("a.csv"));
        fs::write(dir.join("b.json"), "{}").unwrap();
        assert_eq!(wait(&mut file_rx).await, dir.join("b.json"));
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("watcher stops on shutdown")
            .unwrap();
        assert!(file_rx.try_recv().is_err(), "nothing reported twice");
    }

    #[tokio::test]
    async fn loop_survives_a_missing_directory_and_stops_when_sender_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("later");
        let (stop_tx, stop_rx) = watch::channel(false);
        let (file_tx, mut file_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(watch_loop(
            dir.clone(),
            Duration::from_millis(20),
            stop_rx,
            move |p| {
                let tx = file_tx.clone();
                async move {
                    tx.send(p).unwrap();
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(80)).await;
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("x.csv.gz"), b"\x1f\x8b").unwrap();
        assert_eq!(wait(&mut file_rx).await, dir.join("x.csv.gz"));
        drop(stop_tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("watcher stops when the sender is gone")
            .unwrap();
    }
}
