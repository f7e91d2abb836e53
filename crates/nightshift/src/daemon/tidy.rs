//! Removing finished tasks' worktrees, durably.
//!
//! The removal waits for the grace period (the agent may still be in its worktree), so it
//! is recorded in the run folder (`tidy.json`) before the task is filed. The running daemon
//! removes it when due; a daemon started after a crash finds the records and finishes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::run::{self, RunDir};
use nightshift_core::tidy::{Removal, removal};
use nightshift_store::{Store, within};

use super::STORE_TIMEOUT;

/// The record of a removal still to do, in the attempt's run folder.
pub(super) const TIDY: &str = "tidy.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct TidyRecord {
    pub task_id: String,
    pub worktree: PathBuf,
    pub branch: String,
    /// Not before: the agent has left by then.
    pub due_at: Timestamp,
}

pub(super) use nightshift_core::tidy::Pending;

/// Every removal recorded in the home's run folders (`runs/<task>/<attempt>/tidy.json`).
pub(super) fn recorded(home: &Home) -> Vec<(Timestamp, PathBuf)> {
    let Ok(tasks) = std::fs::read_dir(home.runs_dir()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        for attempt in run::attempts(&task.path()) {
            let dir = RunDir::new(task.path().join(attempt.to_string()));
            match dir.read::<TidyRecord>(TIDY) {
                Ok(Some(r)) => found.push((r.due_at, dir.path().to_path_buf())),
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot read {}: {e}", dir.file(TIDY).display()),
            }
        }
    }
    found
}

/// Carries out the removal recorded in `dir`, then drops the record. A task that is queued
/// or running again has its worktree back in use: it stays. One that is still in `running/`
/// (its filing failed) keeps the record for the next try.
pub(super) async fn finish<S: Store>(store: Arc<S>, dir: PathBuf) {
    let dir = RunDir::new(dir);
    let Ok(Some(record)) = dir.read::<TidyRecord>(TIDY) else {
        return;
    };
    let state = match within("locate", STORE_TIMEOUT, store.locate(&record.task_id)).await {
        Ok(state) => state,
        // Unknown (the store did not answer) counts as in use: try again at the next start.
        Err(e) => {
            tracing::warn!(
                task = record.task_id,
                "cannot tell whether the worktree is in use: {e}"
            );
            return;
        }
    };
    match removal(state) {
        Removal::Wait => return,
        Removal::Drop => {}
        Removal::Remove => remove(&dir, &record.worktree, &record.branch).await,
    }
    if let Err(e) = std::fs::remove_file(dir.file(TIDY)) {
        tracing::warn!("cannot remove {}: {e}", dir.file(TIDY).display());
    }
}

async fn remove(dir: &RunDir, path: &Path, branch: &str) {
    if !path.exists() {
        if let Err(e) = crate::worktree::forget_base_note(path) {
            tracing::warn!("{e}");
        }
        return;
    }
    match crate::worktree::remove(path, false).await {
        Ok(()) => dir.log_event(
            Timestamp::now(),
            "worktree",
            &format!("removed {} (branch {branch} kept)", path.display()),
        ),
        Err(e) => tracing::info!("keeping the worktree {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon killed between `git worktree remove` and deleting the base note: the next
    /// one finds the folder gone and must still delete the note.
    #[tokio::test]
    async fn an_interrupted_removal_still_deletes_the_base_note() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let home = Home::at(tmp.path().join("home"));
        home.ensure_layout().expect("layout");
        let wt = tmp.path().join("worktrees").join("t1");
        std::fs::create_dir_all(wt.parent().expect("parent")).expect("mkdir");
        let note = tmp.path().join("worktrees").join(".t1.base");
        std::fs::write(&note, "abc\n").expect("note");
        let dir = RunDir::new(home.run_dir("t1", 1));
        std::fs::create_dir_all(dir.path()).expect("run dir");
        let record = TidyRecord {
            task_id: "t1".into(),
            worktree: wt,
            branch: "nightshift/t1".into(),
            due_at: Timestamp::UNIX_EPOCH,
        };
        dir.write(TIDY, &record).expect("record");
        finish(
            Arc::new(crate::tasks::open(&home)),
            dir.path().to_path_buf(),
        )
        .await;
        assert!(!note.exists(), "the base note was left behind");
        assert!(!dir.file(TIDY).exists(), "the record is done");
    }
}
