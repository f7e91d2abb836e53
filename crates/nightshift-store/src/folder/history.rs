//! A task's attempts, read from its runs folder: how many there were, how many count
//! against `max_attempts`, and which resumed an earlier agent session.

use std::fs;
use std::path::Path;

/// In a task's runs folder: the next attempt resumes the agent's session.
pub const RESUME_NEXT: &str = "resume-next.json";
/// In a run folder: this attempt resumed an earlier one's session (it does not count
/// against `max_attempts`).
pub const RESUMED: &str = "resumed.json";
/// The file in a task's runs folder that records where its attempt budget starts: `retry`
/// gives a task a fresh budget without renumbering old attempts.
pub const BUDGET_FROM: &str = "budget-from";

/// The attempt numbers that have a run folder, in order.
pub fn attempts(task_runs: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = fs::read_dir(task_runs)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    found
}

/// How many of a task's attempts were resumes.
pub fn resumes(task_runs: &Path) -> u32 {
    attempts(task_runs)
        .iter()
        .filter(|a| task_runs.join(a.to_string()).join(RESUMED).exists())
        .count() as u32
}

/// `(attempts so far, attempts counted against max_attempts)` for a task.
pub fn attempt_counts(task_runs: &Path) -> (u32, u32) {
    let all = attempts(task_runs);
    let last = all.last().copied().unwrap_or(0);
    let from: u32 = fs::read_to_string(task_runs.join(BUDGET_FROM))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1);
    let counted = all
        .iter()
        .filter(|&&a| a >= from && !task_runs.join(a.to_string()).join(RESUMED).exists())
        .count() as u32;
    (last, counted)
}
