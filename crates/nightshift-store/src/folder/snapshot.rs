//! The folder store's listing: each task file as an [`Entry`], with finished entries kept
//! between snapshots while their file and error note are unchanged (a long history then
//! costs a `stat` per task, not a read).

use std::collections::HashMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use nightshift_core::records::TaskState;

use super::{FolderStore, error_file, history, index, not_a_plain_file};
use crate::{Entry, StoreError, fsutil};

/// Finished entries by file, with the stamp they were read at.
#[derive(Default)]
pub(super) struct FinishedEntries(HashMap<PathBuf, (u64, Entry)>);

/// What changes when a task file or its error note does.
fn stamp(path: &Path) -> u64 {
    let meta = fs::metadata(path).ok();
    let note = fs::metadata(error_file(path))
        .and_then(|m| m.modified())
        .ok();
    let mut h = DefaultHasher::new();
    (
        meta.as_ref().and_then(|m| m.modified().ok()),
        meta.map_or(0, |m| m.len()),
        note,
    )
        .hash(&mut h);
    h.finish()
}

impl FolderStore {
    /// The entry for a task file, read now.
    pub(super) fn read_entry(&self, state: TaskState, id: &str, path: &Path) -> Entry {
        // A link, folder or FIFO is not a task (the daemon sets it aside from the queue):
        // say so, and do not read through it (a FIFO would block). Finished files may have
        // other names; they are no longer written.
        let not_plain = fs::symlink_metadata(path)
            .ok()
            .filter(|m| state == TaskState::Queued || !m.is_file())
            .and_then(|m| not_a_plain_file(&m));
        let content = match not_plain {
            Some(problem) => Err(format!("{}: {problem}", path.display())),
            None => fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
        };
        // Only entries set aside as invalid (in failed/) have an error note.
        let note = (state == TaskState::Failed)
            .then(|| fs::read_to_string(error_file(path)).ok())
            .flatten()
            .map(|s| s.trim().to_string());
        let modified = fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| Timestamp::try_from(t).ok());
        let (last_attempt, _) = history::attempt_counts(&self.layout.task_runs(id));
        Entry {
            id: id.to_string(),
            state,
            source: path.to_path_buf(),
            content,
            note,
            modified,
            last_attempt,
            version: stamp(path),
            host: None,
            attention: None,
        }
    }

    pub(super) fn snapshot_now(&self) -> Result<Vec<Entry>, StoreError> {
        self.snapshot_of(&TaskState::ALL)
    }

    /// The finished tasks filed last (at most `limit`, filed at or after `since`), newest
    /// first, from the folders' indexes: only those tasks' files are read.
    pub(super) fn recent_now(
        &self,
        limit: usize,
        since: Option<Timestamp>,
    ) -> Result<crate::Recent, StoreError> {
        let mut filed = Vec::new();
        let mut total = 0;
        for state in [TaskState::Done, TaskState::Failed] {
            let dir = self.layout.state_dir(state);
            let recent = index::recent(&dir, limit, since).map_err(crate::error::at(&dir))?;
            total += recent.total;
            filed.extend(recent.filed.into_iter().map(|f| (f.at, f.file, state)));
        }
        filed.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        let mut entries = Vec::new();
        for (_, file, state) in filed.into_iter().take(limit) {
            let path = self.layout.state_dir(state).join(&file);
            // Moved away since the index was read: left out. Entries set aside as they were
            // (a folder, a FIFO, a link) are listed, as the full snapshot lists them.
            if let Some(id) = super::task_id_of(&path)
                && std::fs::symlink_metadata(&path).is_ok()
            {
                entries.push(self.read_entry(state, id, &path));
            }
        }
        let older = total.saturating_sub(entries.len() as u64);
        Ok(crate::Recent { entries, older })
    }

    /// Every task in `states`, in id order within each.
    pub(super) fn snapshot_of(&self, states: &[TaskState]) -> Result<Vec<Entry>, StoreError> {
        let mut all = Vec::new();
        let mut seen = Vec::new();
        for &state in states {
            for (id, path) in self.list_files(state)? {
                let finished = matches!(state, TaskState::Done | TaskState::Failed);
                if finished {
                    let now = stamp(&path);
                    let cached = self.lock().finished_entries.0.get(&path).cloned();
                    if let Some((then, entry)) = cached
                        && then == now
                    {
                        all.push(entry);
                        seen.push(path);
                        continue;
                    }
                }
                let entry = self.read_entry(state, &id, &path);
                if finished {
                    self.lock()
                        .finished_entries
                        .0
                        .insert(path.clone(), (entry.version, entry.clone()));
                    seen.push(path);
                }
                all.push(entry);
            }
        }
        if states.contains(&TaskState::Done) && states.contains(&TaskState::Failed) {
            self.lock()
                .finished_entries
                .0
                .retain(|path, _| seen.contains(path));
        }
        Ok(all)
    }

    pub(super) fn cancel_now(&self, id: &str, report: &str) -> Result<bool, StoreError> {
        let path = self.layout.task_file(TaskState::Queued, id);
        // Move first (atomic against a claim), then write the report.
        let dest = self.layout.task_file(TaskState::Failed, id);
        let indexed = index::lock(&self.layout.state_dir(TaskState::Failed)).ok();
        if !fsutil::move_noclobber(&path, &dest).map_err(crate::error::at(&dest))? {
            return Ok(false);
        }
        let bytes = fsutil::read_not_through_link(&dest).map_err(crate::error::at(&dest))?;
        let text = String::from_utf8_lossy(&bytes);
        let body = format!(
            "{}{report}",
            nightshift_core::task::strip_report(&text).trim_end()
        );
        fsutil::write_atomic(&dest, body.as_bytes(), 0o600).map_err(crate::error::at(&dest))?;
        let _ = indexed.map(|i| i.record(index::Change::Filed(&dest)));
        Ok(true)
    }

    pub(super) fn retry_now(&self, id: &str) -> Result<Option<u32>, StoreError> {
        let Some((state, path)) = self.locate_file(id) else {
            return Ok(None);
        };
        if !matches!(state, TaskState::Done | TaskState::Failed) {
            return Ok(None);
        }
        // A fresh attempt budget starts after the attempts made so far.
        let runs = self.layout.task_runs(id);
        let (last, _) = history::attempt_counts(&runs);
        fsutil::create_private_dir(&runs, 0o700).map_err(crate::error::at(&runs))?;
        let budget = runs.join(history::BUDGET_FROM);
        fsutil::write_atomic(&budget, format!("{}\n", last + 1).as_bytes(), 0o600)
            .map_err(crate::error::at(&budget))?;
        let dest = self.layout.task_file(TaskState::Queued, id);
        let indexed = index::lock(&self.layout.state_dir(state)).ok();
        if !fsutil::move_noclobber(&path, &dest).map_err(crate::error::at(&dest))? {
            return Ok(None);
        }
        // An invalid file's error note stays with the failed file's name; drop it.
        let _ = fs::remove_file(error_file(&path));
        let _ = indexed.map(|i| i.record(index::Change::Gone(&path)));
        Ok(Some(last + 1))
    }
}
