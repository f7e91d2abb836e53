//! Reading the run folders as they change: the agents' transcripts, hook events, done and
//! exit records, and the HEAD reflogs of their repositories.

use std::path::Path;

use super::tail::Tail;
use super::watch::Change;
use super::{Daemon, Internal, SCREEN_WAIT, STORE_TIMEOUT};
use crate::run::{self, DoneRecord, ExitRecord, RunDir};
use nightshift_core::Event;
use nightshift_store::{Store, within};

impl<S: Store> Daemon<S> {
    pub(super) async fn on_change(&mut self, change: Change) {
        let Some(dir) = change.path.parent() else {
            return;
        };
        if self.queue_dir.as_deref() == Some(dir) {
            if self.store.note_change(&change.path, change.complete) {
                self.queue_dirty = true;
            }
            return;
        }
        if change.path == self.home.config_file() {
            self.config_changed(change.complete);
            return;
        }
        if change.path == self.home.paused_file() {
            let paused = match within("paused", STORE_TIMEOUT, self.store.paused()).await {
                Ok(paused) => paused,
                Err(e) => {
                    tracing::error!("cannot tell whether the queue is paused: {e}");
                    return;
                }
            };
            tracing::info!("the queue is {}", if paused { "paused" } else { "resumed" });
            self.step(Event::Paused(paused)).await;
            return;
        }
        if dir == self.home.schedules_dir() {
            if change.path.extension().is_some_and(|e| e == "md") {
                self.run_schedules().await;
            }
            return;
        }
        if dir == crate::trigger::events_dir(&self.home) {
            self.take_trigger_events();
            return;
        }
        if dir == crate::trigger::triggers_dir(&self.home) {
            if change.path.extension().is_some_and(|e| e == "md") {
                self.load_triggers().await;
            }
            return;
        }
        // Not a return: a watched path may also hold the daemon's own (a reflog, a run).
        self.trigger_path_changed(&change.path);
        if let Some(runs) = self.reflogs.get(&change.path) {
            // A commit (or any HEAD move) in a running task's repository.
            for (id, attempt) in runs.clone() {
                self.check_head(id, attempt);
            }
            return;
        }
        let Some((id, attempt)) = self.runs.get(dir).cloned() else {
            return;
        };
        tracing::debug!(path = %change.path.display(), complete = change.complete, "run file changed");
        match change.path.file_name().and_then(|n| n.to_str()) {
            // The transcript, or one of its later segments once it is over its cap.
            Some(name)
                if crate::transcript::segment_of(Path::new(run::TRANSCRIPT), name).is_some() =>
            {
                self.read_output(&id, attempt, false).await;
            }
            Some(run::HOOKS) => self.read_hooks(&id, attempt).await,
            Some(run::DONE) => self.read_done(dir, &id, attempt).await,
            Some(run::ACK) if change.complete => self.step(Event::Ack { id }).await,
            Some(run::EXIT) => {
                let current = self.state.is_current(&id, attempt);
                if current && !dir.join(run::DONE).exists() {
                    self.settle_exit(id, attempt);
                } else {
                    if current {
                        // It said done before it left: no later output can hold the marker,
                        // so there is no pane death to wait for (its last screen is saved
                        // when the session is closed). Take the done first.
                        self.read_done(dir, &id, attempt).await;
                    }
                    // Already finished: the exit only frees the slot.
                    self.read_exit(dir, &id, attempt).await;
                }
            }
            _ => {}
        }
    }

    pub(super) async fn read_output(&mut self, id: &str, attempt: u32, flush: bool) {
        loop {
            let Some(tail) = self.tails.get_mut(&(id.to_string(), attempt)) else {
                return;
            };
            let lines = tail.read_lines(flush);
            // A read that found the end needs no second one to learn so.
            let at_end = tail.at_end();
            match lines {
                Ok(lines) if lines.is_empty() => return,
                Ok(lines) => {
                    self.step(Event::Output {
                        id: id.to_string(),
                        attempt,
                        lines,
                    })
                    .await;
                    if at_end {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(task = id, "cannot read the transcript: {e}");
                    return;
                }
            }
        }
    }

    pub(super) async fn read_hooks(&mut self, id: &str, attempt: u32) {
        loop {
            let Some(tail) = self.hook_tails.get_mut(&(id.to_string(), attempt)) else {
                return;
            };
            let lines = match tail.read_lines(false) {
                Ok(lines) if lines.is_empty() => return,
                Ok(lines) => lines,
                Err(e) => {
                    tracing::warn!(task = id, "cannot read the hook events: {e}");
                    return;
                }
            };
            for line in lines {
                match serde_json::from_str::<crate::hook::HookRecord>(&line) {
                    Ok(record) => {
                        tracing::debug!(task = id, event = record.event, "hook");
                        if record.event == "SessionStart"
                            && let Some(session) = record.session_id.clone()
                        {
                            let what = nightshift_core::Observation::AgentSession(session);
                            self.step(Event::Observed {
                                id: id.to_string(),
                                attempt,
                                what,
                            })
                            .await;
                        }
                        if let Some(hook) = record.observation() {
                            let what = nightshift_core::Observation::Hook(hook);
                            self.step(Event::Observed {
                                id: id.to_string(),
                                attempt,
                                what,
                            })
                            .await;
                        }
                    }
                    Err(e) => tracing::warn!(task = id, "a hook event that cannot be read: {e}"),
                }
            }
        }
    }

    /// The pane's final screen, as tmux saved it.
    async fn read_screen(&mut self, dir: &Path, id: &str, attempt: u32) {
        let Ok(bytes) = std::fs::read(dir.join(run::SCREEN)) else {
            return;
        };
        let lines: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect();
        if !lines.is_empty() {
            self.step(Event::Output {
                id: id.to_string(),
                attempt,
                lines,
            })
            .await;
        }
    }

    /// Before an exit without done counts, waits for tmux to have read all of the agent's
    /// output (the pane died) and saves the final screen: output the transcript pipe has not
    /// delivered yet may hold the marker.
    fn settle_exit(&mut self, id: String, attempt: u32) {
        if !self.settling.insert((id.clone(), attempt)) {
            return;
        }
        let tmux = self.tmux.clone();
        let dir = RunDir::new(self.home.run_dir(&id, attempt));
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let session = crate::tmux::session_name(&id);
            let channel = crate::tmux::died_channel(&session, attempt);
            if let Some(screen) = tmux
                .wait_died_and_capture(&channel, &session, SCREEN_WAIT)
                .await
                && let Err(e) = nightshift_store::fsutil::write_atomic(
                    &dir.file(run::SCREEN),
                    screen.as_bytes(),
                    0o600,
                )
            {
                tracing::warn!(task = id, "cannot save the final screen: {e}");
            }
            let _ = tx.send(Internal::ExitSettled { id, attempt });
        });
    }

    pub(super) async fn read_done(&mut self, dir: &Path, id: &str, attempt: u32) {
        match RunDir::new(dir).read::<DoneRecord>(run::DONE) {
            Ok(Some(record)) => {
                self.step(Event::Done {
                    id: id.to_string(),
                    attempt,
                    record,
                })
                .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(task = id, "{e}"),
        }
    }

    pub(super) async fn read_exit(&mut self, dir: &Path, id: &str, attempt: u32) {
        // The last output may hold the marker: read it before the exit counts.
        self.read_output(id, attempt, true).await;
        self.read_screen(dir, id, attempt).await;
        match RunDir::new(dir).read::<ExitRecord>(run::EXIT) {
            Ok(Some(record)) => {
                self.step(nightshift_core::start::exit_event(
                    id.to_string(),
                    attempt,
                    record.error.as_deref(),
                    record.describe(),
                    record.hangup,
                ))
                .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(task = id, "{e}"),
        }
    }

    pub(super) fn watch_run(&mut self, id: &str, attempt: u32) -> RunDir {
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        if let Err(e) = self.watch.add(dir.path()) {
            tracing::warn!(task = id, "cannot watch {}: {e}", dir.path().display());
        }
        self.runs
            .insert(dir.path().to_path_buf(), (id.to_string(), attempt));
        let told_at: crate::transcript::Position = std::fs::read_to_string(dir.file(run::TOLD_AT))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_default();
        self.tails.insert(
            (id.to_string(), attempt),
            Tail::from_position(&dir.transcript(), told_at),
        );
        self.hook_tails
            .insert((id.to_string(), attempt), Tail::new(&dir.file(run::HOOKS)));
        dir
    }

    /// The run folder and number of the attempt that lived in a closing session (the
    /// latest such attempt's, not a new one replacing it).
    pub(super) fn closed_run(&self, session: &str) -> Option<(std::path::PathBuf, u32)> {
        self.runs
            .values()
            .filter(|(id, attempt)| {
                crate::tmux::session_name(id) == session && !self.state.is_current(id, *attempt)
            })
            .max_by_key(|(_, attempt)| *attempt)
            .map(|(id, attempt)| (self.home.run_dir(id, *attempt), *attempt))
    }

    /// Stops following the attempts that lived in a closed session (not a new attempt that
    /// is replacing it under the same name).
    pub(super) fn unwatch_closed(&mut self, session: &str) {
        let done: Vec<(String, u32)> = self
            .runs
            .values()
            .filter(|(id, attempt)| {
                crate::tmux::session_name(id) == session && !self.state.is_current(id, *attempt)
            })
            .cloned()
            .collect();
        for (id, attempt) in done {
            self.unwatch_run(&id, attempt);
        }
    }

    /// Follows the HEAD reflog of a running attempt's repository, so its commits are seen
    /// as they happen (the no-commits signal), not on the next periodic look. A workdir
    /// outside any repository is reported as such.
    pub(super) async fn watch_reflog(&mut self, id: &str, attempt: u32) {
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        let Ok(Some(spawn)) = dir.read::<run::SpawnRecord>(run::SPAWN) else {
            return;
        };
        let Some(reflog) = crate::git::head_reflog(&spawn.workdir) else {
            // Known now, not at the first periodic look: no-commits is off for this run.
            self.step(Event::Observed {
                id: id.to_string(),
                attempt,
                what: nightshift_core::Observation::NotARepo,
            })
            .await;
            return;
        };
        let entry = self.reflogs.entry(reflog.clone()).or_default();
        if entry.is_empty()
            && let Some(logs) = reflog.parent()
            && let Err(e) = self.watch.add(logs)
        {
            tracing::debug!(task = id, "cannot watch {}: {e}", logs.display());
        }
        entry.push((id.to_string(), attempt));
    }

    /// Reads the workdir's HEAD in the background (from the repository's files: cheap).
    pub(super) fn check_head(&mut self, id: String, attempt: u32) {
        let dir = RunDir::new(self.home.run_dir(&id, attempt));
        let Ok(Some(spawn)) = dir.read::<run::SpawnRecord>(run::SPAWN) else {
            return;
        };
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let head = crate::git::head(&spawn.workdir).await;
            let repo = head.is_some() || crate::git::is_repo(&spawn.workdir).await;
            let _ = tx.send(Internal::HeadChecked {
                id,
                attempt,
                head,
                repo,
            });
        });
    }

    pub(super) fn unwatch_run(&mut self, id: &str, attempt: u32) {
        let dir = self.home.run_dir(id, attempt);
        self.watch.remove(&dir);
        self.runs.remove(&dir);
        self.heads.remove(&(id.to_string(), attempt));
        let mut unwatched = Vec::new();
        for (reflog, runs) in self.reflogs.iter_mut() {
            runs.retain(|(i, a)| !(i == id && *a == attempt));
            if runs.is_empty() {
                unwatched.push(reflog.clone());
            }
        }
        for reflog in unwatched {
            self.reflogs.remove(&reflog);
            if let Some(logs) = reflog.parent() {
                self.watch.remove(logs);
            }
        }
        self.tails.remove(&(id.to_string(), attempt));
        self.hook_tails.remove(&(id.to_string(), attempt));
    }
}

/// Closes a session of this home, saving its last screen in the run folder of the attempt
/// that lived in it, unless that screen was saved already (when its pane died); only that
/// attempt's session, never a newer one of the same name. When that attempt's agent said
/// done and exited, nobody has waited for its pane's death yet (see the exit in
/// `on_change`): the close waits for it first, in the same tmux client, so every byte
/// reaches the transcript.
pub(super) async fn close_session(
    tmux: &crate::tmux::Tmux,
    session: &str,
    home_id: &str,
    run: Option<(std::path::PathBuf, u32)>,
) {
    let screen_file = run.as_ref().map(|(dir, _)| dir.join(run::SCREEN));
    let attempt = run.as_ref().map(|(_, attempt)| *attempt);
    let unsettled = run.as_ref().is_some_and(|(dir, _)| {
        dir.join(run::EXIT).exists()
            && dir.join(run::DONE).exists()
            && !dir.join(run::SCREEN).exists()
    });
    let mut closed = None;
    if unsettled && let Some(attempt) = attempt {
        closed = tmux
            .close_own_session_once_died(session, home_id, attempt, SCREEN_WAIT)
            .await;
    }
    let closed = match closed {
        Some(closed) => closed,
        None => tmux.close_own_session(session, home_id, attempt).await,
    };
    match closed {
        Ok(Some(screen)) => save_last_screen(screen_file.as_deref(), &screen),
        Ok(None) => {}
        Err(e) => tracing::warn!(session, "cannot close the session: {e}"),
    }
}

/// Saves the screen a session showed when it was closed, unless the attempt's final screen
/// was saved already (when its pane died) or its run folder is gone.
fn save_last_screen(file: Option<&Path>, screen: &str) {
    let Some(file) = file else { return };
    if file.exists() || !file.parent().is_some_and(Path::is_dir) {
        return;
    }
    if let Err(e) = nightshift_store::fsutil::write_atomic(file, screen.as_bytes(), 0o600) {
        tracing::warn!("cannot save the last screen in {}: {e}", file.display());
    }
}
