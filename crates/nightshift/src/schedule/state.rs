//! What the daemon remembers of each schedule, in `schedules/.state/<name>.json`: the last slot
//! it handled (written and synced before the slot's task is enqueued, so a slot is enqueued at
//! most once, ever), failures in a row, and a short history. A person pauses a schedule with
//! `schedules/.state/<name>.paused`, a file only the CLI and the failure rule write.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use nightshift_store::fsutil;

/// Kept history entries per schedule.
const HISTORY: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The time rule this cursor belongs to: a changed rule starts from now.
    pub rule_key: String,
    /// Every slot up to this one is handled (run or skipped).
    pub cursor: Timestamp,
    pub consecutive_failures: u32,
    /// The last slot that ran, its task, and how it ended (once it has).
    pub last_run: Option<LastRun>,
    pub history: VecDeque<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    pub slot: Timestamp,
    pub task_id: String,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub slot: Timestamp,
    /// `enqueued`, `skipped: expired`, `skipped: overlap`, `done`, `failed`, `paused`…
    pub what: String,
    pub at: Timestamp,
}

impl State {
    pub fn new(rule_key: &str, now: Timestamp) -> State {
        State {
            rule_key: rule_key.to_string(),
            cursor: now,
            consecutive_failures: 0,
            last_run: None,
            history: VecDeque::new(),
        }
    }

    pub fn note(&mut self, slot: Timestamp, what: impl Into<String>, at: Timestamp) {
        self.history.push_back(Entry {
            slot,
            what: what.into(),
            at,
        });
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }
}

/// Where a home keeps its schedules' state.
pub fn state_dir(schedules: &Path) -> PathBuf {
    schedules.join(".state")
}

pub fn load(schedules: &Path, name: &str) -> Option<State> {
    let bytes = std::fs::read(state_dir(schedules).join(format!("{name}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the state, synced: the cursor must survive a power cut before its task exists.
pub fn save(schedules: &Path, name: &str, state: &State) -> std::io::Result<()> {
    let dir = state_dir(schedules);
    fsutil::create_private_dir(&dir, 0o700)?;
    let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    fsutil::write_atomic(&dir.join(format!("{name}.json")), &json, 0o600)?;
    fsutil::sync_dir(&dir)
}

/// Why the schedule is paused, if it is.
pub fn paused(schedules: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(state_dir(schedules).join(format!("{name}.paused")))
        .ok()
        .map(|why| why.trim().to_string())
}

pub fn pause(schedules: &Path, name: &str, why: &str) -> std::io::Result<()> {
    let dir = state_dir(schedules);
    fsutil::create_private_dir(&dir, 0o700)?;
    fsutil::write_atomic(&dir.join(format!("{name}.paused")), why.as_bytes(), 0o600)
}

pub fn resume(schedules: &Path, name: &str) -> std::io::Result<bool> {
    match std::fs::remove_file(state_dir(schedules).join(format!("{name}.paused"))) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
