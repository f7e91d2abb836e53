//! Start-up recovery and the periodic reconciliation with tmux.
//!
//! Recovery is not a special mode: it reads the same records the running daemon reacts to
//! and feeds the same events, so the path that survives a `kill -9` is exercised on every
//! start.

use super::Daemon;
use crate::home::TaskState;
use jiff::Timestamp;
use nightshift_store::{Claim, Store, within};

use super::STORE_TIMEOUT;
use crate::report::Report;
use crate::run::{self, RunDir, SpawnRecord};
use crate::tmux::{SessionInfo, Tmux};
use nightshift_core::recovery::{CatchUp, Found, catch_up, classify, finished_outcome};
use nightshift_core::task;
use nightshift_core::{Event, Recovered};

impl<S: Store> Daemon<S> {
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
            let state = within("locate", STORE_TIMEOUT, self.store.locate(&s.task_id)).await;
            if !matches!(state, Ok(Some(TaskState::Running))) {
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

    /// Re-adopts the running tasks this daemon owns (its own earlier claims, or lapsed
    /// ones: [`nightshift_core::records::adopts`]), then closes sessions nobody owns.
    pub(super) async fn recover(&mut self) {
        let sessions = self.sessions().await;
        let running = match within("list", STORE_TIMEOUT, self.store.list(TaskState::Running)).await
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!("cannot list running tasks: {e}");
                None
            }
        };
        // Unknown running tasks: their sessions are not orphans, whatever State says.
        let listed = running.is_some();
        let running = running.unwrap_or_default();
        for id in running {
            if !self.take_claim(&id).await {
                continue;
            }
            let filed = match within("entry", STORE_TIMEOUT, self.store.entry(&id)).await {
                Ok(Some(filed)) if filed.state == TaskState::Running => filed,
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(task = id, "cannot read a running task: {e}");
                    continue;
                }
            };
            let path = filed.source;
            let task = match filed
                .content
                .and_then(|b| {
                    String::from_utf8(b)
                        .map_err(|_| format!("{}: the file is not valid UTF-8", path.display()))
                })
                .and_then(|text| {
                    task::parse(&id, &path, &text, crate::home::user_home().as_deref())
                        .map_err(|e| e.to_string())
                }) {
                Ok(t) => t,
                Err(error) => {
                    self.reject(&path, &error).await;
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
                && let Some(state) = finished_outcome(&report.outcome)
            {
                tracing::info!(task = id, "filing a task that finished before the restart");
                self.file_finished(&id, TaskState::Running, state, &report)
                    .await;
                continue;
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
                    })
                    .await;
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
                    })
                    .await;
                    self.watch_run(&id, attempt);
                    self.watch_reflog(&id, attempt).await;
                    // Attention starts afresh with the new daemon: old flags would be stale.
                    if dir.exists(run::ATTENTION)
                        && let Err(e) = dir.write(run::ATTENTION, &run::AttentionRecord::default())
                    {
                        tracing::warn!(task = id, "cannot reset attention.json: {e}");
                    }
                    if let Ok(Some(l)) = dir.read::<run::LimitedRecord>(run::LIMITED) {
                        let limited = nightshift_core::state::Limited {
                            since: l.since,
                            until: l.until,
                            evidence: l.evidence,
                        };
                        self.state.restore_limited(&id, limited);
                    }
                    if dir.exists(run::CANCEL) {
                        // Cancelled just before the restart: that decision stands.
                        self.step(Event::Cancel { id: id.clone() }).await;
                        continue;
                    }
                    self.catch_up(&id, attempt, sessions.as_deref()).await;
                    if let Some(spawn) = &spawn
                        && session.is_some_and(|s| !s.pane_dead)
                    {
                        self.type_prompt_after_restart(&id, attempt, spawn);
                    }
                }
            }
        }
        if let Some(sessions) = sessions.as_ref().filter(|_| listed) {
            self.close_orphans(sessions).await;
        }
        // After the runs, so a hold that came due meanwhile lifts for its limited runs too.
        match crate::limited::load_holds(&self.home) {
            Ok(holds) => self.state.restore_holds(holds),
            Err(e) => tracing::warn!("the holds for usage limits are lost: {e}"),
        }
    }

    /// Takes over the claim on a running task if this daemon adopts it: its own earlier
    /// claim, or one whose lease lapsed. Whether it does is the core's rule.
    async fn take_claim(&mut self, id: &str) -> bool {
        let shared = self.store.shared();
        let held = match within("claim_of", STORE_TIMEOUT, self.store.claim_of(id)).await {
            Ok(held) => held,
            Err(e) => {
                // Unknown: a store only this daemon claims from has no one else to ask.
                tracing::error!(task = id, "cannot read the claim: {e}");
                return !shared;
            }
        };
        if !nightshift_core::records::adopts(held.as_ref(), &self.owner, shared) {
            if let Some(held) = &held {
                tracing::info!(
                    task = id,
                    "running on {} ({}); not adopted",
                    held.owner.host,
                    held.owner.instance
                );
            }
            return false;
        }
        let mine = self.lease();
        match within(
            "take_over",
            STORE_TIMEOUT,
            self.store.take_over(id, held.as_ref(), &mine),
        )
        .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::info!(
                    task = id,
                    "its claim changed while being adopted; not adopted"
                );
                false
            }
            Err(e) if self.store.shared() => {
                // Without the claim, this daemon's writes for it would be refused: leave it to
                // the next start or to the store's rescue.
                tracing::warn!(task = id, "cannot take over the claim, not adopted: {e}");
                false
            }
            Err(e) => {
                // The claim record is the store's; the task is still ours to run.
                tracing::warn!(task = id, "cannot record the adopted claim: {e}");
                true
            }
        }
    }

    /// Sets an invalid queue entry aside. The log line names it with its line breaks
    /// escaped: a file name is not allowed to forge log lines.
    pub(super) async fn reject(&mut self, path: &std::path::Path, error: &str) {
        let shown = |s: &str| s.replace('\n', "\\n").replace('\r', "\\r");
        match within("reject", STORE_TIMEOUT, self.store.reject(path, error)).await {
            Ok(dst) => tracing::warn!("{} (moved to {})", shown(error), shown(&dst)),
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
    async fn catch_up(&mut self, id: &str, attempt: u32, sessions: Option<&[SessionInfo]>) {
        let session = sessions.and_then(|all| all.iter().find(|s| s.task_id == id));
        let known = sessions.is_some();
        let pane_alive = session.is_some_and(|s| !s.pane_dead) || !known;
        let session_exists = session.is_some() || !known;
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        self.read_output(id, attempt, !pane_alive).await;
        // The hooks may name the agent's session, which a vanished one can be resumed from.
        self.read_hooks(id, attempt).await;
        if !self.state.is_current(id, attempt) {
            return;
        }
        match catch_up(
            dir.exists(run::DONE),
            dir.exists(run::EXIT),
            session_exists,
            pane_alive,
        ) {
            CatchUp::Done => self.read_done(dir.path(), id, attempt).await,
            CatchUp::Exit => self.read_exit(dir.path(), id, attempt).await,
            CatchUp::SessionGone => {
                self.step(Event::SessionGone {
                    id: id.to_string(),
                    attempt,
                })
                .await;
            }
            CatchUp::PaneDied => {
                self.step(Event::Exited {
                    id: id.to_string(),
                    attempt,
                    how: "the agent's pane died".into(),
                    hangup: true,
                })
                .await;
            }
            CatchUp::Nothing => {}
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
            self.catch_up(&id, attempt, sessions.as_deref()).await;
        }
        if let Some(sessions) = &sessions {
            self.close_orphans(sessions).await;
        }
        self.check_disk_space().await;
        self.renew_leases().await;
        self.serve_relayed().await;
        // Filings that failed (a full disk, say) are tried again, unless the task has moved
        // on to a newer attempt meanwhile (the result is an old one's).
        for msg in std::mem::take(&mut self.unfiled) {
            let (id, attempt) = match &msg {
                super::Internal::Finished { id, report, .. }
                | super::Internal::Requeued { id, report } => (id.clone(), report.attempt),
                _ => (String::new(), 0),
            };
            if self.state.run(&id).is_some_and(|run| run.attempt > attempt) {
                tracing::warn!(
                    task = id,
                    attempt,
                    "dropping an unfiled result: the task has moved on to a newer attempt"
                );
                continue;
            }
            self.on_internal(msg).await;
        }
    }

    /// Extends the leases of this daemon's claims, so other daemons sharing the store see
    /// them held.
    async fn renew_leases(&mut self) {
        let ids: Vec<String> = self.state.running().map(|r| r.task.id.clone()).collect();
        let lease = self.lease();
        for id in ids {
            match within("renew", STORE_TIMEOUT, self.store.renew(&id, &lease)).await {
                Ok(true) => {}
                Ok(false) if self.store.shared() => {
                    // Another host took it over after this one's lease lapsed: its agent
                    // here must stop, and nothing it does is filed.
                    tracing::warn!(
                        task = id,
                        "another host took this task over; stopping its agent here"
                    );
                    self.step(Event::TakenOver { id }).await;
                }
                Ok(false) => tracing::warn!(task = id, "the claim is no longer this daemon's"),
                Err(e) => tracing::warn!(task = id, "cannot renew the claim: {e}"),
            }
        }
    }

    /// This daemon's claim, leased from now.
    pub(super) fn lease(&self) -> Claim {
        // Renewed at each rescan: three of them may be missed before it lapses.
        let lease = super::LEASE.max(self.config.rescan_interval.saturating_mul(3));
        Claim {
            owner: self.owner.clone(),
            until: Timestamp::now()
                .checked_add(lease)
                .unwrap_or(Timestamp::MAX),
        }
    }

    /// Kills nightshift sessions whose task is no longer running (finished while the daemon
    /// was down, or past its grace period).
    async fn close_orphans(&mut self, sessions: &[SessionInfo]) {
        for s in sessions {
            if !self.state.is_orphan(&s.name, &s.task_id, &s.home) {
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

impl<S: Store> Daemon<S> {
    fn lock_of(&self, task: &nightshift_core::task::Task) -> Option<String> {
        crate::admit::checkout_lock(task, &self.config)
    }
}

fn resumes_of(home: &crate::home::Home, id: &str) -> u32 {
    run::resumes(&home.task_runs(id))
}
