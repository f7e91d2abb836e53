//! Task files: writing them into the home's folders and reading what became of them.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::daemon::run_pids;
use super::{Env, STATES};

impl Env {
    // ----- task files -----

    /// Drops a task file into `queue/` the safe way: write elsewhere, then rename in.
    pub(crate) fn queue(&self, id: &str, task: &(impl TaskText + ?Sized)) {
        self.queue_bytes(id, task.task_text().as_bytes());
    }

    pub(crate) fn queue_bytes(&self, id: &str, bytes: &[u8]) {
        let staged = self.staging.join(format!("{id}.md"));
        fs::write(&staged, bytes).unwrap();
        fs::create_dir_all(self.home.join("queue")).unwrap();
        fs::rename(&staged, self.task_path("queue", id)).unwrap();
    }

    /// Makes every file in `queue/` look old. A daemon that starts while files are younger
    /// than `settle` may take them as still being written and pick them up one by one as
    /// each settles; tests about the order of a full queue need them all ready at once.
    pub(crate) fn backdate_queue(&self) {
        let past = std::time::SystemTime::now() - Duration::from_secs(60);
        for id in self.ids_in("queue") {
            let f = fs::File::options()
                .append(true)
                .open(self.task_path("queue", &id))
                .unwrap();
            f.set_modified(past).unwrap();
        }
    }

    /// Puts a file straight into a state folder (for set-ups the daemon would never make).
    pub(crate) fn put(&self, state: &str, id: &str, task: &(impl TaskText + ?Sized)) {
        fs::create_dir_all(self.home.join(state)).unwrap();
        fs::write(self.task_path(state, id), task.task_text()).unwrap();
    }

    /// Opens `queue/<id>.md` for writing by hand: the caller decides when it is complete.
    pub(crate) fn open_in_queue(&self, id: &str) -> fs::File {
        fs::create_dir_all(self.home.join("queue")).unwrap();
        fs::File::create(self.task_path("queue", id)).unwrap()
    }

    pub(crate) fn task_path(&self, state: &str, id: &str) -> PathBuf {
        self.home.join(state).join(format!("{id}.md"))
    }

    /// Which folder the task file is in, if any.
    pub(crate) fn state_of(&self, id: &str) -> Option<&'static str> {
        STATES.into_iter().find(|s| self.task_path(s, id).is_file())
    }

    /// Ids of the task files in a state folder, sorted.
    pub(crate) fn ids_in(&self, state: &str) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.home.join(state))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        if name.starts_with('.') {
                            return None;
                        }
                        name.strip_suffix(".md").map(String::from)
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The task file's text wherever it is.
    pub(crate) fn task_text(&self, id: &str) -> String {
        let state = self
            .state_of(id)
            .unwrap_or_else(|| panic!("task {id} is nowhere\n{}", self.diagnostics()));
        fs::read_to_string(self.task_path(state, id)).unwrap()
    }

    pub(crate) fn run_dir(&self, id: &str, attempt: u32) -> PathBuf {
        self.home.join("runs").join(id).join(attempt.to_string())
    }

    /// The worktree an attempt ran in, from its spawn record.
    pub(crate) fn worktree_of(&self, id: &str, attempt: u32) -> PathBuf {
        let path = self.run_dir(id, attempt).join("spawn.json");
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let spawn: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        PathBuf::from(spawn["worktree"]["path"].as_str().expect("a worktree"))
    }

    pub(crate) fn transcript(&self, id: &str, attempt: u32) -> String {
        let bytes = fs::read(self.run_dir(id, attempt).join("transcript.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether the transcript has a line that is exactly `line` (ignoring `\r` and blanks at
    /// the ends), so the echo of a prompt line `@say x` does not count as the output `x`.
    pub(crate) fn transcript_has_line(&self, id: &str, attempt: u32, line: &str) -> bool {
        has_line(&self.transcript(id, attempt), line)
    }

    /// The pids of an attempt's processes that were recorded: the pane's wrapper (from the
    /// `spawned` event) and the agent (from `started.json`).
    pub(crate) fn run_pids(&self, id: &str, attempt: u32) -> Vec<u32> {
        run_pids(&self.run_dir(id, attempt))
    }

    /// The attempt numbers that have a run folder.
    pub(crate) fn attempts(&self, id: &str) -> Vec<u32> {
        let mut found: Vec<u32> = fs::read_dir(self.home.join("runs").join(id))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        found.sort_unstable();
        found
    }

    /// Lines of a file in the temp dir (empty if it does not exist).
    pub(crate) fn lines_of(&self, rel: &str) -> Vec<String> {
        fs::read_to_string(self.path(rel))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

/// The number right after `after` in `line`, e.g. `12` after `kills:` in "kills: 12 (…)": for
/// tests that read a command's summary.
pub(crate) fn number_after(line: &str, after: &str) -> u64 {
    let rest = &line[line
        .find(after)
        .unwrap_or_else(|| panic!("no `{after}` in {line:?}"))
        + after.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{after}` in {line:?}"))
}

pub(crate) fn has_line(text: &str, line: &str) -> bool {
    text.split(['\n', '\r']).any(|l| l.trim() == line)
}

/// Every file under `dir` whose name starts with `prefix`.
pub(crate) fn find_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return found;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(p.clone());
        }
        if ft.is_dir() && !ft.is_symlink() {
            found.extend(find_named(&p, prefix));
        }
    }
    found
}

// ----- task files -----

/// A task file: optional front matter lines, then the body.
#[derive(Debug, Clone, Default)]
pub(crate) struct Task {
    front: Vec<String>,
    body: String,
}

impl Task {
    /// A task whose body is these lines (test-agent steps and plain text).
    pub(crate) fn script<'a>(lines: impl IntoIterator<Item = &'a str>) -> Task {
        let mut body = String::from("# test task\n\n");
        for l in lines {
            body.push_str(l);
            body.push('\n');
        }
        Task {
            front: Vec::new(),
            body,
        }
    }

    /// A task with exactly this body.
    pub(crate) fn body(body: &str) -> Task {
        Task {
            front: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a front-matter line, e.g. `.front("max_attempts: 2")`.
    pub(crate) fn front(mut self, line: &str) -> Task {
        self.front.push(line.into());
        self
    }

    pub(crate) fn text(&self) -> String {
        if self.front.is_empty() {
            return self.body.clone();
        }
        let mut s = String::from("---\n");
        for l in &self.front {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("---\n");
        s.push_str(&self.body);
        s
    }
}

/// What [`Env::queue`] accepts: raw text or a [`Task`].
pub(crate) trait TaskText {
    fn task_text(&self) -> String;
}

impl TaskText for str {
    fn task_text(&self) -> String {
        self.to_string()
    }
}

impl TaskText for String {
    fn task_text(&self) -> String {
        self.clone()
    }
}

impl TaskText for Task {
    fn task_text(&self) -> String {
        self.text()
    }
}
