//! The folder store: the queue is a directory of markdown files, and a task's directory is
//! its state. Claims are atomic renames, so a task never runs twice and is never lost.
//!
//! The daemon reaches the store through the [`Store`] trait, so a shared (PostgreSQL) queue
//! can replace it later without touching the daemon loop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Config;
use crate::fsutil;
use crate::home::{Home, TaskState};
use crate::run;
use nightshift_core::task::{self, Task, TaskError};
use nightshift_core::{Invalid, QueuedTask};

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_path_buf(),
        source,
    }
}

/// The queue as it is now.
#[derive(Debug, Default)]
pub struct Scan {
    pub queued: Vec<QueuedTask>,
    pub invalid: Vec<Invalid>,
    pub finished: BTreeMap<String, TaskState>,
    /// Files still being written; look again at this time.
    pub recheck_at: Option<SystemTime>,
}

/// The queue operations the daemon needs.
pub trait Store {
    /// Lists `queue/` (valid tasks, invalid files) and the ids that finished.
    fn scan(&mut self, config: &Config, now: SystemTime) -> Result<Scan, StoreError>;
    /// Takes a queued task for running. `Ok(false)` when it is no longer in the queue.
    fn claim(&mut self, id: &str) -> Result<bool, StoreError>;
    /// Puts a running task back into the queue for another attempt.
    fn requeue(&mut self, id: &str) -> Result<(), StoreError>;
    /// Appends the report to a running or queued task and files it in `done/` or `failed/`.
    fn finish(
        &mut self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &str,
    ) -> Result<PathBuf, StoreError>;
    /// Moves an invalid file aside to `failed/`, keeping it byte for byte, with the error in
    /// a file next to it.
    fn reject(&mut self, path: &Path, error: &str) -> Result<PathBuf, StoreError>;
    /// Ids and files of the tasks in a state, in id order.
    fn list(&self, state: TaskState) -> Result<Vec<(String, PathBuf)>, StoreError>;
    /// A filesystem event was seen for `path`: `complete` when the writer is known to be done
    /// (closed the file, or renamed it in). Returns whether the queue needs a new scan (not
    /// for the store's own moves out of the queue).
    fn note_change(&mut self, path: &Path, complete: bool) -> bool;
}

/// What a scan remembers about a file, so unchanged files are not parsed again.
struct Cached {
    modified: SystemTime,
    len: u64,
    parsed: Result<QueuedTask, String>,
}

pub struct FolderStore {
    home: Home,
    cache: HashMap<PathBuf, Cached>,
    /// Files seen being written: `true` once the writer finished.
    fresh: HashMap<PathBuf, bool>,
    /// `done/` and `failed/` listings, reused while the directory is unchanged.
    finished_cache: HashMap<TaskState, (SystemTime, Vec<String>)>,
    /// Files this store moved out of `queue/`, whose events need no rescan.
    moved_out: HashSet<PathBuf>,
}

impl FolderStore {
    pub fn new(home: Home) -> FolderStore {
        FolderStore {
            home,
            cache: HashMap::new(),
            fresh: HashMap::new(),
            finished_cache: HashMap::new(),
            moved_out: HashSet::new(),
        }
    }

    fn finished_ids(&mut self, state: TaskState) -> Result<Vec<String>, StoreError> {
        let dir = self.home.state_dir(state);
        let modified = fs::metadata(&dir)
            .and_then(|m| m.modified())
            .map_err(at(&dir))?;
        if let Some((m, ids)) = self.finished_cache.get(&state)
            && *m == modified
        {
            return Ok(ids.clone());
        }
        let ids: Vec<String> = self.list(state)?.into_iter().map(|(id, _)| id).collect();
        self.finished_cache.insert(state, (modified, ids.clone()));
        Ok(ids)
    }

    fn parse_file(&self, id: &str, path: &Path, config: &Config) -> Result<QueuedTask, String> {
        // The scan looked at the entry without following it; it may have been swapped for a
        // link or a FIFO since, which must neither be read through nor block the daemon.
        let text = fsutil::read_not_through_link(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let text = String::from_utf8(text).map_err(|e| {
            let (line, column) = line_col(e.as_bytes(), e.utf8_error().valid_up_to());
            TaskError::new(path, line, column, "the file is not valid UTF-8").to_string()
        })?;
        let task = task::parse(id, path, &text, crate::home::user_home().as_deref())
            .map_err(|e| e.to_string())?;
        validate_against_config(&task, path, config).map_err(|e| e.to_string())?;
        let runs = self.home.task_runs(id);
        let (last_attempt, counted_attempts) = run::attempt_counts(&runs);
        let resumes = run::resumes(&runs);
        let lock = checkout_lock(&task, config);
        Ok(QueuedTask {
            task,
            path: path.to_path_buf(),
            last_attempt,
            counted_attempts,
            resume: runs.join(run::RESUME_NEXT).exists(),
            resumes,
            lock,
        })
    }

    fn move_task(&mut self, id: &str, from: TaskState, to: TaskState) -> Result<bool, StoreError> {
        let src = self.home.task_file(from, id);
        let dst = self.home.task_file(to, id);
        self.forget(&src, from);
        fsutil::move_noclobber(&src, &dst).map_err(at(&dst))
    }

    /// Drops what the store knows about a file it is moving away.
    fn forget(&mut self, path: &Path, from: TaskState) {
        self.cache.remove(path);
        self.fresh.remove(path);
        if from == TaskState::Queued {
            self.moved_out.insert(path.to_path_buf());
        }
    }
}

/// Checks a task against the configuration: its agent must exist and it needs a workdir.
pub fn validate_against_config(task: &Task, path: &Path, config: &Config) -> Result<(), TaskError> {
    let agent = task.agent.as_deref().unwrap_or(&config.default_agent);
    if config.profile(agent).is_none() {
        let line = task.field_line("agent");
        let origin = if task.agent.is_some() {
            ""
        } else {
            " (the default_agent in config.toml)"
        };
        return Err(TaskError::new(
            path,
            line,
            1,
            format!(
                "agent `{agent}`{origin} is not a profile; known agents: {}",
                config.agent_names().join(", ")
            ),
        ));
    }
    if task.workdir.is_none() && config.workdir.is_none() {
        return Err(TaskError::new(
            path,
            1,
            1,
            "no workdir: set `workdir:` in the front matter or `workdir` in config.toml",
        ));
    }
    Ok(())
}

fn line_col(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() as u32 + 1;
    (line, column)
}

/// The task id of a file in a state folder, if it is a task file at all. Dotfiles and other
/// extensions are left alone: editors and `add` use them for files in progress.
pub fn task_id_of(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    name.strip_suffix(".md").filter(|s| !s.is_empty())
}

impl Store for FolderStore {
    fn scan(&mut self, config: &Config, now: SystemTime) -> Result<Scan, StoreError> {
        let queue_dir = self.home.state_dir(TaskState::Queued);
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
            let settled_at = modified + config.settle;
            let complete = self.fresh.get(&path).copied().unwrap_or(false);
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
                self.cache.remove(&path);
                scan.invalid.push(Invalid {
                    error: format!("{}: {problem}", path.display()),
                    path,
                });
                continue;
            }
            let reuse = self
                .cache
                .get(&path)
                .is_some_and(|c| c.modified == modified && c.len == meta.len());
            if !reuse {
                let parsed = self.parse_file(&id, &path, config);
                self.cache.insert(
                    path.clone(),
                    Cached {
                        modified,
                        len: meta.len(),
                        parsed,
                    },
                );
            }
            match self.cache.get(&path).map(|c| &c.parsed) {
                Some(Ok(q)) => scan.queued.push(q.clone()),
                Some(Err(error)) => scan.invalid.push(Invalid {
                    path: path.clone(),
                    error: error.clone(),
                }),
                None => {}
            }
        }
        self.cache.retain(|p, _| present.contains(p));
        self.fresh.retain(|p, _| present.contains(p));
        for state in [TaskState::Done, TaskState::Failed] {
            for id in self.finished_ids(state)? {
                scan.finished.insert(id, state);
            }
        }
        Ok(scan)
    }

    fn claim(&mut self, id: &str) -> Result<bool, StoreError> {
        self.move_task(id, TaskState::Queued, TaskState::Running)
    }

    fn requeue(&mut self, id: &str) -> Result<(), StoreError> {
        self.move_task(id, TaskState::Running, TaskState::Queued)?;
        // Requeued by us, so complete: no need to wait for it to settle.
        self.fresh
            .insert(self.home.task_file(TaskState::Queued, id), true);
        Ok(())
    }

    fn finish(
        &mut self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &str,
    ) -> Result<PathBuf, StoreError> {
        let src = self.home.task_file(from, id);
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
        let dir = self.home.state_dir(to);
        let dst = free_name(&dir, id);
        self.forget(&src, from);
        let before = fs::metadata(&dir).and_then(|m| m.modified()).ok();
        fsutil::move_noclobber(&src, &dst).map_err(at(&dst))?;
        fsutil::sync_dir(&dir).map_err(at(&dir))?;
        // Keep the listing current without reading the folder again, unless someone else
        // changed it since it was read.
        let after = fs::metadata(&dir).and_then(|m| m.modified()).ok();
        match (self.finished_cache.get_mut(&to), before, after) {
            (Some((cached, ids)), Some(before), Some(after)) if *cached == before => {
                if let Some(new_id) = task_id_of(&dst) {
                    ids.push(new_id.to_string());
                }
                *cached = after;
            }
            _ => {
                self.finished_cache.remove(&to);
            }
        }
        Ok(dst)
    }

    fn reject(&mut self, path: &Path, error: &str) -> Result<PathBuf, StoreError> {
        let escaped = path.file_name().map(escaped_name).unwrap_or_default();
        let id = task_id_of(path)
            .or_else(|| escaped.strip_suffix(".md").filter(|s| !s.is_empty()))
            .unwrap_or("invalid");
        let id = within_name_limit(id);
        let failed = self.home.state_dir(TaskState::Failed);
        // A duplicate of a task that exists must not take that task's id in failed/ (its
        // dependents would see it as failed): it is kept under a name that is no task id.
        let duplicate = TaskState::ALL
            .into_iter()
            .map(|s| self.home.task_file(s, id))
            .any(|p| p != path && p.exists());
        let dst = if duplicate {
            (1..)
                .map(|n| failed.join(format!("{id}.md.duplicate-{n}")))
                .find(|p| !p.exists())
                .unwrap_or_else(|| failed.join(format!("{id}.md.duplicate")))
        } else {
            free_name(&failed, id)
        };
        let err_file = error_file(&dst);
        fsutil::write_atomic(&err_file, format!("{error}\n").as_bytes(), 0o600)
            .map_err(at(&err_file))?;
        let from = if path.parent() == Some(self.home.state_dir(TaskState::Queued).as_path()) {
            TaskState::Queued
        } else {
            TaskState::Running
        };
        self.forget(path, from);
        fsutil::move_noclobber(path, &dst).map_err(at(&dst))?;
        Ok(dst)
    }

    fn list(&self, state: TaskState) -> Result<Vec<(String, PathBuf)>, StoreError> {
        list_state(&self.home, state)
    }

    fn note_change(&mut self, path: &Path, complete: bool) -> bool {
        if self.moved_out.remove(path) && !path.exists() {
            return false;
        }
        // Any write makes the file unfinished again until its writer closes it (or it
        // settles), even if it was complete before: an edit in place is a new write.
        self.fresh.insert(path.to_path_buf(), complete);
        true
    }
}

/// Ids and files of the tasks in a state folder, sorted by id.
pub fn list_state(home: &Home, state: TaskState) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let dir = home.state_dir(state);
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

/// Whether a directory entry is named like a task file (`*.md`, not hidden), whatever the
/// encoding of its name.
fn looks_like_task_file(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    !bytes.starts_with(b".") && bytes.len() > 3 && bytes.ends_with(b".md")
}

/// A name that is not UTF-8 as text: the bytes that are not UTF-8 become `%XX`.
fn escaped_name(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why an entry of `queue/` (looked at without following links) cannot be a task file:
/// nightshift reads and files only plain files with no other name, so it never changes a
/// file outside its home.
pub fn not_a_plain_file(meta: &fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    let kind = meta.file_type();
    if kind.is_symlink() {
        Some(
            "is a symbolic link; nightshift does not follow links in the queue (copy the file in instead)",
        )
    } else if kind.is_dir() {
        Some("is a directory, not a task file")
    } else if !kind.is_file() {
        Some("is not a regular file (a FIFO, socket or device), not a task file")
    } else if meta.nlink() > 1 {
        Some(
            "is a hard link to a file with other names; nightshift does not change files through links (copy the file in instead)",
        )
    } else {
        None
    }
}

/// Where a task with `id` is now, if anywhere.
pub fn locate(home: &Home, id: &str) -> Option<(TaskState, PathBuf)> {
    TaskState::ALL
        .into_iter()
        .map(|s| (s, home.task_file(s, id)))
        .find(|(_, p)| p.is_file())
}

/// Where the error of a rejected file is written: next to it.
pub fn error_file(rejected: &Path) -> PathBuf {
    match rejected.extension().and_then(|e| e.to_str()) {
        Some("md") => rejected.with_extension("error.txt"),
        _ => {
            let mut name = rejected.as_os_str().to_owned();
            name.push(".error.txt");
            PathBuf::from(name)
        }
    }
}

/// A rejected file's name cut to [`nightshift_core::task_id::MAX_LEN`] bytes (at a character
/// boundary): a name too long to be an id, or made longer by `%XX` escapes, must still fit
/// in failed/ with its `.error.txt`. The error names the original file.
fn within_name_limit(id: &str) -> &str {
    let mut end = id.len().min(nightshift_core::task_id::MAX_LEN);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

/// `dir/<id>.md`, or `dir/<id>.<n>.md` when that is taken: a file is never overwritten.
fn free_name(dir: &Path, id: &str) -> PathBuf {
    let first = dir.join(format!("{id}.md"));
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| dir.join(format!("{id}.{n}.md")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// The checkout a task locks: it runs in place (`isolation: none`) in a git work tree.
pub fn checkout_lock(task: &task::Task, config: &Config) -> Option<String> {
    if task.isolation.unwrap_or(config.isolation) != task::Isolation::None {
        return None;
    }
    let workdir = task.workdir.as_ref().or(config.workdir.as_ref())?;
    crate::git::work_tree_key(workdir).map(|k| k.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn store() -> (tempfile::TempDir, Home, FolderStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = Home::at(dir.path());
        home.ensure_layout().expect("layout");
        let store = FolderStore::new(home.clone());
        (dir, home, store)
    }

    fn config() -> Config {
        Config::parse(
            Path::new("config.toml"),
            "workdir = \"/tmp\"\nsettle = \"0s\"\n",
        )
        .expect("config")
    }

    #[test]
    fn filing_a_hard_linked_task_leaves_the_other_name_untouched() -> Result<(), StoreError> {
        let (dir, home, mut store) = store();
        let outside = dir.path().join("outside.md");
        let text = "# linked\n\nbody\n";
        fs::write(&outside, text).map_err(at(&outside))?;
        let running = home.task_file(TaskState::Running, "linked");
        fs::hard_link(&outside, &running).map_err(at(&running))?;

        let filed = store.finish(
            "linked",
            TaskState::Running,
            TaskState::Done,
            "\n<!-- report -->\n",
        )?;
        assert_eq!(fs::read_to_string(&outside).map_err(at(&outside))?, text);
        let got = fs::read_to_string(&filed).map_err(at(&filed))?;
        assert_eq!(got, format!("{text}\n<!-- report -->\n"));
        Ok(())
    }

    #[test]
    fn a_symlinked_task_is_not_filed_through_its_link() -> Result<(), StoreError> {
        let (dir, home, mut store) = store();
        let outside = dir.path().join("outside.md");
        fs::write(&outside, "# linked\n").map_err(at(&outside))?;
        let running = home.task_file(TaskState::Running, "linked");
        std::os::unix::fs::symlink(&outside, &running).map_err(at(&running))?;
        let result = store.finish("linked", TaskState::Running, TaskState::Done, "report");
        assert!(result.is_err(), "{result:?}");
        assert_eq!(
            fs::read_to_string(&outside).map_err(at(&outside))?,
            "# linked\n"
        );
        Ok(())
    }

    /// An entry swapped for a link or a FIFO after the scan looked at it is not read
    /// through, and does not block.
    #[test]
    fn parsing_never_reads_through_a_link_or_blocks_on_a_fifo() -> Result<(), StoreError> {
        let (dir, home, store) = store();
        let queue = home.state_dir(TaskState::Queued);
        let outside = dir.path().join("outside.md");
        fs::write(&outside, "# t\n").map_err(at(&outside))?;
        let link = queue.join("link.md");
        std::os::unix::fs::symlink(&outside, &link).map_err(at(&link))?;
        let error = store
            .parse_file("link", &link, &config())
            .err()
            .unwrap_or_default();
        assert!(error.contains("cannot read"), "{error}");
        let fifo = queue.join("fifo.md");
        // mkfifo(1): rustix has no mknodat on macOS.
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map_err(at(&fifo))?;
        assert!(made.success(), "mkfifo {}", fifo.display());
        let error = store
            .parse_file("fifo", &fifo, &config())
            .err()
            .unwrap_or_default();
        assert!(error.contains("not a regular file"), "{error}");
        Ok(())
    }

    #[test]
    fn a_name_too_long_for_an_id_is_set_aside_under_a_shorter_one() -> Result<(), StoreError> {
        let (_dir, home, mut store) = store();
        let queue = home.state_dir(TaskState::Queued);
        let long = queue.join(format!("{}.md", "a".repeat(250)));
        fs::write(&long, "# t\n").map_err(at(&long))?;
        // 100 bytes that are not UTF-8 become 300 bytes of `%XX`.
        let mut name = vec![0xff_u8; 100];
        name.extend_from_slice(b".md");
        let odd = queue.join(std::ffi::OsStr::from_bytes(&name));
        fs::write(&odd, "# t\n").map_err(at(&odd))?;

        let scan = store.scan(&config(), SystemTime::now() + config().settle)?;
        assert_eq!(scan.invalid.len(), 2, "{:?}", scan.invalid);
        for bad in &scan.invalid {
            let moved = store.reject(&bad.path, &bad.error)?;
            assert!(moved.is_file(), "{}", moved.display());
            let note = fs::read_to_string(error_file(&moved)).map_err(at(&moved))?;
            assert_eq!(note, format!("{}\n", bad.error));
        }
        assert_eq!(fs::read_dir(&queue).map_err(at(&queue))?.count(), 0);
        Ok(())
    }

    #[test]
    fn the_scan_sets_aside_what_is_not_a_plain_task_file() -> Result<(), StoreError> {
        let (dir, home, mut store) = store();
        let queue = home.state_dir(TaskState::Queued);
        let outside = dir.path().join("outside.md");
        fs::write(&outside, "# t\n").map_err(at(&outside))?;
        fs::hard_link(&outside, queue.join("hard.md")).map_err(at(&queue))?;
        std::os::unix::fs::symlink(&outside, queue.join("soft.md")).map_err(at(&queue))?;
        fs::create_dir(queue.join("folder.md")).map_err(at(&queue))?;
        let odd = queue.join(std::ffi::OsStr::from_bytes(b"caf\xe9.md"));
        fs::write(&odd, "# t\n").map_err(at(&odd))?;
        fs::write(queue.join("good.md"), "# t\n").map_err(at(&queue))?;
        // Not task files at all: left alone, as before.
        fs::write(queue.join(".draft.md"), "# t\n").map_err(at(&queue))?;
        fs::write(
            queue.join(std::ffi::OsStr::from_bytes(b"notes\xff.txt")),
            "x",
        )
        .map_err(at(&queue))?;

        let scan = store.scan(&config(), SystemTime::now() + config().settle)?;
        let ids: Vec<&str> = scan.queued.iter().map(|q| q.task.id.as_str()).collect();
        assert_eq!(ids, ["good"]);
        let mut invalid: Vec<String> = scan
            .invalid
            .iter()
            .map(|i| i.path.file_name().map(escaped_name).unwrap_or_default())
            .collect();
        invalid.sort();
        assert_eq!(invalid, ["caf%E9.md", "folder.md", "hard.md", "soft.md"]);
        for bad in &scan.invalid {
            let moved = store.reject(&bad.path, &bad.error)?;
            assert!(fs::symlink_metadata(&moved).is_ok(), "{}", moved.display());
        }
        let failed = home.state_dir(TaskState::Failed);
        let note = fs::read_to_string(failed.join("caf%E9.error.txt")).map_err(at(&failed))?;
        assert!(note.contains(r#""caf\xE9.md""#), "{note}");
        assert!(
            fs::symlink_metadata(failed.join("soft.md"))
                .map_err(at(&failed))?
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&outside).map_err(at(&outside))?, "# t\n");
        Ok(())
    }
}
