//! Start-up recovery and the periodic reconciliation with tmux.
//!
//! Recovery is not a special mode: it reads the same records the running daemon reacts to
//! and feeds the same events, so the path that survives a `kill -9` is exercised on every
//! start.

use std::collections::BTreeSet;

use super::Daemon;
use crate::home::TaskState;
use crate::queue::Store;
use crate::report::Report;
use crate::run::{self, RunDir, SpawnRecord};
use crate::tmux::{SessionInfo, Tmux};
use nightshift_core::task;
use nightshift_core::{Event, Recovered};

/// What the records and tmux say about a task's latest attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Claimed, but no attempt was started: start attempt `n`.
    NotStarted { attempt: u32, new_attempt: bool },
    /// Attempt `n` was started.
    Started { attempt: u32 },
}

/// Decides how to pick up a task found in `running/`.
pub fn classify(
    last_attempt: u32,
    has_report: bool,
    has_trace: bool,
    session_exists: bool,
) -> Found {
    if last_attempt == 0 || has_report {
        // No attempt yet, or the last one was already filed (crash after a requeue claim).
        Found::NotStarted {
            attempt: last_attempt + 1,
            new_attempt: true,
        }
    } else if has_trace || session_exists {
        Found::Started {
            attempt: last_attempt,
        }
    } else {
        // The folder was prepared but the agent never started: the same attempt, not a new one.
        Found::NotStarted {
            attempt: last_attempt,
            new_attempt: false,
        }
    }
}

impl Daemon {
    /// This home's sessions on nightshift's tmux server, or `None` when tmux could not say:
    /// then no decision may assume a session is gone. Another home's sessions on the same
    /// server are not listed; untagged ones (made before homes were recorded) are, so their
    /// tasks can be re-adopted, but they are never closed as orphans.
    async fn sessions(&self) -> Option<Vec<SessionInfo>> {
        match self.tmux.list_sessions().await {
            Ok(mut s) => {
                s.retain(|s| !s.is_foreign(&self.home_id));
                Some(s)
            }
            Err(e) => {
                tracing::warn!("cannot list tmux sessions, so no session counts as gone: {e}");
                None
            }
        }
    }

    /// Agents started before homes had their own tmux server run on the old shared one: while
    /// any of this home's running tasks has its session there, the daemon stays on that
    /// server, so they are re-adopted instead of judged gone and run a second time.
    pub(super) async fn stay_on_legacy_server(&mut self) {
        if self.config.tmux_socket != crate::tmux::default_socket(self.home.root()) {
            return;
        }
        let legacy = Tmux::new(crate::tmux::LEGACY_SOCKET);
        let Ok(sessions) = legacy.list_sessions().await else {
            return;
        };
        let root = self.home.root().to_string_lossy().into_owned();
        for s in sessions
            .iter()
            .filter(|s| s.home.is_empty() && !s.task_id.is_empty())
        {
            if !self
                .home
                .task_file(TaskState::Running, &s.task_id)
                .is_file()
            {
                continue;
            }
            if legacy
                .session_env(&s.name, "NIGHTSHIFT_HOME")
                .await
                .as_deref()
                == Some(&root)
            {
                tracing::warn!(
                    "agents started before the upgrade run on `{}`: staying on it until they are done (restart the daemon afterwards to move to `{}`)",
                    legacy.display_prefix(),
                    self.tmux.display_prefix()
                );
                self.tmux = legacy;
                return;
            }
        }
    }

    /// Re-adopts every task in `running/`, then closes sessions nobody owns.
    pub(super) async fn recover(&mut self) {
        let sessions = self.sessions().await;
        let running = match self.store.list(TaskState::Running) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot list running tasks: {e}");
                Vec::new()
            }
        };
        for (id, path) in running {
            let task = match std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|text| task::parse(&id, &path, &text).map_err(|e| e.to_string()))
            {
                Ok(t) => t,
                Err(error) => {
                    self.reject(&path, &error);
                    continue;
                }
            };
            let runs_dir = self.home.task_runs(&id);
            let (last, counted) = run::attempt_counts(&runs_dir);
            let dir = RunDir::new(self.home.run_dir(&id, last));
            // A setup or check the dead daemon ran must be gone before anything runs again
            // in the same worktree.
            let killed = crate::checks::kill_recorded(&dir.file(run::CHECK_GROUP)).await;
            if killed > 0 {
                tracing::info!(task = id, "killed a check left running by the last daemon");
            }
            // The attempt was decided but the file not moved (killed in between, or the move
            // failed): file it now, as decided. A retry goes on below as a new attempt.
            if last > 0
                && let Ok(Some(report)) = dir.read::<Report>(run::REPORT)
            {
                let state = match report.outcome.as_str() {
                    "done" => Some(TaskState::Done),
                    "failed" => Some(TaskState::Failed),
                    _ => None,
                };
                if let Some(state) = state {
                    tracing::info!(task = id, "filing a task that finished before the restart");
                    self.file_finished(&id, TaskState::Running, state, &report);
                    continue;
                }
            }
            let session = sessions
                .as_deref()
                .and_then(|all| all.iter().find(|s| s.task_id == id));
            let found = classify(
                last,
                last > 0 && dir.exists(run::REPORT),
                [run::STARTED, run::EXIT, run::DONE]
                    .iter()
                    .any(|f| dir.exists(f)),
                // Unknown counts as existing: better to adopt than to start a second agent.
                session.is_some() || sessions.is_none(),
            );
            match found {
                Found::NotStarted {
                    attempt,
                    new_attempt,
                } => {
                    tracing::info!(
                        task = id,
                        attempt,
                        "recovering a claimed task that never started"
                    );
                    let (resumes, lock) = (resumes_of(&self.home, &id), self.lock_of(&task));
                    self.step(Event::Recovered {
                        task,
                        attempt,
                        counted_attempts: counted + u32::from(new_attempt),
                        started_at: self.now(),
                        how: Recovered::NotStarted,
                        resumes,
                        failed_rounds: 0,
                        lock,
                    });
                }
                Found::Started { attempt } => {
                    // On the boot clock when the record has it (same boot): a wall-clock
                    // step since the start does not shorten or stretch its timeout.
                    let spawn = dir.read::<SpawnRecord>(run::SPAWN).ok().flatten();
                    let started_at = match &spawn {
                        Some(s) => self.clock.start_of(
                            crate::clock::read(),
                            s.claimed_at,
                            crate::clock::boot_of(s.boot.as_ref()),
                        ),
                        None => self.now(),
                    };
                    tracing::info!(task = id, attempt, alive = session.is_some(), "re-adopting");
                    let (resumes, lock) = (resumes_of(&self.home, &id), self.lock_of(&task));
                    // Checks that failed before the restart still count.
                    let failed_rounds = (1..)
                        .map_while(|n| {
                            dir.read::<crate::checks::VerifyRound>(&run::verify_file(n))
                                .ok()
                                .flatten()
                        })
                        .filter(|round| !round.passed)
                        .count() as u32;
                    self.step(Event::Recovered {
                        task,
                        attempt,
                        counted_attempts: counted,
                        started_at,
                        how: Recovered::Started,
                        resumes,
                        failed_rounds,
                        lock,
                    });
                    self.watch_run(&id, attempt);
                    self.watch_reflog(&id, attempt);
                    // Attention starts afresh with the new daemon: old flags would be stale.
                    if dir.exists(run::ATTENTION)
                        && let Err(e) = dir.write(run::ATTENTION, &run::AttentionRecord::default())
                    {
                        tracing::warn!(task = id, "cannot reset attention.json: {e}");
                    }
                    if dir.exists(run::CANCEL) {
                        // Cancelled just before the restart: that decision stands.
                        self.step(Event::Cancel { id: id.clone() });
                        continue;
                    }
                    self.catch_up(&id, attempt, sessions.as_deref());
                    if let Some(spawn) = &spawn
                        && session.is_some_and(|s| !s.pane_dead)
                    {
                        self.type_prompt_after_restart(&id, attempt, spawn);
                    }
                }
            }
        }
        if let Some(sessions) = &sessions {
            self.close_orphans(sessions).await;
        }
    }

    /// Sets an invalid queue entry aside. The log line names it with its line breaks
    /// escaped: a file name is not allowed to forge log lines.
    pub(super) fn reject(&mut self, path: &std::path::Path, error: &str) {
        let shown = |s: &str| s.replace('\n', "\\n").replace('\r', "\\r");
        match self.store.reject(path, error) {
            Ok(dst) => tracing::warn!(
                "{} (moved to {})",
                shown(error),
                shown(&dst.to_string_lossy())
            ),
            Err(e) => tracing::error!(
                "cannot move invalid {} aside: {}",
                shown(&path.to_string_lossy()),
                shown(&e.to_string())
            ),
        }
    }

    /// Feeds what happened to an adopted run while nobody watched: output (the marker may
    /// be in it), done, exit, or a vanished session.
    ///
    /// `sessions` is `None` when tmux could not list them: then nothing counts as gone.
    fn catch_up(&mut self, id: &str, attempt: u32, sessions: Option<&[SessionInfo]>) {
        let session = sessions.and_then(|all| all.iter().find(|s| s.task_id == id));
        let known = sessions.is_some();
        let pane_alive = session.is_some_and(|s| !s.pane_dead) || !known;
        let session_exists = session.is_some() || !known;
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        self.read_output(id, attempt, !pane_alive);
        // The hooks may name the agent's session, which a vanished one can be resumed from.
        self.read_hooks(id, attempt);
        if self.state.run(id).is_none_or(|r| r.attempt != attempt) {
            return;
        }
        if dir.exists(run::DONE) {
            self.read_done(dir.path(), id, attempt);
        } else if dir.exists(run::EXIT) {
            self.read_exit(dir.path(), id, attempt);
        } else if !session_exists {
            self.step(Event::SessionGone {
                id: id.to_string(),
                attempt,
            });
        } else if !pane_alive {
            // The wrapper itself died without recording the exit.
            self.step(Event::Exited {
                id: id.to_string(),
                attempt,
                how: "the agent's pane died".into(),
                // Its wrapper was killed too: not the agent's own doing.
                hangup: true,
            });
        }
    }

    /// The safety net: records or sessions whose file events were missed.
    pub(super) async fn reconcile(&mut self) {
        let sessions = self.sessions().await;
        let runs: Vec<(String, u32, bool)> = self
            .state
            .running()
            .map(|r| {
                (
                    r.task.id.clone(),
                    r.attempt,
                    r.phase == nightshift_core::Phase::Starting,
                )
            })
            .collect();
        for (id, attempt, starting) in runs {
            if starting {
                continue;
            }
            self.catch_up(&id, attempt, sessions.as_deref());
        }
        if let Some(sessions) = &sessions {
            self.close_orphans(sessions).await;
        }
        self.check_disk_space();
        // Filings that failed (a full disk, say) are tried again.
        for msg in std::mem::take(&mut self.unfiled) {
            self.on_internal(msg);
        }
    }

    /// Kills nightshift sessions whose task is no longer running (finished while the daemon
    /// was down, or past its grace period).
    async fn close_orphans(&mut self, sessions: &[SessionInfo]) {
        let running: BTreeSet<&str> = self.state.running().map(|r| r.task.id.as_str()).collect();
        for s in sessions {
            if s.task_id.is_empty()
                || s.home.is_empty()
                || running.contains(s.task_id.as_str())
                || self.state.owns_session(&s.name)
            {
                continue;
            }
            tracing::info!(
                session = s.name,
                task = s.task_id,
                "closing a session whose task is no longer running"
            );
            if let Err(e) = self.tmux.kill_session(&s.name).await {
                tracing::warn!(session = s.name, "cannot close: {e}");
            }
        }
    }
}

impl Daemon {
    fn lock_of(&self, task: &nightshift_core::task::Task) -> Option<String> {
        crate::queue::checkout_lock(task, &self.config)
    }
}

fn resumes_of(home: &crate::home::Home, id: &str) -> u32 {
    run::resumes(&home.task_runs(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_covers_each_crash_point() {
        // Killed between claim and creating the run folder.
        assert_eq!(
            classify(0, false, false, false),
            Found::NotStarted {
                attempt: 1,
                new_attempt: true
            }
        );
        // Killed after preparing the folder, before tmux started the agent.
        assert_eq!(
            classify(1, false, false, false),
            Found::NotStarted {
                attempt: 1,
                new_attempt: false
            }
        );
        // The session exists but the wrapper has not written anything yet.
        assert_eq!(
            classify(1, false, false, true),
            Found::Started { attempt: 1 }
        );
        // The agent ran; its session may be gone.
        assert_eq!(
            classify(2, false, true, false),
            Found::Started { attempt: 2 }
        );
        // Attempt 1 was filed for a retry and the retry was claimed but not started.
        assert_eq!(
            classify(1, true, true, false),
            Found::NotStarted {
                attempt: 2,
                new_attempt: true
            }
        );
    }
}
