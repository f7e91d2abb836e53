//! The folder store: the queue is a directory of markdown files, and a task's directory is
//! its state. Claims are atomic renames, so a task never runs twice and is never lost.
//!
//! One daemon per home: the home's lock keeps a second daemon out, so a claim's owner and
//! lease are recorded (who claimed, until when) but a starting daemon adopts every claim
//! ([`crate::Store::shared`] is false).

mod claims;
mod entries;
#[cfg(test)]
mod fuzz;
pub mod history;
pub mod index;
pub mod layout;
mod slots;
mod snapshot;
#[cfg(test)]
mod tests;

/// Scan rules for tests: files are read at once, and every task is admitted.
#[cfg(test)]
fn test_rules() -> ScanRules<'static> {
    fn admit(_: &nightshift_core::task::Task, _: &Path) -> Result<Option<String>, TaskError> {
        Ok(None)
    }
    ScanRules {
        settle: std::time::Duration::ZERO,
        admit: &admit,
        user_home: None,
    }
}

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use nightshift_core::records::TaskState;
use nightshift_core::task::{self, TaskError};
use nightshift_core::{Invalid, QueuedTask};

pub use entries::{error_file, not_a_plain_file, task_id_of};
use entries::{escaped_name, free_name, line_col, looks_like_task_file, within_name_limit};
pub use layout::{Layout, dir_name};

use crate::error::at;
use crate::{Claim, EnqueueError, Entry, Scan, ScanRules, Store, StoreError, fsutil};

/// What a scan remembers about a file, so unchanged files are not parsed again.
struct Cached {
    modified: SystemTime,
    len: u64,
    parsed: Result<QueuedTask, String>,
}

#[derive(Default)]
struct Inner {
    cache: HashMap<PathBuf, Cached>,
    /// Files seen being written: `true` once the writer finished.
    fresh: HashMap<PathBuf, bool>,
    /// `done/` and `failed/` listings, reused while the directory is unchanged.
    finished_cache: HashMap<TaskState, (SystemTime, Vec<String>)>,
    /// Files this store moved out of `queue/`, whose events need no rescan.
    moved_out: HashSet<PathBuf>,
    finished_entries: snapshot::FinishedEntries,
}

pub struct FolderStore {
    layout: Layout,
    inner: Mutex<Inner>,
}

/// Drops what the store knows about a file it is moving away.
fn forget(inner: &mut Inner, path: &Path, from: TaskState) {
    inner.cache.remove(path);
    inner.fresh.remove(path);
    if from == TaskState::Queued {
        inner.moved_out.insert(path.to_path_buf());
    }
}

impl FolderStore {
    /// The store of the home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> FolderStore {
        FolderStore {
            layout: Layout::new(root),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Creates the store's folders (private). Idempotent.
    pub fn create_layout(&self) -> io::Result<()> {
        for dir in self.layout.folders() {
            fsutil::create_private_dir(&dir, 0o700)?;
        }
        fsutil::create_private_dir(&self.layout.tmp_dir(), 0o700)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The caches hold nothing a panic could leave half-changed in a harmful way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A filesystem event was seen for `path` in `queue/`: `complete` when the writer is
    /// known to be done (closed the file, or renamed it in). Returns whether the queue
    /// needs a new scan (not for the store's own moves out of the queue).
    fn note_queue_change(&self, path: &Path, complete: bool) -> bool {
        let mut inner = self.lock();
        if inner.moved_out.remove(path) && !path.exists() {
            return false;
        }
        // Any write makes the file unfinished again until its writer closes it (or it
        // settles), even if it was complete before: an edit in place is a new write.
        inner.fresh.insert(path.to_path_buf(), complete);
        true
    }

    /// Where a task's file is now, if anywhere: for the folder-only views (`show`'s file
    /// name, `logs`).
    pub fn locate_file(&self, id: &str) -> Option<(TaskState, PathBuf)> {
        // Running first: a file dropped into the queue under a running task's id (set aside
        // at the next scan) must not hide the task that runs.
        [
            TaskState::Running,
            TaskState::Queued,
            TaskState::Done,
            TaskState::Failed,
        ]
        .into_iter()
        .map(|s| (s, self.layout.task_file(s, id)))
        .find(|(_, p)| p.is_file())
    }

    /// Ids and files of the tasks in a state folder, sorted by id.
    pub fn list_files(&self, state: TaskState) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let dir = self.layout.state_dir(state);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(at(&dir)(e)),
        };
        for entry in entries {
            let path = entry.map_err(at(&dir))?.path();
            if let Some(id) = task_id_of(&path) {
                out.push((id.to_string(), path));
            }
        }
        out.sort();
        Ok(out)
    }

    fn list_now(&self, state: TaskState) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_files(state)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    fn finished_ids(&self, inner: &mut Inner, state: TaskState) -> Result<Vec<String>, StoreError> {
        let dir = self.layout.state_dir(state);
        let modified = fs::metadata(&dir)
            .and_then(|m| m.modified())
            .map_err(at(&dir))?;
        if let Some((m, ids)) = inner.finished_cache.get(&state)
            && *m == modified
        {
            return Ok(ids.clone());
        }
        let ids: Vec<String> = self.list_now(state)?;
        inner.finished_cache.insert(state, (modified, ids.clone()));
        Ok(ids)
    }

    fn parse_file(
        &self,
        id: &str,
        path: &Path,
        rules: ScanRules<'_>,
    ) -> Result<QueuedTask, String> {
        // The scan looked at the entry without following it; it may have been swapped for a
        // link or a FIFO since, which must neither be read through nor block the daemon.
        let text = fsutil::read_not_through_link(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let text = String::from_utf8(text).map_err(|e| {
            let (line, column) = line_col(e.as_bytes(), e.utf8_error().valid_up_to());
            TaskError::new(path, line, column, "the file is not valid UTF-8").to_string()
        })?;
        let task = task::parse(id, path, &text, rules.user_home).map_err(|e| e.to_string())?;
        let lock = (rules.admit)(&task, path).map_err(|e| e.to_string())?;
        let runs = self.layout.task_runs(id);
        let (last_attempt, counted_attempts) = history::attempt_counts(&runs);
        let resumes = history::resumes(&runs);
        Ok(QueuedTask {
            task,
            path: path.to_path_buf(),
            last_attempt,
            counted_attempts,
            resume: runs.join(history::RESUME_NEXT).exists(),
            resumes,
            lock,
            lost: None,
        })
    }

    fn move_task(&self, id: &str, from: TaskState, to: TaskState) -> Result<bool, StoreError> {
        let src = self.layout.task_file(from, id);
        let dst = self.layout.task_file(to, id);
        forget(&mut self.lock(), &src, from);
        fsutil::move_noclobber(&src, &dst).map_err(at(&dst))
    }

    fn scan_now(&self, rules: ScanRules<'_>, now: SystemTime) -> Result<Scan, StoreError> {
        let queue_dir = self.layout.state_dir(TaskState::Queued);
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut scan = Scan::default();
        let mut present = HashSet::new();
        for entry in fs::read_dir(&queue_dir).map_err(at(&queue_dir))? {
            let entry = entry.map_err(at(&queue_dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let unreadable_name = name.to_str().is_none() && looks_like_task_file(&name);
            let Some(id) = task_id_of(&path)
                .map(str::to_string)
                .or_else(|| unreadable_name.then(String::new))
            else {
                continue;
            };
            // Not followed: a link is looked at, never through.
            let Ok(meta) = entry.metadata() else { continue };
            present.insert(path.clone());
            let modified = meta.modified().unwrap_or(now);
            let settled_at = modified + rules.settle;
            let complete = inner.fresh.get(&path).copied().unwrap_or(false);
            if !complete && settled_at > now {
                // Possibly still being written: look again once it has been quiet long enough.
                scan.recheck_at = Some(scan.recheck_at.map_or(settled_at, |t| t.min(settled_at)));
                continue;
            }
            let problem = if unreadable_name {
                Some(format!(
                    "the file name {name:?} is not valid UTF-8; task file names are text"
                ))
            } else {
                not_a_plain_file(&meta).map(str::to_string)
            };
            if let Some(problem) = problem {
                inner.cache.remove(&path);
                scan.invalid.push(Invalid {
                    error: format!("{}: {problem}", path.display()),
                    path,
                });
                continue;
            }
            let reuse = inner
                .cache
                .get(&path)
                .is_some_and(|c| c.modified == modified && c.len == meta.len());
            if !reuse {
                let parsed = self.parse_file(&id, &path, rules);
                inner.cache.insert(
                    path.clone(),
                    Cached {
                        modified,
                        len: meta.len(),
                        parsed,
                    },
                );
            }
            match inner.cache.get(&path).map(|c| &c.parsed) {
                Some(Ok(q)) => scan.queued.push(q.clone()),
                Some(Err(error)) => scan.invalid.push(Invalid {
                    path: path.clone(),
                    error: error.clone(),
                }),
                None => {}
            }
        }
        inner.cache.retain(|p, _| present.contains(p));
        inner.fresh.retain(|p, _| present.contains(p));
        for state in [TaskState::Done, TaskState::Failed] {
            for id in self.finished_ids(inner, state)? {
                scan.finished.insert(id, state);
            }
        }
        Ok(scan)
    }

    fn finish_now(
        &self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &str,
    ) -> Result<PathBuf, StoreError> {
        let src = self.layout.task_file(from, id);
        // Filed already by an earlier try whose last step (the folder's sync) failed: a retry
        // finds it done, rather than failing on the missing source for ever.
        if !src.exists()
            && let Some((state, filed)) = self.locate_file(id)
            && state == to
        {
            return Ok(filed);
        }
        let mut inner = self.lock();
        let bytes = fsutil::read_not_through_link(&src).map_err(at(&src))?;
        let text = String::from_utf8_lossy(&bytes);
        let kept = task::strip_report(&text);
        // Never appended in place: the name may be a hard link to a file outside the home.
        // A new file renamed over the name changes only the home's copy, and each step
        // leaves a whole file.
        let new = if kept.len() == text.len() {
            let mut new = bytes.clone();
            new.extend_from_slice(report.as_bytes());
            new
        } else {
            // Replace an earlier report (from before a retry) rather than stacking them.
            let mut new = kept.trim_end_matches(['\n', '\r']).to_string();
            new.push_str(report);
            new.into_bytes()
        };
        fsutil::write_atomic(&src, &new, 0o600).map_err(at(&src))?;
        let dir = self.layout.state_dir(to);
        let dst = free_name(&dir, id);
        forget(&mut inner, &src, from);
        let indexed = index::lock(&dir).ok();
        let before = fs::metadata(&dir).and_then(|m| m.modified()).ok();
        fsutil::move_noclobber(&src, &dst).map_err(at(&dst))?;
        fsutil::sync_dir(&dir).map_err(at(&dir))?;
        // Filed whatever the index says: one it missed is rebuilt by its next reader.
        let _ = indexed.map(|i| i.record(index::Change::Filed(&dst)));
        // Keep the listing current without reading the folder again, unless someone else
        // changed it since it was read.
        let after = fs::metadata(&dir).and_then(|m| m.modified()).ok();
        match (inner.finished_cache.get_mut(&to), before, after) {
            (Some((cached, ids)), Some(before), Some(after)) if *cached == before => {
                if let Some(new_id) = task_id_of(&dst) {
                    ids.push(new_id.to_string());
                }
                *cached = after;
            }
            _ => {
                inner.finished_cache.remove(&to);
            }
        }
        Ok(dst)
    }

    fn reject_now(&self, path: &Path, error: &str) -> Result<PathBuf, StoreError> {
        let escaped = path.file_name().map(escaped_name).unwrap_or_default();
        let id = task_id_of(path)
            .or_else(|| escaped.strip_suffix(".md").filter(|s| !s.is_empty()))
            .unwrap_or("invalid");
        let id = within_name_limit(id);
        let failed = self.layout.state_dir(TaskState::Failed);
        // A duplicate of a task that exists must not take that task's id in failed/ (its
        // dependents would see it as failed): it is kept under a name that is no task id.
        let duplicate = TaskState::ALL
            .into_iter()
            .map(|s| self.layout.task_file(s, id))
            .any(|p| p != path && p.exists());
        let dst = if duplicate {
            (1..)
                .map(|n| failed.join(format!("{id}.md.duplicate-{n}")))
                .find(|p| !p.exists())
                .unwrap_or_else(|| failed.join(format!("{id}.md.duplicate")))
        } else {
            free_name(&failed, id)
        };
        let indexed = index::lock(&failed).ok();
        let err_file = error_file(&dst);
        fsutil::write_atomic(&err_file, format!("{error}\n").as_bytes(), 0o600)
            .map_err(at(&err_file))?;
        let from = if path.parent() == Some(self.layout.state_dir(TaskState::Queued).as_path()) {
            TaskState::Queued
        } else {
            TaskState::Running
        };
        forget(&mut self.lock(), path, from);
        fsutil::move_noclobber(path, &dst).map_err(at(&dst))?;
        let _ = indexed.map(|i| i.record(index::Change::Filed(&dst)));
        if from == TaskState::Running
            && let Some(id) = task_id_of(path)
        {
            self.release_claim(id);
        }
        Ok(dst)
    }

    fn enqueue_now(&self, id: &str, text: &str) -> Result<String, EnqueueError> {
        nightshift_core::task_id::validate(id).map_err(|e| EnqueueError::InvalidId {
            id: id.to_string(),
            reason: e.to_string(),
        })?;
        if let Some((state, _)) = self.locate_file(id) {
            return Err(EnqueueError::Exists {
                id: id.to_string(),
                state,
            });
        }
        // Written whole in tmp/ (same filesystem), then renamed into queue/ without
        // replacing anything: the daemon only ever sees a complete file.
        let dest = self.layout.task_file(TaskState::Queued, id);
        let staged = self.layout.tmp_dir().join(format!("{id}.md"));
        fsutil::write_atomic(&staged, text.as_bytes(), 0o600).map_err(at(&staged))?;
        match fsutil::move_noclobber(&staged, &dest) {
            Ok(true) => Ok(dest.display().to_string()),
            Ok(false) => Err(EnqueueError::Exists {
                id: id.to_string(),
                state: TaskState::Queued,
            }),
            Err(e) => {
                let _ = fs::remove_file(&staged);
                Err(at(&dest)(e).into())
            }
        }
    }
}

impl Store for FolderStore {
    async fn scan(&self, rules: ScanRules<'_>, now: SystemTime) -> Result<Scan, StoreError> {
        self.scan_now(rules, now)
    }

    async fn enqueue(&self, id: &str, text: &str) -> Result<String, EnqueueError> {
        self.enqueue_now(id, text)
    }

    async fn claim(&self, id: &str, claim: &Claim) -> Result<bool, StoreError> {
        self.claim_now(id, claim)
    }

    async fn renew(&self, id: &str, claim: &Claim) -> Result<bool, StoreError> {
        let running = self.locate_file(id).map(|(s, _)| s) == Some(TaskState::Running);
        match self.claim_of_now(id)? {
            Some(held) if held.owner == claim.owner => {}
            // A record the claim could not write (a full disk) is written now: a running
            // task without one is this daemon's (one daemon per home).
            None if running => {}
            _ => return Ok(false),
        }
        self.write_claim(id, claim)?;
        Ok(true)
    }

    async fn take_over(
        &self,
        id: &str,
        from: Option<&Claim>,
        to: &Claim,
    ) -> Result<bool, StoreError> {
        // One daemon per home (its lock), so nothing races this read and write.
        if self.locate_file(id).map(|(s, _)| s) != Some(TaskState::Running)
            || self.claim_of_now(id)?.as_ref() != from
        {
            return Ok(false);
        }
        self.write_claim(id, to)?;
        Ok(true)
    }

    async fn claim_of(&self, id: &str) -> Result<Option<Claim>, StoreError> {
        self.claim_of_now(id)
    }

    async fn requeue(&self, id: &str) -> Result<(), StoreError> {
        self.move_task(id, TaskState::Running, TaskState::Queued)?;
        self.release_claim(id);
        // Requeued by us, so complete: no need to wait for it to settle.
        self.lock()
            .fresh
            .insert(self.layout.task_file(TaskState::Queued, id), true);
        Ok(())
    }

    async fn finish(
        &self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &str,
    ) -> Result<String, StoreError> {
        let filed = self.finish_now(id, from, to, report)?;
        if from == TaskState::Running {
            self.release_claim(id);
        }
        Ok(filed.display().to_string())
    }

    async fn reject(&self, entry: &Path, error: &str) -> Result<String, StoreError> {
        Ok(self.reject_now(entry, error)?.display().to_string())
    }

    async fn list(&self, state: TaskState) -> Result<Vec<String>, StoreError> {
        self.list_now(state)
    }

    async fn locate(&self, id: &str) -> Result<Option<TaskState>, StoreError> {
        Ok(self.locate_file(id).map(|(state, _)| state))
    }

    async fn entry(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .locate_file(id)
            .map(|(state, path)| self.read_entry(state, id, &path)))
    }

    async fn snapshot(&self) -> Result<Vec<Entry>, StoreError> {
        self.snapshot_now()
    }

    async fn active(&self) -> Result<Vec<Entry>, StoreError> {
        self.snapshot_of(&[TaskState::Queued, TaskState::Running])
    }

    async fn recent(
        &self,
        limit: usize,
        since: Option<jiff::Timestamp>,
    ) -> Result<crate::Recent, StoreError> {
        self.recent_now(limit, since)
    }

    async fn cancel(&self, id: &str, report: &str) -> Result<bool, StoreError> {
        self.cancel_now(id, report)
    }

    async fn retry(&self, id: &str) -> Result<Option<u32>, StoreError> {
        self.retry_now(id)
    }

    /// One daemon holds a home at a time (its lock).
    fn shared(&self) -> bool {
        false
    }

    fn watched_queue(&self) -> Option<PathBuf> {
        Some(self.layout.state_dir(TaskState::Queued))
    }

    fn note_change(&self, entry: &Path, complete: bool) -> bool {
        self.note_queue_change(entry, complete)
    }

    async fn paused(&self) -> Result<bool, StoreError> {
        let file = self.layout.paused_file();
        match fs::symlink_metadata(&file) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(at(&file)(e)),
        }
    }

    async fn set_paused(&self, paused: bool, when: jiff::Timestamp) -> Result<bool, StoreError> {
        let file = self.layout.paused_file();
        if paused {
            let was = self.paused().await?;
            fsutil::write_atomic(&file, when.to_string().as_bytes(), 0o600).map_err(at(&file))?;
            Ok(!was)
        } else {
            match fs::remove_file(&file) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(at(&file)(e)),
            }
        }
    }

    async fn claim_slot(&self, schedule: &str, slot: jiff::Timestamp) -> Result<bool, StoreError> {
        self.claim_slot_now(schedule, slot)
    }
}
