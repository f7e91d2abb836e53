//! Where the folder store keeps things in a home. Only this module names the task folders.

use std::path::{Path, PathBuf};

use nightshift_core::records::TaskState;

/// The folder that holds a task file in each state.
pub fn dir_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "queue",
        TaskState::Running => "running",
        TaskState::Done => "done",
        TaskState::Failed => "failed",
    }
}

/// The folder store's paths under a home.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn state_dir(&self, state: TaskState) -> PathBuf {
        self.root.join(dir_name(state))
    }
    pub fn task_file(&self, state: TaskState, id: &str) -> PathBuf {
        self.state_dir(state).join(format!("{id}.md"))
    }
    /// Every task's attempts: `runs/<task>/<attempt>/`.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn task_runs(&self, id: &str) -> PathBuf {
        self.runs_dir().join(id)
    }
    pub fn run_dir(&self, id: &str, attempt: u32) -> PathBuf {
        self.task_runs(id).join(attempt.to_string())
    }
    /// Who holds the claim on a running task: next to its file, hidden from listings.
    pub fn claim_file(&self, id: &str) -> PathBuf {
        self.state_dir(TaskState::Running)
            .join(format!(".{id}.claim.json"))
    }
    /// Present while the queue is paused; it holds when it was paused.
    pub fn paused_file(&self) -> PathBuf {
        self.root.join("paused")
    }
    /// The schedule slots handled: one empty file per slot, created exclusively.
    pub fn slots_dir(&self, schedule: &str) -> PathBuf {
        self.root.join("schedules").join(".slots").join(schedule)
    }
    /// Staging for new tasks, on the queue's filesystem, so a rename is atomic.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// The folders the store needs.
    pub fn folders(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = TaskState::ALL.iter().map(|s| self.state_dir(*s)).collect();
        all.push(self.runs_dir());
        all
    }
}
