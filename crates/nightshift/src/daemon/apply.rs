//! Carrying out the core's decisions: one step of the core, each action it decides, and
//! the notifications and attention records that go with them.

use jiff::Timestamp;

use super::run_folder::close_session;
use super::{Daemon, Internal, STORE_TIMEOUT};
use crate::home::TaskState;
use crate::report::Report;
use crate::run::{self, RunDir};
use nightshift_core::{Action, Event, Observation};
use nightshift_store::{Store, within};

impl<S: Store> Daemon<S> {
    /// Feeds one event to the core and carries out what it decides, including the events
    /// those actions cause.
    pub(super) async fn step(&mut self, event: Event) {
        // Output and ticks that decide nothing change nothing a live view shows; pushing for
        // them would wake every dashboard at the agents' output rate.
        let mut visible = event.may_show();
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            let actions = self.state.step(event, self.now());
            visible |= !actions.is_empty();
            for action in actions {
                if let Some(follow_up) = self.apply(action).await {
                    pending.push(follow_up);
                }
            }
        }
        self.notify_if_drained().await;
        if visible {
            self.updates.send_modify(|seq| *seq += 1);
        }
    }

    pub(super) async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Core(event) => {
                if let Event::Started { id, attempt } = event.as_ref() {
                    self.watch_reflog(id, *attempt).await;
                }
                self.step(*event).await;
            }
            Internal::Finished {
                id,
                from,
                to,
                report,
            } => {
                self.filing = self.filing.saturating_sub(1);
                self.file_finished(&id, from, to, &report).await;
            }
            Internal::Requeued { id, report } => {
                self.filing = self.filing.saturating_sub(1);
                self.file_requeued(&id, &report).await;
            }
            Internal::HeadChecked {
                id,
                attempt,
                head,
                repo,
            } => {
                let key = (id.clone(), attempt);
                // The last HEAD seen, else the one the attempt started on.
                let last = repo
                    .then(|| {
                        self.heads.get(&key).cloned().or_else(|| {
                            RunDir::new(self.home.run_dir(&id, attempt))
                                .read::<run::SpawnRecord>(run::SPAWN)
                                .ok()
                                .flatten()
                                .and_then(|s| s.git_head)
                        })
                    })
                    .flatten();
                let what = Observation::of_head(repo, head.as_deref(), last.as_deref());
                if let Some(h) = head {
                    self.heads.insert(key, h);
                }
                if let Some(what) = what {
                    self.step(Event::Observed { id, attempt, what }).await;
                }
            }
            Internal::ExitSettled { id, attempt } => {
                self.settling.remove(&(id.clone(), attempt));
                let dir = self.home.run_dir(&id, attempt);
                self.read_exit(&dir, &id, attempt).await;
            }
        }
    }

    /// Carries out one action. Returns an event when the action's outcome is known at once.
    async fn apply(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Start {
                task,
                attempt,
                claim,
            } => self.start(task, attempt, claim).await,
            Action::Reject { path, error } => {
                self.reject(&path, &error).await;
                None
            }
            Action::FailQueued { id, reason } => {
                let report = Report::before_start(&id, &reason);
                let md = report.to_markdown(&[]);
                let filing = self
                    .store
                    .finish(&id, TaskState::Queued, TaskState::Failed, &md);
                match within("finish", STORE_TIMEOUT, filing).await {
                    Ok(dst) => {
                        tracing::warn!(task = id, "failed: {reason} ({dst})");
                        // Tasks that depend on this one fail in turn.
                        Some(Event::Filed {
                            id,
                            state: TaskState::Failed,
                        })
                    }
                    Err(e) if e.is_disk_full() => {
                        // It stays queued; the scan after the hold ends decides again.
                        tracing::warn!(task = id, "cannot file as failed: {e}");
                        self.queue_dirty = true;
                        Some(Event::DiskFull {
                            what: e.to_string(),
                        })
                    }
                    Err(e) => {
                        tracing::error!(task = id, "cannot file as failed: {e}");
                        self.queue_dirty = true;
                        None
                    }
                }
            }
            Action::Finish {
                id,
                attempt,
                outcome,
                reason,
                attempts,
                summary,
            } => {
                if outcome == TaskState::Done {
                    self.end_gracefully(&id, attempt);
                }
                self.spawn_report(id, attempt, outcome, reason, attempts, summary);
                None
            }
            Action::Requeue {
                id,
                attempt,
                reason,
                resume,
            } => {
                if let Some(session_id) = resume {
                    tracing::info!(task = id, attempt, "{reason}");
                    let record = run::ResumeRecord {
                        session_id,
                        from_attempt: attempt,
                        at: Timestamp::now(),
                    };
                    let runs = RunDir::new(self.home.task_runs(&id));
                    if let Err(e) = runs.write(run::RESUME_NEXT, &record) {
                        tracing::warn!(task = id, "cannot record the resume: {e}");
                    }
                } else {
                    tracing::info!(task = id, attempt, "attempt failed, will retry: {reason}");
                }
                self.spawn_requeue(id, attempt, reason);
                None
            }
            Action::Check { id, attempt, round } => {
                let run = self.state.run(&id)?;
                let job = super::check::CheckJob {
                    exe: self.exe.clone(),
                    dir: RunDir::new(self.home.run_dir(&id, attempt)),
                    commands: run.task.verify.clone(),
                    timeout: run
                        .task
                        .verify_timeout
                        .unwrap_or(self.config.verify_timeout),
                    rounds: run.task.verify_rounds.unwrap_or(self.config.verify_rounds),
                    uncommitted: self.config.uncommitted,
                    remote: run.task.repo.clone(),
                    id,
                    attempt,
                    round,
                };
                let tx = self.internal.clone();
                tokio::spawn(async move {
                    let event = job.run().await;
                    let _ = tx.send(Internal::Core(Box::new(event)));
                });
                None
            }
            Action::Tell { id, attempt, text } => {
                let dir = RunDir::new(self.home.run_dir(&id, attempt));
                // The agent signals done again: its first signal moves aside.
                let round = self.state.run(&id).map_or(0, |r| r.failed_rounds);
                if dir.exists(run::DONE)
                    && let Err(e) =
                        std::fs::rename(dir.file(run::DONE), dir.file(&run::done_of_round(round)))
                {
                    tracing::warn!(task = id, "cannot move done.json aside: {e}");
                }
                dir.log_event(Timestamp::now(), "told", &text);
                if let Some(tail) = self.tails.get(&(id.clone(), attempt)) {
                    let at = tail.position().to_string();
                    if let Err(e) = nightshift_store::fsutil::write_atomic(
                        &dir.file(run::TOLD_AT),
                        at.as_bytes(),
                        0o600,
                    ) {
                        tracing::warn!(task = id, "cannot record told-at: {e}");
                    }
                }
                let tmux = self.tmux.clone();
                tokio::spawn(async move {
                    if let Err(e) = tmux
                        .paste_line(&crate::tmux::session_name(&id), &text)
                        .await
                    {
                        tracing::warn!(task = id, "cannot type into the session: {e}");
                    }
                });
                None
            }
            Action::Attention {
                id,
                attempt,
                flags,
                change,
            } => {
                self.record_attention(&id, attempt, flags, &change);
                None
            }
            Action::CaptureScreen { id, attempt } => {
                let tmux = self.tmux.clone();
                let tx = self.internal.clone();
                tokio::spawn(async move {
                    match tmux.capture(&crate::tmux::session_name(&id)).await {
                        Ok(screen) => {
                            let what = nightshift_core::Observation::Screen(screen);
                            let event = Event::Observed { id, attempt, what };
                            let _ = tx.send(Internal::Core(Box::new(event)));
                        }
                        Err(e) => tracing::debug!(task = id, "cannot read the screen: {e}"),
                    }
                });
                None
            }
            Action::CheckHead { id, attempt } => {
                self.check_head(id, attempt);
                None
            }
            Action::Remind { id, attempt, flags } => {
                let signals: Vec<&str> = flags.iter().map(|f| f.signal.name()).collect();
                let evidence: Vec<String> = flags.iter().map(|f| f.evidence.clone()).collect();
                tracing::warn!(
                    task = id,
                    attempt,
                    "still needs attention ({})",
                    signals.join(", ")
                );
                self.notify(
                    crate::notify::EventKind::Attention,
                    &id,
                    format!(
                        "nightshift: {id} still needs attention ({})",
                        signals.join(", ")
                    ),
                    evidence.join("\n"),
                );
                None
            }
            Action::Unclaim { id, attempt } => {
                self.unclaim(&id, attempt).await;
                None
            }
            Action::DiskHold { what, notify } => {
                tracing::error!(
                    "the home's disk is full ({what}): nothing new starts until space is freed; running agents go on"
                );
                if let Some(notifier) = self.notifier.as_ref().filter(|_| notify) {
                    notifier.send(crate::notify::Notification {
                        event: crate::notify::EventKind::Held,
                        task_id: None,
                        title: "nightshift: the disk is full, the queue is held".into(),
                        body: format!(
                            "{what}\nNothing new starts until space is freed on the disk of {}; running agents go on. Starts resume by themselves.",
                            self.home.root().display()
                        ),
                        attach: None,
                        at: Timestamp::now(),
                        file: None,
                    });
                }
                None
            }
            Action::Limited {
                id,
                attempt,
                profile,
                kind,
                until,
                evidence,
                notify,
            } => {
                self.on_limited(super::limits::LimitHit {
                    id,
                    attempt,
                    profile,
                    kind,
                    until,
                    evidence,
                    notify,
                });
                None
            }
            Action::LimitLifted {
                profile,
                by_hand,
                runs,
            } => {
                self.on_limit_lifted(&profile, by_hand, &runs);
                None
            }
            Action::DiskResume => {
                tracing::info!("there is space on the home's disk again: starts resume");
                None
            }
            Action::CloseSession { session } => {
                let run = self.closed_run(&session);
                self.unwatch_closed(&session);
                if self.state.is_replaced(&session) {
                    // The new attempt's start closes it first, so this kill cannot land on the
                    // new session.
                    self.replacing.insert(session);
                    return None;
                }
                let tmux = self.tmux.clone();
                let home_id = self.home_id.clone();
                tokio::spawn(async move {
                    close_session(&tmux, &session, &home_id, run).await;
                });
                None
            }
        }
    }

    /// Types the profile's exit command (`/exit`) into a finished agent's session, so it
    /// ends by itself within the grace period instead of being killed.
    fn end_gracefully(&self, id: &str, attempt: u32) {
        let session = crate::tmux::session_name(id);
        if !self.state.owns_session(&session) {
            return;
        }
        let agent = RunDir::new(self.home.run_dir(id, attempt))
            .read::<run::SpawnRecord>(run::SPAWN)
            .ok()
            .flatten()
            .map(|s| s.agent);
        let Some(exit) = agent
            .and_then(|a| self.config.profile(&a))
            .and_then(|p| p.exit_command.clone())
        else {
            return;
        };
        let tmux = self.tmux.clone();
        tokio::spawn(async move {
            if let Err(e) = tmux.send_line(&session, &exit).await {
                tracing::debug!(session, "cannot type the exit command: {e}");
            }
        });
    }

    /// Saves the flags where `ls` and `attention` read them, and says what changed.
    fn record_attention(
        &mut self,
        id: &str,
        attempt: u32,
        flags: Vec<nightshift_core::attention::Flag>,
        change: &nightshift_core::attention::Change,
    ) {
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        let now = Timestamp::now();
        // A policy may have ended the run in the same step: its done/failed/retry message
        // says why, so a second message about the flag would only be noise.
        let goes_on = self.state.is_current(id, attempt);
        for flag in &change.raised {
            let signal = flag.signal.name();
            dir.log_event(now, "attention", &format!("{signal}: {}", flag.evidence));
            if !goes_on {
                continue;
            }
            tracing::warn!(
                task = id,
                "needs attention ({signal}): {} — attach with `nightshift attach {id}`",
                flag.evidence
            );
            self.notify(
                crate::notify::EventKind::Attention,
                id,
                format!("nightshift: {id} needs attention ({signal})"),
                flag.evidence.clone(),
            );
        }
        for signal in &change.cleared {
            let signal = signal.name();
            tracing::info!(task = id, "attention cleared ({signal})");
            dir.log_event(now, "attention-cleared", signal);
            self.notify(
                crate::notify::EventKind::Cleared,
                id,
                format!("nightshift: {id} is back on track ({signal} cleared)"),
                String::new(),
            );
        }
        let record = run::AttentionRecord {
            flags,
            updated_at: Some(now),
        };
        if let Err(e) = dir.write(run::ATTENTION, &record) {
            tracing::warn!(task = id, "cannot save attention.json: {e}");
        }
        self.share_attention(id, &record);
    }

    /// Tells the configured channels; every message names the task and how to attach.
    pub(super) fn notify(
        &self,
        event: crate::notify::EventKind,
        id: &str,
        title: String,
        why: String,
    ) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let running = self.state.run(id).is_some();
        let (body, attach) = nightshift_core::notice::message_body(id, &why, running);
        notifier.send(crate::notify::Notification {
            event,
            task_id: Some(id.to_string()),
            title,
            body,
            attach,
            at: Timestamp::now(),
            file: None,
        });
    }

    /// Says once when the last task finished and nothing is queued.
    pub(super) async fn notify_if_drained(&mut self) {
        if !self.drained.update(self.state.is_idle(self.filing)) {
            return;
        }
        if let Some(notifier) = &self.notifier {
            notifier.send(crate::notify::Notification {
                event: crate::notify::EventKind::Drained,
                task_id: None,
                title: "nightshift: the queue is empty".into(),
                body: "Every task has finished. See `nightshift ls`.".into(),
                attach: None,
                at: Timestamp::now(),
                file: None,
            });
        }
    }
}
