//! Carrying out the core's decisions: starting agents and filing finished tasks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::{Daemon, Internal};
use crate::checks::VerifyRound;
use crate::config::{self, Config};
use crate::git;
use crate::home::{Home, TaskState};
use crate::report::Report;
use crate::run::{self, RunDir, SpawnRecord};
use crate::tmux::{self, SessionSpec, Tmux, TmuxError};
use nightshift_core::Event;
use nightshift_core::start::{self, StartError};
use nightshift_core::task::Task;
use nightshift_store::{Store, within};

/// Everything a background start needs, cloned out of the daemon.
struct StartJob {
    /// An older session of this task is still open under the same name: close it first.
    replace: bool,
    home: Home,
    config: Config,
    tmux: Tmux,
    exe: PathBuf,
    task: Task,
    /// The prompt the agent gets: the preamble, if any, and the task's body.
    prompt: String,
    attempt: u32,
    dir: RunDir,
}

/// A prompt to type into a session once its agent is ready.
struct TypedPrompt {
    tmux: Tmux,
    task_id: String,
    session: String,
    delay: std::time::Duration,
    text: String,
    /// Where `typed.json` goes once the prompt is in.
    dir: PathBuf,
    /// A killed daemon pasted it already (`pasted.json`): only Enter is left to press.
    pasted: bool,
}

impl TypedPrompt {
    /// Agent UIs drop what is typed before they are ready: waits, then pastes. A prompt
    /// that does not arrive fails the attempt, saying why and how big it was.
    async fn deliver(self, attempt: u32) -> Result<(), Event> {
        tokio::time::sleep(self.delay).await;
        let dir = RunDir::new(&self.dir);
        let typed = async {
            if !self.pasted {
                self.tmux.paste(&self.session, &self.text).await?;
                let record = run::TypedRecord {
                    at: Timestamp::now(),
                };
                if let Err(e) = dir.write(run::PASTED, &record) {
                    tracing::warn!(task = self.task_id, "cannot record the pasted prompt: {e}");
                }
            }
            self.tmux.press_enter_after_paste(&self.session).await
        };
        match typed.await {
            Ok(()) => {
                if let Err(e) = dir.write(
                    run::TYPED,
                    &run::TypedRecord {
                        at: Timestamp::now(),
                    },
                ) {
                    tracing::warn!(task = self.task_id, "cannot record the typed prompt: {e}");
                }
                Ok(())
            }
            Err(e) => {
                let reason = format!(
                    "cannot type the prompt ({} bytes) into the session: {e}",
                    self.text.len()
                );
                tracing::warn!(task = self.task_id, attempt, "{reason}");
                Err(Event::StartFailed {
                    id: self.task_id,
                    attempt,
                    reason,
                    retry: true,
                })
            }
        }
    }
}

/// The message a resumed agent gets.
const RESUME_MESSAGE: &str = "nightshift: your session was interrupted (the terminal closed or the machine restarted). Carry on with the task where you left off; when it is finished, signal done as before.";

impl<S: Store> Daemon<S> {
    /// Claims the task, prepares its run folder, and starts the agent in the background.
    pub(super) async fn start(&mut self, task: Task, attempt: u32, claim: bool) -> Option<Event> {
        let id = task.id.clone();
        self.drained.work_started();
        let mut task = task;
        if claim {
            let lease = self.lease();
            match within("claim", super::STORE_TIMEOUT, self.store.claim(&id, &lease)).await {
                Ok(true) => fault_point("after-claim"),
                Ok(false) => return Some(Event::ClaimLost { id }),
                Err(e) => {
                    tracing::error!(task = id, "cannot claim: {e}");
                    return Some(Event::ClaimLost { id });
                }
            }
            // Run what was claimed, not what the last scan saw: the file may have been
            // edited in between.
            match self.reread(&id).await {
                Ok(fresh) => task = fresh,
                Err(reason) => {
                    return Some(Event::StartFailed {
                        id,
                        attempt,
                        reason,
                        retry: false,
                    });
                }
            }
        }
        let dir = RunDir::new(self.home.run_dir(&id, attempt));
        let agent = task.agent.as_deref().unwrap_or(&self.config.default_agent);
        let takes_preamble = self.config.profile(agent).is_some_and(|p| p.preamble);
        let prompt =
            start::prompt_with_preamble(&self.config.preamble, takes_preamble, &task.prompt);
        // No fsync: the prompt can always be rebuilt from the task file.
        let prepared = dir.create().and_then(|()| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.file(run::PROMPT))?
                .write_all(prompt.as_bytes())
        });
        // Watch before the agent can write anything.
        self.watch_run(&id, attempt);
        if let Err(e) = prepared {
            if nightshift_store::fsutil::is_disk_full(&e) {
                let what = format!("cannot prepare {}: {e}", dir.path().display());
                return Some(Event::StartHeld { id, attempt, what });
            }
            return Some(Event::StartFailed {
                id,
                attempt,
                reason: format!("cannot prepare {}: {e}", dir.path().display()),
                retry: false,
            });
        }
        dir.log_event(Timestamp::now(), "claimed", &format!("attempt {attempt}"));
        let replace = self.replacing.remove(&tmux::session_name(&id));
        let job = StartJob {
            replace,
            home: self.home.clone(),
            config: self.config.clone(),
            tmux: self.tmux.clone(),
            exe: self.exe.clone(),
            task,
            prompt,
            attempt,
            dir,
        };
        let tx = self.internal.clone();
        let root = self.home.root().to_path_buf();
        tokio::spawn(async move {
            let (event, typed) = match job.run().await {
                Ok(typed) => (Event::Started { id, attempt }, typed),
                Err(e) => {
                    tracing::warn!(task = id, attempt, "cannot start the agent: {}", e.reason);
                    (e.into_event(id, attempt, super::disk::is_full(&root)), None)
                }
            };
            let _ = tx.send(Internal::Core(Box::new(event)));
            if let Some(typed) = typed
                && let Err(event) = typed.deliver(attempt).await
            {
                let _ = tx.send(Internal::Core(Box::new(event)));
            }
        });
        None
    }

    /// Types the prompt of an adopted run whose daemon died before typing it: the agent is
    /// up and waiting for it. What is left of the profile's `type_delay` is waited first.
    pub(super) fn type_prompt_after_restart(&self, id: &str, attempt: u32, spawn: &SpawnRecord) {
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        if !start::prompt_left_to_type(
            spawn.typed_prompt,
            dir.exists(run::TYPED),
            dir.exists(run::DONE),
        ) {
            return;
        }
        let text = match std::fs::read(dir.file(run::PROMPT)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                tracing::warn!(task = id, "cannot read the prompt to type it: {e}");
                return;
            }
        };
        let delay = self
            .config
            .profile(&spawn.agent)
            .map_or(std::time::Duration::ZERO, |p| p.type_delay);
        tracing::info!(
            task = id,
            attempt,
            "typing the prompt the last daemon did not"
        );
        let typed = TypedPrompt {
            tmux: self.tmux.clone(),
            task_id: id.to_string(),
            session: spawn.session.clone(),
            delay: start::type_delay_left(delay, spawn.claimed_at, Timestamp::now()),
            text,
            dir: dir.path().to_path_buf(),
            pasted: dir.exists(run::PASTED),
        };
        let tx = self.internal.clone();
        tokio::spawn(async move {
            if let Err(event) = typed.deliver(attempt).await {
                let _ = tx.send(Internal::Core(Box::new(event)));
            }
        });
    }

    /// The task as the store holds it now.
    async fn reread(&self, id: &str) -> Result<Task, String> {
        let filed = within("entry", super::STORE_TIMEOUT, self.store.entry(id))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("`{id}` is no longer in the store"))?;
        let path = filed.source;
        let text = String::from_utf8(filed.content?)
            .map_err(|_| format!("{}: the file is not valid UTF-8", path.display()))?;
        let task =
            nightshift_core::task::parse(id, &path, &text, crate::home::user_home().as_deref())
                .map_err(|e| e.to_string())?;
        crate::admit::validate_against_config(&task, &path, &self.config)
            .map_err(|e| e.to_string())?;
        Ok(task)
    }

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
        tokio::spawn(async move {
            let report = attempt_report(
                &dir,
                &id,
                attempt,
                outcome.as_str(),
                reason,
                attempts,
                summary,
            )
            .await;
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
        let tidy_at = self.record_tidy(id, &dir, to);
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
                if let Some(at) = tidy_at {
                    self.tidy.add(at, dir.path().to_path_buf());
                }
                let state = to.as_str();
                tracing::info!(task = id, "{state}: {} ({dst})", report.reason);
                true
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
    /// left. A worktree that is not clean stays even then.
    fn record_tidy(&self, id: &str, dir: &RunDir, outcome: TaskState) -> Option<Timestamp> {
        let keep = self.config.keep_worktrees.keeps(outcome);
        let wt = dir
            .read::<SpawnRecord>(run::SPAWN)
            .ok()
            .flatten()
            .and_then(|s| s.worktree)?;
        if keep {
            return None;
        }
        let due_at = nightshift_core::tidy::removal_due(Timestamp::now(), self.config.grace_period);
        let record = super::tidy::TidyRecord {
            task_id: id.to_string(),
            worktree: wt.path,
            branch: wt.branch,
            due_at,
        };
        match dir.write(super::tidy::TIDY, &record) {
            Ok(()) => Some(due_at),
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
        if let Err(e) = within("requeue", super::STORE_TIMEOUT, self.store.requeue(id)).await {
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
        self.unwatch_run(id, report.attempt);
        // Scan now, so the task counts as queued before anything else looks.
        self.scan().await;
    }
}

impl StartJob {
    /// Checks what can be checked, records the spawn, and creates the session; returns the
    /// prompt still to type, if the agent takes it typed. Errors say whether another attempt
    /// could help.
    async fn run(self) -> Result<Option<TypedPrompt>, StartError> {
        let task = &self.task;
        let agent = task
            .agent
            .clone()
            .unwrap_or_else(|| self.config.default_agent.clone());
        let profile = self.config.profile(&agent).ok_or_else(|| {
            StartError::lasting(format!("agent `{agent}` is not a profile in config.toml"))
        })?;
        let given = task
            .workdir
            .clone()
            .or_else(|| self.config.workdir.clone())
            .ok_or_else(|| StartError::lasting("no workdir"))?;
        if !given.is_dir() {
            return Err(StartError::lasting(format!(
                "workdir {} does not exist",
                given.display()
            )));
        }
        let worktree = self.worktree(&given).await?;
        let workdir = worktree
            .as_ref()
            .map_or_else(|| given.clone(), |w| w.workdir.clone());
        if let Some(wt) = &worktree
            && profile.trust_worktrees
            && let Err(e) = crate::claude_state::trust(&wt.path, &self.agent_env(profile))
        {
            tracing::warn!(task = task.id, "cannot mark the worktree trusted: {e}");
        }
        // A resume continues the agent's own session, when the last attempt left one.
        let resume = self.take_resume(profile)?;
        let template = match &resume {
            Some(_) => &profile.resume_command,
            None => &profile.command,
        };
        let vars = config::ArgvVars {
            prompt: match &resume {
                Some(_) => RESUME_MESSAGE,
                None => &self.prompt,
            },
            prompt_file: &self.dir.file(run::PROMPT),
            task_id: &task.id,
            workdir: &workdir,
            nightshift: &self.exe,
            hook_settings: &self.dir.file(run::HOOK_SETTINGS),
            session_id: resume.as_ref().map_or("", |r| r.session_id.as_str()),
        };
        let via_argv = profile.prompt == config::PromptVia::Argument || resume.is_some();
        let argv = config::expand_argv(template, &vars, via_argv).map_err(StartError::lasting)?;
        if profile.uses_hooks() {
            self.dir
                .write(
                    run::HOOK_SETTINGS,
                    &crate::hook::settings(&self.exe, self.dir.path()),
                )
                .map_err(|e| StartError::passing(format!("cannot write the hook settings: {e}")))?;
        }
        let path_var = agent_path(&self.exe);
        let program = argv.first().cloned().unwrap_or_default();
        if find_program(&program, &path_var).is_none() {
            return Err(StartError::lasting(format!(
                "agent `{agent}`: `{program}` was not found on PATH ({})",
                path_var.to_string_lossy()
            )));
        }
        let session = tmux::session_name(&task.id);
        let mut env: Vec<(String, String)> = vec![
            ("NIGHTSHIFT_TASK_ID".into(), task.id.clone()),
            (
                "NIGHTSHIFT_HOME".into(),
                self.home.root().to_string_lossy().into(),
            ),
            (
                "NIGHTSHIFT_SOCKET".into(),
                self.home.socket().to_string_lossy().into(),
            ),
            (
                "NIGHTSHIFT_RUN_DIR".into(),
                self.dir.path().to_string_lossy().into(),
            ),
            ("NIGHTSHIFT_ATTEMPT".into(), self.attempt.to_string()),
            ("PATH".into(), path_var.to_string_lossy().into()),
            // The wrapper gives the agent the user's umask back (nightshift runs under 077).
            (
                crate::privacy::USER_UMASK_ENV.into(),
                format!("{:04o}", crate::privacy::user_umask()),
            ),
        ];
        // Only these go on tmux's command line, which every local user can read in `ps`;
        // the wrapper sets the secrets from `env:` on the agent itself (from spawn.json).
        let session_env = env.len();
        env.extend(profile.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        // Whether the prompt's text is one of the arguments (not only its file's path).
        let prompt_in_argv = via_argv
            && (template.iter().any(|a| a.contains("{prompt}"))
                || !template.iter().any(|a| a.contains("{prompt_file}")));
        check_exec_size(&argv, &env, prompt_in_argv, vars.prompt.len())
            .map_err(StartError::lasting)?;
        let typed = profile.prompt == config::PromptVia::Typed && resume.is_none();
        let prompt_note = typed
            .then(|| nightshift_core::delivery::clean_typed(&self.prompt).note("the typed prompt"))
            .flatten();
        if let Some(note) = &prompt_note {
            self.dir.log_event(Timestamp::now(), "prompt", note);
        }

        let record = SpawnRecord {
            task_id: task.id.clone(),
            attempt: self.attempt,
            agent,
            argv,
            workdir: workdir.clone(),
            env: env.clone(),
            session: session.clone(),
            claimed_at: Timestamp::now(),
            boot: crate::clock::boot_stamp(),
            git_head: git::head(&workdir).await,
            stdin_file: (profile.prompt == config::PromptVia::Stdin && resume.is_none())
                .then(|| self.dir.file(run::PROMPT)),
            resumed_session: resume.as_ref().map(|r| r.session_id.clone()),
            worktree,
            prompt_note,
            typed_prompt: typed,
        };
        self.dir
            .write(run::SPAWN, &record)
            .map_err(|e| StartError::passing(format!("cannot write spawn.json: {e}")))?;

        let wrapper: Vec<OsString> = vec![
            self.exe.clone().into(),
            "__wrap".into(),
            self.dir.path().into(),
        ];
        let transcript = self.dir.transcript();
        // Created private before tmux's `cat >>` opens it, whatever the tmux server's umask.
        nightshift_store::fsutil::create_private_file(&transcript).map_err(|e| {
            StartError::passing(format!("cannot create {}: {e}", transcript.display()))
        })?;
        let died_channel = tmux::died_channel(&session, self.attempt);
        let home_id = tmux::home_id(self.home.root());
        let spec = SessionSpec {
            died_channel: &died_channel,
            name: &session,
            task_id: &task.id,
            home: &home_id,
            workdir: &workdir,
            env: &env[..session_env],
            argv: &wrapper,
            transcript: &transcript,
            transcript_writer: &self.exe,
            transcript_limit: self.config.transcript_limit,
            width: self.config.pane_width,
            height: self.config.pane_height,
        };
        if self.replace {
            let _ = self.tmux.kill_own_session(&session, &home_id).await;
        }
        let spawned = match self.tmux.spawn_session(&spec).await {
            Err(TmuxError::Failed { stderr, .. }) if stderr.contains("duplicate session") => {
                // A leftover from an earlier attempt: it is ours to replace, unless another
                // home on the same tmux server runs a task of the same name.
                self.check_not_foreign(&session, &home_id).await?;
                let _ = self.tmux.kill_session(&session).await;
                self.tmux.spawn_session(&spec).await
            }
            Err(TmuxError::Failed { stderr, .. }) if stderr.contains("server exited") => {
                // The server was shutting down (someone killed it); the next one starts fresh.
                self.tmux.spawn_session(&spec).await
            }
            other => other,
        }
        .map_err(|e| StartError::passing(e.to_string()))?;
        self.dir.log_event(
            Timestamp::now(),
            "spawned",
            &format!(
                "session {session}, pane {} (pid {})",
                spawned.pane_id, spawned.pane_pid
            ),
        );
        tracing::info!(task = task.id, attempt = self.attempt, session, "started");
        Ok(typed.then(|| TypedPrompt {
            tmux: self.tmux.clone(),
            task_id: task.id.clone(),
            session,
            delay: profile.type_delay,
            text: self.prompt.clone(),
            dir: self.dir.path().to_path_buf(),
            pasted: false,
        }))
    }

    /// Fails the start when the session named `session` belongs to another home.
    async fn check_not_foreign(&self, session: &str, home_id: &str) -> Result<(), StartError> {
        let sessions = self.tmux.list_sessions().await.unwrap_or_default();
        match sessions.iter().find(|s| s.name == session) {
            Some(s) if s.is_foreign(home_id) => Err(StartError::passing(format!(
                "the tmux session {session} on `{}` belongs to the home {}; give this task another id or this home another tmux_socket",
                self.tmux.display_prefix(),
                s.home
            ))),
            _ => Ok(()),
        }
    }

    /// The task's own worktree and branch, when it runs isolated in a git repository
    /// (created, its included files copied and its setup run, the first time).
    async fn worktree(
        &self,
        workdir: &Path,
    ) -> Result<Option<crate::worktree::Worktree>, StartError> {
        let task = &self.task;
        let isolation = task.isolation.unwrap_or(self.config.isolation);
        if isolation == nightshift_core::task::Isolation::None || !git::in_work_tree(workdir) {
            return Ok(None);
        }
        let root = self.home.worktrees_dir();
        let base = match &task.base {
            Some(b) => Some(b.clone()),
            None => self.dependency_branch(workdir).await,
        };
        let wt = crate::worktree::prepare(workdir, &root, &task.id, base.as_deref())
            .await
            .map_err(|e| StartError::lasting(format!("cannot create the task's worktree: {e}")))?;
        if wt.created {
            self.dir.log_event(
                Timestamp::now(),
                "worktree",
                &format!("{} on {} from {}", wt.path.display(), wt.branch, wt.base),
            );
            match crate::worktree::copy_included(&wt).await {
                Ok(0) => {}
                Ok(n) => self.dir.log_event(
                    Timestamp::now(),
                    "worktree",
                    &format!("copied {n} files listed in .worktreeinclude"),
                ),
                Err(e) => {
                    return Err(StartError::lasting(format!(
                        "cannot copy .worktreeinclude files: {e}"
                    )));
                }
            }
            if !task.setup.is_empty() {
                let results = crate::checks::run_commands_recorded(
                    &task.setup,
                    &wt.workdir,
                    self.config.setup_timeout,
                    &[],
                    Some(crate::checks::Tie {
                        record: &self.dir.file(run::CHECK_GROUP),
                        guard: Some(&self.exe),
                    }),
                )
                .await;
                if let Err(e) = self.dir.write(run::SETUP, &results) {
                    tracing::warn!(task = task.id, "cannot save setup.json: {e}");
                }
                if let Some(bad) = results.iter().find(|r| !r.passed()) {
                    // Half set up: a retry must start from a fresh worktree, not this one.
                    if let Err(e) = crate::worktree::remove(&wt.path, true).await {
                        tracing::warn!(task = task.id, "cannot remove the worktree: {e}");
                    }
                    return Err(StartError::lasting(format!(
                        "setup failed: {}",
                        failure_line(bad)
                    )));
                }
            }
        }
        Ok(Some(wt))
    }

    /// A task that builds on another's work starts from that task's branch: the first of its
    /// dependencies that ran on a branch of the same repository.
    async fn dependency_branch(&self, workdir: &Path) -> Option<String> {
        for dep in &self.task.depends_on {
            let runs = self.home.task_runs(dep);
            let Some(last) = run::attempts(&runs).last().copied() else {
                continue;
            };
            let spawn: Option<SpawnRecord> = RunDir::new(self.home.run_dir(dep, last))
                .read(run::SPAWN)
                .ok()
                .flatten();
            if let Some(wt) = spawn.and_then(|s| s.worktree)
                && crate::worktree::branch_exists(workdir, &wt.branch).await
            {
                return Some(wt.branch);
            }
        }
        None
    }

    /// The profile's environment, as the agent gets it (where its own state lives).
    fn agent_env(&self, profile: &config::AgentProfile) -> Vec<(String, String)> {
        profile
            .env
            .iter()
            .chain(self.task.env.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Takes the task's resume record, if the last attempt's session is to be resumed.
    fn take_resume(
        &self,
        profile: &config::AgentProfile,
    ) -> Result<Option<run::ResumeRecord>, StartError> {
        let next = self.home.task_runs(&self.task.id).join(run::RESUME_NEXT);
        let record: Option<run::ResumeRecord> = std::fs::read(&next)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(record) = record else {
            return Ok(None);
        };
        if profile.resume_command.is_empty() {
            let _ = std::fs::remove_file(&next);
            return Ok(None);
        }
        // Moved into this attempt's folder: it marks the attempt as a resume (not counted).
        std::fs::rename(&next, self.dir.file(run::RESUMED))
            .map_err(|e| StartError::passing(format!("cannot record the resume: {e}")))?;
        Ok(Some(record))
    }
}

/// The agent's PATH: the daemon's, with this binary's folder first so `nightshift done`
/// works inside the pane.
fn agent_path(exe: &Path) -> OsString {
    let mut dirs: Vec<PathBuf> = exe.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Resolves a program name the way `execvp` will.
pub fn find_program(program: &str, path_var: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path_var)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// Fails before the session exists when the agent's argv and environment cannot reach
/// `execve`: a NUL byte, one string over the kernel's limit, or the whole over it. The
/// environment counted is this process's plus the agent's own; tmux adds a few variables.
fn check_exec_size(
    argv: &[String],
    env: &[(String, String)],
    prompt_in_argv: bool,
    prompt_len: usize,
) -> Result<(), String> {
    use nightshift_core::delivery;
    // Headroom for what tmux sets in the pane (TMUX, TMUX_PANE, TERM, ...).
    const TMUX_ENV: usize = 4096;
    let stack = rustix::process::getrlimit(rustix::process::Resource::Stack).current;
    let limit = delivery::exec_args_limit(stack).saturating_sub(TMUX_ENV);
    let inherited: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    let own: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let all_env = inherited.iter().chain(&own).map(String::as_str);
    delivery::check_exec_size(argv.iter().map(String::as_str), all_env, limit).map_err(|e| {
        if prompt_in_argv && !e.in_environment() {
            format!(
                "the prompt ({prompt_len} bytes) cannot be passed as an argument: {e}; \
                 a profile that reads it from {{prompt_file}}, stdin or typed input has no such limit"
            )
        } else {
            format!("the agent cannot be started: {e}")
        }
    })
}

/// Reads what the run left behind and describes the attempt.
async fn attempt_report(
    dir: &RunDir,
    id: &str,
    attempt: u32,
    outcome: &str,
    reason: String,
    attempts: u32,
    summary: Option<String>,
) -> Report {
    let spawn: Option<SpawnRecord> = dir.read(run::SPAWN).ok().flatten();
    let finished_at = crate::clock::wall_now();
    let (commits, workdir, agent, started_at) = match &spawn {
        Some(s) => {
            let commits = match &s.git_head {
                // HEAD did not move: no commits, without asking git for a log.
                Some(start) if git::head(&s.workdir).await.as_ref() == Some(start) => {
                    Some(Vec::new())
                }
                Some(start) => Some(git::commits_since(&s.workdir, Some(start)).await),
                None if git::is_repo(&s.workdir).await => {
                    Some(git::commits_since(&s.workdir, None).await)
                }
                None => None,
            };
            (
                commits,
                Some(s.workdir.clone()),
                Some(s.agent.clone()),
                Some(s.claimed_at),
            )
        }
        None => (None, None, None, None),
    };
    let summary = summary.or_else(|| {
        dir.read::<run::DoneRecord>(run::DONE)
            .ok()
            .flatten()
            .and_then(|d| d.summary)
    });
    let worktree = spawn.as_ref().and_then(|s| s.worktree.clone());
    let diffstat = match &worktree {
        Some(wt) => crate::worktree::diffstat(&wt.path, &wt.base).await,
        None => None,
    };
    let verify = verify_rounds(dir);
    let setup: Vec<crate::checks::CommandResult> =
        dir.read(run::SETUP).ok().flatten().unwrap_or_default();
    // On the boot clock when the attempt started in this boot: a wall-clock step in between
    // does not change how long it ran.
    let booted = spawn
        .as_ref()
        .and_then(|s| crate::clock::boot_of(s.boot.as_ref()));
    let duration_secs = match booted {
        Some(b) => Some(crate::clock::boot_now().saturating_sub(b).as_secs_f64()),
        None => started_at.map(|s| finished_at.duration_since(s).as_secs_f64()),
    };
    let secs = |r: &crate::checks::CommandResult| r.duration_ms as f64 / 1000.0;
    let phases = duration_secs.map_or_else(Default::default, |total| {
        let setup_secs = (!setup.is_empty()).then(|| setup.iter().map(secs).sum());
        let verify_secs =
            (!verify.is_empty()).then(|| verify.iter().flat_map(|v| &v.results).map(secs).sum());
        nightshift_core::checks::phases(total, setup_secs, verify_secs)
    });
    let session: Option<crate::hook::SessionRecord> = dir.read(run::SESSION).ok().flatten();
    let usage = session
        .as_ref()
        .and_then(|s| s.transcript_path.as_deref())
        .and_then(|p| crate::usage::from_claude_transcript(Path::new(p)));
    Report {
        task_id: id.to_string(),
        outcome: outcome.to_string(),
        reason,
        summary,
        attempt,
        attempts: attempts.max(1),
        agent,
        workdir,
        started_at,
        finished_at,
        duration_secs,
        commits,
        transcript: Some(dir.transcript()),
        branch: worktree.as_ref().map(|w| w.branch.clone()),
        base: worktree.as_ref().map(|w| w.base.clone()),
        diffstat,
        worktree: worktree.map(|w| w.path),
        phases,
        verify,
        attention: attention_episodes(dir),
        agent_session: session.map(|s| s.session_id),
        usage,
        prompt_note: spawn.and_then(|s| s.prompt_note),
    }
}

/// The acceptance-check rounds recorded in a run folder, in order.
fn verify_rounds(dir: &RunDir) -> Vec<VerifyRound> {
    (1..)
        .map_while(|round| {
            dir.read::<VerifyRound>(&run::verify_file(round))
                .ok()
                .flatten()
        })
        .collect()
}

/// The attention flags of the attempt, from its event log, paired with their clearing.
fn attention_episodes(dir: &RunDir) -> Vec<crate::report::Episode> {
    let text = std::fs::read_to_string(dir.file(run::EVENTS)).unwrap_or_default();
    let mut episodes: Vec<crate::report::Episode> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(event), Some(detail), Some(at)) = (
            v["event"].as_str(),
            v["detail"].as_str(),
            v["at"].as_str().and_then(|a| a.parse::<Timestamp>().ok()),
        ) else {
            continue;
        };
        match event {
            "attention" => {
                let (signal, evidence) = detail.split_once(": ").unwrap_or((detail, ""));
                episodes.push(crate::report::Episode {
                    signal: signal.to_string(),
                    evidence: evidence.to_string(),
                    raised_at: at,
                    cleared_at: None,
                });
            }
            "attention-cleared" => {
                if let Some(e) = episodes
                    .iter_mut()
                    .rev()
                    .find(|e| e.signal == detail && e.cleared_at.is_none())
                {
                    e.cleared_at = Some(at);
                }
            }
            _ => {}
        }
    }
    episodes
}

/// Reports of the task's earlier attempts, oldest first.
pub fn earlier_reports(home: &Home, id: &str, before: u32) -> Vec<Report> {
    run::attempts(&home.task_runs(id))
        .into_iter()
        .filter(|&a| a < before)
        .filter_map(|a| {
            RunDir::new(home.run_dir(id, a))
                .read::<Report>(run::REPORT)
                .ok()
                .flatten()
        })
        .collect()
}

/// Test hook: `NIGHTSHIFT_FAULT=after-claim` makes the daemon die by SIGKILL right after a
/// claim, to prove recovery. Not for production use.
fn fault_point(name: &str) {
    if std::env::var("NIGHTSHIFT_FAULT").is_ok_and(|v| v == name) {
        tracing::warn!("NIGHTSHIFT_FAULT={name}: killing the daemon");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Text safe to paste into an agent's terminal: no escape sequences or control characters
/// (an ESC would act as a key press), only newlines and tabs.
fn typeable(text: &str) -> String {
    nightshift_core::completion::strip_ansi(text)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// A failed command in one line: what ran, how it ended, and its last words.
fn failure_line(r: &crate::checks::CommandResult) -> String {
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
