//! Removing finished tasks' worktrees: a durable queue of its own, worked by one background
//! worker, that never holds up a start.
//!
//! The removal waits for the grace period (the agent may still be in its worktree), so it is
//! recorded in the home's `tidy/` folder, one file per removal, before the task is filed. When
//! it is due, the worker checks the worktree outside any lock, takes it out of git's list
//! with a rename into a trash folder and a prune (quick, under the lock starts share), and
//! then deletes its files. The record says where the trash is before the rename, so a daemon
//! killed at any point finishes the removal after its restart, reading only this folder.
//! Records an older nightshift left in the run folders (`tidy.json`) are moved here once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::home::Home;
use crate::run::{self, RunDir};
use crate::worktree::{self, Detached};
use nightshift_core::tidy::{Pending, Progress, Removal, progress, removal};
use nightshift_store::{Store, fsutil, within};

use super::STORE_TIMEOUT;

/// Where an older nightshift recorded a removal: in the attempt's run folder.
const LEGACY_TIDY: &str = "tidy.json";
/// In the queue folder once the run folders' records have been moved into it.
const MIGRATED: &str = ".migrated";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct TidyRecord {
    pub task_id: String,
    pub worktree: PathBuf,
    pub branch: String,
    /// Not before: the agent has left by then.
    pub due_at: Timestamp,
    /// The attempt's run folder, whose event log says when the worktree went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
    /// Where the worktree is (or is about to be) moved to have its files deleted; set
    /// before the move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trash: Option<PathBuf>,
}

/// The queue: one record per pending removal.
pub(super) fn queue_dir(home: &Home) -> PathBuf {
    home.root().join("tidy")
}

/// Records a removal in the queue (before the task is filed, so a crash cannot forget it).
pub(super) fn enqueue(home: &Home, attempt: u32, record: &TidyRecord) -> std::io::Result<PathBuf> {
    let dir = queue_dir(home);
    fsutil::create_private_dir(&dir, 0o700)?;
    let path = dir.join(format!("{}.{attempt}.json", record.task_id));
    write(&path, record)?;
    Ok(path)
}

fn write(path: &Path, record: &TidyRecord) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    fsutil::write_atomic(path, &json, 0o600)
}

fn read(path: &Path) -> std::io::Result<Option<TidyRecord>> {
    match fsutil::read_not_through_link(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every removal in the queue, by record file. The first start on a home an older
/// nightshift used moves its run folders' records into the queue first.
pub(super) fn recorded(home: &Home) -> Vec<(Timestamp, PathBuf)> {
    let dir = queue_dir(home);
    if !dir.join(MIGRATED).exists() {
        migrate(home);
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        match read(&path) {
            Ok(Some(r)) => found.push((r.due_at, path)),
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot read the worktree removal {}: {e}", path.display()),
        }
    }
    found
}

/// Moves the removals recorded in run folders (`runs/<task>/<attempt>/tidy.json`) into the
/// queue, once: later starts read the queue alone, however long the history.
fn migrate(home: &Home) {
    let mut complete = true;
    if let Ok(tasks) = std::fs::read_dir(home.runs_dir()) {
        for task in tasks.flatten() {
            for attempt in run::attempts(&task.path()) {
                let dir = RunDir::new(task.path().join(attempt.to_string()));
                let moved = match dir.read::<TidyRecord>(LEGACY_TIDY) {
                    Ok(Some(mut r)) => {
                        r.run_dir = Some(dir.path().to_path_buf());
                        enqueue(home, attempt, &r)
                            .and_then(|_| std::fs::remove_file(dir.file(LEGACY_TIDY)))
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = moved {
                    tracing::warn!("cannot move {}: {e}", dir.file(LEGACY_TIDY).display());
                    complete = false;
                }
            }
        }
    }
    // Not marked while a record could not be moved: the next start tries again.
    if !complete {
        return;
    }
    let marker = queue_dir(home).join(MIGRATED);
    let marked = fsutil::create_private_dir(&queue_dir(home), 0o700)
        .and_then(|()| fsutil::write_atomic(&marker, b"", 0o600));
    if let Err(e) = marked {
        tracing::warn!("cannot write {}: {e}", marker.display());
    }
}

/// Removals waiting for their time, and the one worker that carries them out in turn.
#[derive(Default)]
pub(super) struct Queue {
    due: Pending,
    worker: Option<mpsc::UnboundedSender<PathBuf>>,
}

impl Queue {
    pub(super) fn add(&mut self, at: Timestamp, record: PathBuf) {
        self.due.add(at, record);
    }

    pub(super) fn next_at(&self) -> Option<Timestamp> {
        self.due.next_at()
    }

    /// Hands the removals due at `now` to the worker (started on first use).
    pub(super) fn start_due<S: Store>(&mut self, home: &Home, store: &Arc<S>, now: Timestamp) {
        for record in self.due.take_due(now) {
            let worker = self.worker.get_or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(work(home.clone(), Arc::clone(store), rx));
                tx
            });
            let _ = worker.send(record);
        }
    }
}

/// One removal at a time: a night's worth of finished tasks never deletes in parallel
/// with itself, and never competes with starts for more than a rename.
async fn work<S: Store>(home: Home, store: Arc<S>, mut records: mpsc::UnboundedReceiver<PathBuf>) {
    while let Some(record) = records.recv().await {
        finish(&home, store.as_ref(), &record).await;
    }
}

/// Carries out the removal recorded at `path`, then drops the record. A task that is queued
/// or running again has its worktree back in use: it stays. One that is still in `running/`
/// (its filing failed) keeps the record for the next start. So does a removal whose files
/// could not all be deleted.
pub(super) async fn finish<S: Store>(home: &Home, store: &S, path: &Path) {
    let record = match read(path) {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("cannot read the worktree removal: {e}");
            return;
        }
    };
    if carry_out(home, store, path, &record).await {
        drop_record(path);
    }
}

/// The removal itself; false while the record is still needed.
async fn carry_out<S: Store>(home: &Home, store: &S, path: &Path, record: &TidyRecord) -> bool {
    let wt = &record.worktree;
    if !under_worktrees_root(home, wt) {
        tracing::warn!(
            task = record.task_id,
            "not removing {}: it is not under {}",
            wt.display(),
            home.worktrees_dir().display()
        );
        return true;
    }
    if let Some(trash) = &record.trash
        && !worktree::is_trash_of(wt, trash)
    {
        tracing::warn!(
            task = record.task_id,
            "not deleting {}: it is not {}'s trash",
            trash.display(),
            wt.display()
        );
        return true;
    }
    let trash_there = record.trash.as_ref().is_some_and(|t| t.exists());
    if progress(record.trash.is_some(), wt.exists(), trash_there) == Progress::Moved {
        let trash = record.trash.clone().unwrap_or_default();
        if !wt.exists() {
            // Prunes git's record if the crash came before the prune.
            let _ = worktree::detach(wt, &trash, || true).await;
        }
        return delete(&trash).await;
    }
    if superseded(record) {
        return true;
    }
    match fate(store, &record.task_id).await {
        Some(Removal::Wait) | None => return false,
        Some(Removal::Drop) => return true,
        Some(Removal::Remove) => {}
    }
    if wt.exists() {
        match worktree::has_uncommitted_work(wt).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(
                    "keeping the worktree {}: it has uncommitted work",
                    wt.display()
                );
                return true;
            }
            Err(e) => {
                tracing::info!("keeping the worktree {}: {e}", wt.display());
                return true;
            }
        }
    }
    let tag = Timestamp::now().as_nanosecond().to_string();
    let Some(trash) = worktree::trash_path(wt, &tag) else {
        return true;
    };
    let noted = TidyRecord {
        trash: Some(trash.clone()),
        ..record.clone()
    };
    if let Err(e) = write(path, &noted) {
        tracing::warn!("cannot note the removal's trash in {}: {e}", path.display());
        return false;
    }
    // Asked again under the repository's turn, where a start of the task would have to
    // wait: a start makes the next attempt's run folder before it prepares the worktree. No
    // store query here, so a slow store never holds up the repository's starts.
    let still_removable = || !superseded(record);
    match worktree::detach(wt, &trash, still_removable).await {
        Ok(Detached::Moved) => log_removed(record, wt),
        Ok(Detached::Gone) => {}
        Ok(Detached::InUse) => return true,
        Ok(Detached::Kept(why)) => {
            tracing::info!("keeping the worktree {}: {why}", wt.display());
            return true;
        }
        Err(e) => {
            tracing::info!("keeping the worktree {}: {e}", wt.display());
            return true;
        }
    }
    delete(&trash).await
}

/// Deletes a detached worktree's files; false (keep the record) if that failed.
async fn delete(trash: &Path) -> bool {
    match worktree::delete_trash(trash).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "cannot delete a removed worktree's files (will try again at the next start): {e}"
            );
            false
        }
    }
}

/// What to do with the removal, by where the task is now; `None` when the store did not
/// answer (counted as in use: try again at the next start).
async fn fate<S: Store>(store: &S, id: &str) -> Option<Removal> {
    match within("locate", STORE_TIMEOUT, store.locate(id)).await {
        Ok(state) => Some(removal(state)),
        Err(e) => {
            tracing::warn!(task = id, "cannot tell whether the worktree is in use: {e}");
            None
        }
    }
}

/// Whether a later attempt of the task ran since this removal was recorded: the worktree
/// is that attempt's now, kept or removed by that attempt's own rule and record (a task
/// retried before its removal came due and failed keeps its worktree under `failure`).
fn superseded(record: &TidyRecord) -> bool {
    let Some(dir) = &record.run_dir else {
        return false;
    };
    let this = dir
        .file_name()
        .and_then(|n| n.to_str()?.parse::<u32>().ok());
    match (dir.parent(), this) {
        (Some(task_runs), Some(this)) => run::attempts(task_runs).into_iter().any(|a| a > this),
        _ => false,
    }
}

fn log_removed(record: &TidyRecord, wt: &Path) {
    if let Some(dir) = &record.run_dir {
        RunDir::new(dir.clone()).log_event(
            Timestamp::now(),
            "worktree",
            &format!("removed {} (branch {} kept)", wt.display(), record.branch),
        );
    }
}

fn under_worktrees_root(home: &Home, wt: &Path) -> bool {
    let (Ok(root), Some(parent)) = (
        std::fs::canonicalize(home.worktrees_dir()),
        wt.parent().and_then(|p| std::fs::canonicalize(p).ok()),
    ) else {
        // The repository's folder is gone: nothing of it is left to remove.
        return !wt.exists();
    };
    parent.starts_with(&root)
}

fn drop_record(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Home) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let home = Home::at(tmp.path().join("home"));
        home.ensure_layout().expect("layout");
        (tmp, home)
    }

    fn record(wt: PathBuf, trash: Option<PathBuf>) -> TidyRecord {
        TidyRecord {
            task_id: "t1".into(),
            worktree: wt,
            branch: "nightshift/t1".into(),
            due_at: Timestamp::UNIX_EPOCH,
            run_dir: None,
            trash,
        }
    }

    /// A daemon killed while deleting a detached worktree's files: the next one deletes the
    /// rest, and the base note, from the record alone.
    #[tokio::test]
    async fn a_removal_killed_mid_deletion_is_finished() {
        let (_tmp, home) = home();
        let repo_dir = home.worktrees_dir().join("app-0000abcd");
        let wt = repo_dir.join("t1");
        let trash = worktree::trash_path(&wt, "1").expect("trash path");
        std::fs::create_dir_all(trash.join("src/deep")).expect("mkdir");
        std::fs::write(trash.join("src/deep/left.rs"), "x").expect("file");
        let note = repo_dir.join(".t1.base");
        std::fs::write(&note, "abc\n").expect("note");
        let path = enqueue(&home, 1, &record(wt, Some(trash.clone()))).expect("enqueue");
        finish(&home, &crate::tasks::open(&home), &path).await;
        assert!(!trash.exists(), "the rest of the files are deleted");
        assert!(!note.exists(), "the base note was left behind");
        assert!(!path.exists(), "the record is done");
    }

    /// Records an older nightshift left in run folders are moved into the queue once; later
    /// starts read the queue alone.
    #[test]
    fn run_folder_records_are_moved_into_the_queue_once() {
        let (_tmp, home) = home();
        let legacy = |id: &str| {
            let dir = RunDir::new(home.run_dir(id, 1));
            std::fs::create_dir_all(dir.path()).expect("run dir");
            let wt = home.worktrees_dir().join("app-0000abcd").join(id);
            dir.write(LEGACY_TIDY, &record(wt, None)).expect("legacy");
            dir
        };
        let old = legacy("t1");
        let found = recorded(&home);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.starts_with(queue_dir(&home)));
        let moved = read(&found[0].1).expect("read").expect("a record");
        assert_eq!(moved.run_dir.as_deref(), Some(old.path()));
        assert!(!old.file(LEGACY_TIDY).exists(), "moved, not copied");
        // The run folders are not read again.
        legacy("t2");
        assert_eq!(recorded(&home).len(), 1);
    }
}
