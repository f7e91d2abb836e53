//! Filing what the core decided: a finished task into done/failed with its report, a failed
//! attempt back into the queue, and the finished worktree's removal.

use jiff::Timestamp;

use super::attempt_report::{attempt_report, earlier_reports};
use super::{Daemon, Internal};
use crate::home::TaskState;
use crate::report::Report;
use crate::run::{self, RunDir, SpawnRecord};
use crate::tmux;
use nightshift_core::Event;
use nightshift_store::{Store, StoreError, within};

impl<S: Store> Daemon<S> {
    /// Builds the report in the background (git is slow), then files the task.
    pub(super) fn spawn_report(
        &mut self,
        id: String,
        attempt: u32,
        outcome: TaskState,
        reason: String,
        attempts: u32,
        summary: Option<String>,
    ) {
        let dir = RunDir::new(self.home.run_dir(&id, attempt));
        self.filing += 1;
        let tx = self.internal.clone();
        let home = self.home.clone();
        tokio::spawn(async move {
            // The checks passed (or there were none): the branch lands before the report is
            // made, so the report says how that went, and is the pull request's body.
            let pushed = crate::land::push_at_done(&dir, outcome == TaskState::Done).await;
            let mut report = attempt_report(
                &dir,
                &id,
                attempt,
                outcome.as_str(),
                reason,
                attempts,
                summary,
            )
            .await;
            if let Some(pushed) = pushed {
                let body = report.to_markdown(&earlier_reports(&home, &id, attempt));
                let path = std::env::var_os("PATH").unwrap_or_default();
                let find = |program: &str| super::find_program(program, &path);
                report.pr = crate::land::open_pr(&dir, pushed, body.trim_start(), find).await;
            }
            let _ = tx.send(Internal::Finished {
                id,
                from: TaskState::Running,
                to: outcome,
                report: Box::new(report),
            });
        });
    }

    pub(super) fn spawn_requeue(&mut self, id: String, attempt: u32, reason: String) {
        let dir = RunDir::new(self.home.run_dir(&id, attempt));
        self.filing += 1;
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let report = attempt_report(&dir, &id, attempt, "retry", reason, 0, None).await;
            let _ = tx.send(Internal::Requeued {
                id,
                report: Box::new(report),
            });
        });
    }

    pub(super) async fn file_finished(
        &mut self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &Report,
    ) {
        let dir = RunDir::new(self.home.run_dir(id, report.attempt));
        if let Err(e) = dir.write(run::REPORT, report) {
            tracing::warn!(task = id, "cannot save report.json: {e}");
        }
        let earlier = earlier_reports(&self.home, id, report.attempt);
        let md = report.to_markdown(&earlier);
        // Recorded before the filing, so a crash in between cannot forget it.
        let tidy_at = self.record_tidy(id, report.attempt, &dir, to);
        let filing = self.store.finish(id, from, to, &md);
        let filed = match within("finish", super::STORE_TIMEOUT, filing).await {
            Ok(dst) => {
                dir.log_event(Timestamp::now(), to.as_str(), &report.reason);
                let event = match to {
                    TaskState::Done => crate::notify::EventKind::Done,
                    _ => crate::notify::EventKind::Failed,
                };
                let (title, why) = nightshift_core::notice::finished_message(
                    id,
                    to,
                    &report.reason,
                    report.summary.as_deref(),
                );
                self.notify(event, id, title, why);
                if let Some((at, record)) = tidy_at {
                    self.tidy.add(at, record);
                }
                let state = to.as_str();
                tracing::info!(task = id, "{state}: {} ({dst})", report.reason);
                true
            }
            Err(StoreError::Superseded { .. }) => {
                // Another host took the task over: this attempt's result is not its to file,
                // now or later.
                tracing::error!(
                    task = id,
                    attempt = report.attempt,
                    "another host took this task over; this attempt's result ({}) is not filed",
                    to.as_str()
                );
                self.step(Event::TakenOver { id: id.to_string() }).await;
                false
            }
            Err(e) => {
                tracing::error!(
                    task = id,
                    "cannot file as {} (will try again): {e}",
                    to.as_str()
                );
                self.unfiled.push(Internal::Finished {
                    id: id.to_string(),
                    from,
                    to,
                    report: Box::new(report.clone()),
                });
                self.hold_if_disk_full(&e).await;
                false
            }
        };
        // A session in its grace period is still followed: its exit frees the slot.
        if !self.state.owns_session(&tmux::session_name(id)) {
            self.unwatch_run(id, report.attempt);
        }
        if filed {
            self.schedule_run_finished(id, to);
            // Tasks waiting on this one may start (or fail) now.
            self.step(Event::Filed {
                id: id.to_string(),
                state: to,
            })
            .await;
        }
    }

    /// Records that a finished task's worktree is to be removed, unless it is to be kept (its
    /// branch always stays), and returns when: after the grace period, when its agent has
    /// left, and where the record is. A worktree that is not clean stays even then.
    fn record_tidy(
        &self,
        id: &str,
        attempt: u32,
        dir: &RunDir,
        outcome: TaskState,
    ) -> Option<(Timestamp, std::path::PathBuf)> {
        let keep = self.config.keep_worktrees.keeps(outcome);
        let wt = dir
            .read::<SpawnRecord>(run::SPAWN)
            .ok()
            .flatten()
            .and_then(|s| s.worktree)?;
        // A failed push leaves the work only in the worktree.
        if keep || crate::repo_remote::push_failed(dir) {
            return None;
        }
        let due_at = nightshift_core::tidy::removal_due(Timestamp::now(), self.config.grace_period);
        let record = super::tidy::TidyRecord {
            task_id: id.to_string(),
            worktree: wt.path,
            branch: wt.branch,
            due_at,
            run_dir: Some(dir.path().to_path_buf()),
            trash: None,
        };
        match super::tidy::enqueue(&self.home, attempt, &record) {
            Ok(path) => Some((due_at, path)),
            Err(e) => {
                tracing::warn!(task = id, "cannot record the worktree's removal: {e}");
                None
            }
        }
    }

    pub(super) async fn file_requeued(&mut self, id: &str, report: &Report) {
        let dir = RunDir::new(self.home.run_dir(id, report.attempt));
        if let Err(e) = dir.write(run::REPORT, report) {
            tracing::warn!(task = id, "cannot save report.json: {e}");
        }
        dir.log_event(Timestamp::now(), "retry", &report.reason);
        match within("requeue", super::STORE_TIMEOUT, self.store.requeue(id)).await {
            Ok(()) => {}
            Err(StoreError::Superseded { .. }) => {
                tracing::error!(
                    task = id,
                    "another host took this task over; it is not put back in the queue from here"
                );
                self.step(Event::TakenOver { id: id.to_string() }).await;
            }
            Err(e) => {
                tracing::error!(
                    task = id,
                    "cannot put back in the queue (will try again): {e}"
                );
                self.unfiled.push(Internal::Requeued {
                    id: id.to_string(),
                    report: Box::new(report.clone()),
                });
                self.hold_if_disk_full(&e).await;
            }
        }
        self.unwatch_run(id, report.attempt);
        // Scan now, so the task counts as queued before anything else looks.
        self.scan().await;
    }
}
