//! Waiting for what the daemon does, and what to show when it does not happen.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{DEADLINE, Env, POLL, STATES};

impl Env {
    // ----- waiting -----

    /// Polls `cond` until it holds; after [`DEADLINE`] fails the test, saying what it was
    /// waiting for, with the daemon log and `ls`.
    pub(crate) fn wait_until(&mut self, what: &str, mut cond: impl FnMut(&mut Env) -> bool) {
        let start = Instant::now();
        loop {
            if cond(self) {
                return;
            }
            if start.elapsed() > DEADLINE {
                self.diagnosed = true;
                panic!(
                    "timed out after {DEADLINE:?} waiting until {what}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the task file is in `state` (`queue`, `running`, `done`, `failed`).
    pub(crate) fn wait_for_state(&mut self, id: &str, state: &str) {
        assert!(STATES.contains(&state), "unknown state {state}");
        self.wait_until(&format!("task {id} is in {state}/"), |env| {
            env.task_path(state, id).is_file()
        });
    }

    /// Waits until a finished task is in `done/` or `failed/` and returns which.
    pub(crate) fn wait_finished(&mut self, id: &str) -> &'static str {
        let mut found = None;
        self.wait_until(&format!("task {id} is in done/ or failed/"), |env| {
            found = ["done", "failed"]
                .into_iter()
                .find(|s| env.task_path(s, id).is_file());
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits until the agent of attempt `attempt` has started (its wrapper recorded it).
    pub(crate) fn wait_started(&mut self, id: &str, attempt: u32) {
        let f = self.run_dir(id, attempt).join("started.json");
        self.wait_until(&format!("attempt {attempt} of {id} has started"), |_| {
            f.is_file()
        });
    }

    /// The daemon log, `ls`, and the files: what a person needs when a test fails.
    pub(crate) fn diagnostics(&self) -> String {
        let ls = match self.cmd(&["ls"]).timeout(Duration::from_secs(10)).try_run() {
            Some(o) => format!("{}{}", o.stdout, o.stderr),
            None => "(ls did not finish)".into(),
        };
        let mut files = String::new();
        list_files(&self.home, &self.home, &mut files);
        format!(
            "--- nightshift ls ---\n{ls}\n--- files in the home ---\n{files}\n--- tmux sessions ---\n{:?}\n--- daemon log ---\n{}",
            self.sessions(),
            self.daemon_log()
        )
    }
}

fn list_files(base: &Path, dir: &Path, out: &mut String) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
        if p.is_dir() {
            out.push_str(&format!("{rel}/\n"));
            list_files(base, &p, out);
        } else {
            out.push_str(&format!("{rel}\n"));
        }
    }
}
