//! Removing a finished task's worktree: whether it is kept, when it goes, and what to do
//! once that time comes. The branch always stays.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::records::TaskState;

/// `keep_worktrees` in config.toml: which finished tasks keep their worktree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepWorktrees {
    Always,
    Failure,
    Never,
}

impl KeepWorktrees {
    /// Whether a task that finished with `outcome` keeps its worktree.
    pub fn keeps(self, outcome: TaskState) -> bool {
        match self {
            KeepWorktrees::Always => true,
            KeepWorktrees::Failure => outcome != TaskState::Done,
            KeepWorktrees::Never => false,
        }
    }
}

/// What the pane wrapper gives an agent after a hangup (5 s), with a margin.
const AFTER_HANGUP: Duration = Duration::from_secs(8);

/// When a finished task's worktree is removed: once its agent has left, after the grace
/// period and the wrapper's time after a hangup.
pub fn removal_due(finished_at: Timestamp, grace_period: Duration) -> Timestamp {
    let wait = jiff::SignedDuration::try_from(grace_period + AFTER_HANGUP).unwrap_or_default();
    finished_at.checked_add(wait).unwrap_or(finished_at)
}

/// What to do with a recorded removal when it is due, by where the task is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Still in `running/` (its filing failed): the record stays for the next try.
    Wait,
    /// Queued again: its worktree is back in use and stays; the record is dropped.
    Drop,
    /// Finished (or gone): remove the worktree (a dirty one stays), then the record.
    Remove,
}

/// The removal's fate, given the task's state now (`None`: the task file is gone).
pub fn removal(state: Option<TaskState>) -> Removal {
    match state {
        Some(TaskState::Running) => Removal::Wait,
        Some(TaskState::Queued) => Removal::Drop,
        Some(TaskState::Done) | Some(TaskState::Failed) | None => Removal::Remove,
    }
}

/// How far a queued removal got, from what is on disk: its record names the trash folder
/// before the worktree is moved there, so a restart can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Not moved yet: check the task and the worktree, then move it.
    NotMoved,
    /// Out of git's list and in the trash (or gone): only its files are left to delete. A
    /// worktree at the old place again is a new one, of a task started since: not touched.
    Moved,
}

/// `trash_noted`: the record names a trash folder; `worktree_there`, `trash_there`: whether
/// the worktree's folder and that trash folder exist.
pub fn progress(trash_noted: bool, worktree_there: bool, trash_there: bool) -> Progress {
    if trash_noted && (trash_there || !worktree_there) {
        Progress::Moved
    } else {
        Progress::NotMoved
    }
}

/// Removals waiting for their time, by record.
#[derive(Debug, Default)]
pub struct Pending {
    due: Vec<(Timestamp, PathBuf)>,
}

impl Pending {
    /// Adds a removal; one already waiting for the same record is replaced.
    pub fn add(&mut self, at: Timestamp, dir: PathBuf) {
        self.due.retain(|(_, d)| *d != dir);
        self.due.push((at, dir));
    }

    /// When the next removal is due.
    pub fn next_at(&self) -> Option<Timestamp> {
        self.due.iter().map(|(at, _)| *at).min()
    }

    /// The records whose removal is due at `now`, taken out.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<PathBuf> {
        let (due, later) = std::mem::take(&mut self.due)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.due = later;
        due.into_iter().map(|(_, dir)| dir).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keep_rule_by_outcome() {
        assert!(KeepWorktrees::Always.keeps(TaskState::Done));
        assert!(KeepWorktrees::Always.keeps(TaskState::Failed));
        assert!(!KeepWorktrees::Failure.keeps(TaskState::Done));
        assert!(KeepWorktrees::Failure.keeps(TaskState::Failed));
        assert!(!KeepWorktrees::Never.keeps(TaskState::Failed));
    }

    #[test]
    fn removal_waits_for_the_grace_period_and_the_hangup_margin() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let due = removal_due(t0, Duration::from_secs(10));
        assert_eq!(due.duration_since(t0).as_secs(), 18);
    }

    #[test]
    fn a_due_removal_waits_for_a_running_task_and_is_dropped_for_a_queued_one() {
        assert_eq!(removal(Some(TaskState::Running)), Removal::Wait);
        assert_eq!(removal(Some(TaskState::Queued)), Removal::Drop);
        assert_eq!(removal(Some(TaskState::Done)), Removal::Remove);
        assert_eq!(removal(Some(TaskState::Failed)), Removal::Remove);
        assert_eq!(removal(None), Removal::Remove);
    }

    #[test]
    fn a_removal_interrupted_after_the_move_only_deletes_the_trash() {
        // Never started, or killed before the rename: check and move.
        assert_eq!(progress(false, true, false), Progress::NotMoved);
        assert_eq!(progress(true, true, false), Progress::NotMoved);
        // Killed after the rename, or mid-deletion.
        assert_eq!(progress(true, false, true), Progress::Moved);
        // Deleted, killed before the record went.
        assert_eq!(progress(true, false, false), Progress::Moved);
        // Moved, then the task was started again: its new worktree is not touched.
        assert_eq!(progress(true, true, true), Progress::Moved);
        // No trash noted and no worktree: nothing moved, git's record may remain.
        assert_eq!(progress(false, false, false), Progress::NotMoved);
    }

    #[test]
    fn due_removals_come_out_in_time_and_once() {
        let t0 = Timestamp::UNIX_EPOCH;
        let secs = |s| t0 + jiff::SignedDuration::from_secs(s);
        let mut p = Pending::default();
        assert_eq!(p.next_at(), None);
        p.add(secs(10), "a".into());
        p.add(secs(5), "b".into());
        p.add(secs(20), "a".into());
        assert_eq!(p.next_at(), Some(secs(5)));
        assert_eq!(p.take_due(secs(9)), vec![PathBuf::from("b")]);
        assert!(p.take_due(secs(19)).is_empty());
        assert_eq!(p.take_due(secs(20)), vec![PathBuf::from("a")]);
        assert_eq!(p.next_at(), None);
    }
}
