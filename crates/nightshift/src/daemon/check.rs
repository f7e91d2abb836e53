//! The acceptance-check job: uncommitted work, the checks, and the round's record.

use std::path::PathBuf;

use jiff::Timestamp;

use crate::checks::VerifyRound;
use crate::config;
use crate::git;
use crate::run::{self, RunDir, SpawnRecord};
use nightshift_core::Event;

/// Text safe to paste into an agent's terminal: no escape sequences or control characters
/// (an ESC would act as a key press), only newlines and tabs.
fn typeable(text: &str) -> String {
    nightshift_core::completion::strip_ansi(text)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// A failed command in one line: what ran, how it ended, and its last words.
pub(super) fn failure_line(r: &crate::checks::CommandResult) -> String {
    let last = r
        .output_tail
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    format!("`{}` {}{last}", r.command, r.describe())
}

/// What a check job needs, taken from the daemon's state.
pub(super) struct CheckJob {
    pub id: String,
    /// The nightshift binary, which ties the checks to the daemon's life.
    pub exe: PathBuf,
    pub attempt: u32,
    pub round: u32,
    pub rounds: u32,
    pub dir: RunDir,
    pub commands: Vec<String>,
    pub timeout: std::time::Duration,
    pub uncommitted: config::Uncommitted,
    /// The task's `repo:`, whose branch is pushed after the round.
    pub remote: Option<String>,
}

impl CheckJob {
    /// Deals with uncommitted work, runs the checks, records the round, and says how it went.
    pub(super) async fn run(self) -> Event {
        let spawn: Option<SpawnRecord> = self.dir.read(run::SPAWN).ok().flatten();
        let workdir = spawn.as_ref().map(|s| s.workdir.clone());
        let mut uncommitted = None;
        let in_worktree = spawn.as_ref().is_some_and(|s| s.worktree.is_some());
        if let Some(workdir) = &workdir
            && git::in_work_tree(workdir)
            && crate::worktree::is_dirty(workdir).await.unwrap_or(false)
        {
            uncommitted = Some(match self.uncommitted {
                // Only on the task's own branch: in place, the checkout is the user's.
                config::Uncommitted::Commit if in_worktree => {
                    let message = format!(
                        "nightshift: work in progress left uncommitted by {} (attempt {})",
                        self.id, self.attempt
                    );
                    match crate::worktree::commit_all_as(workdir, &message, Some(&self.id)).await {
                        Ok(Some(hash)) => format!(
                            "committed as work in progress: {}",
                            hash.get(..10).unwrap_or(&hash)
                        ),
                        Ok(None) => "nothing to commit after all".to_string(),
                        Err(e) => format!("left uncommitted (cannot commit: {e})"),
                    }
                }
                _ => format!("left uncommitted in {}", workdir.display()),
            });
        }
        let results = match (&workdir, self.commands.is_empty()) {
            (_, true) => Vec::new(),
            (Some(w), false) => {
                let env = vec![
                    ("NIGHTSHIFT_TASK_ID".to_string(), self.id.clone()),
                    ("NIGHTSHIFT_ATTEMPT".to_string(), self.attempt.to_string()),
                ];
                let tie = crate::checks::Tie {
                    record: &self.dir.file(run::CHECK_GROUP),
                    guard: Some(&self.exe),
                };
                crate::checks::run_commands_recorded(
                    &self.commands,
                    w,
                    self.timeout,
                    &env,
                    Some(tie),
                )
                .await
            }
            (None, false) => Vec::new(),
        };
        let passed = nightshift_core::checks::round_passed(
            workdir.is_some(),
            !self.commands.is_empty(),
            results.iter().all(crate::checks::CommandResult::passed),
        );
        let record = VerifyRound {
            round: self.round,
            passed,
            results: results.clone(),
            uncommitted: uncommitted.clone(),
            at: Timestamp::now(),
        };
        if !self.commands.is_empty() || uncommitted.is_some() {
            if let Err(e) = self.dir.write(&run::verify_file(self.round), &record) {
                tracing::warn!(task = self.id, "cannot save the check results: {e}");
            }
            let what = if passed { "passed" } else { "failed" };
            self.dir.log_event(
                Timestamp::now(),
                "verify",
                &format!("round {}: {what}", self.round),
            );
        }
        if let (Some(url), Some(wt)) = (
            &self.remote,
            spawn.as_ref().and_then(|s| s.worktree.as_ref()),
        ) {
            crate::repo_remote::push_round(&self.dir, wt, url, self.round).await;
        }
        let failed = results.iter().find(|r| !r.passed());
        let summary = match failed {
            Some(r) => failure_line(r),
            None if workdir.is_none() => "the run's spawn record is missing".to_string(),
            None => String::new(),
        };
        let feedback = match failed {
            Some(r) => typeable(&format!(
                "nightshift: the acceptance check failed (check {} of at most {}).\n$ {}\n{}\n{}\nFix it, commit, and signal done again (`nightshift done`).",
                self.round,
                self.rounds + 1,
                r.command,
                r.output_tail.trim_end(),
                r.describe()
            )),
            None => String::new(),
        };
        Event::Checked {
            id: self.id,
            attempt: self.attempt,
            passed,
            summary,
            feedback,
        }
    }
}
