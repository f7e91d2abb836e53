//! Carrying out the core's decisions: starting agents and filing finished tasks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::{Daemon, Internal};
use crate::config::{self, Config};
use crate::core::Event;
use crate::git;
use crate::home::{Home, TaskState};
use crate::queue::Store;
use crate::report::Report;
use crate::run::{self, RunDir, SpawnRecord};
use crate::task::Task;
use crate::tmux::{self, SessionSpec, Tmux, TmuxError};

/// Everything a background start needs, cloned out of the daemon.
struct StartJob {
    /// An older session of this task is still open under the same name: close it first.
    replace: bool,
    home: Home,
    config: Config,
    tmux: Tmux,
    exe: PathBuf,
    task: Task,
    attempt: u32,
    dir: RunDir,
}

impl Daemon {
    /// Claims the task, prepares its run folder, and starts the agent in the background.
    pub(super) fn start(&mut self, task: Task, attempt: u32, claim: bool) -> Option<Event> {
        let id = task.id.clone();
        self.drained = false;
        let mut task = task;
        if claim {
            match self.store.claim(&id) {
                Ok(true) => fault_point("after-claim"),
                Ok(false) => return Some(Event::ClaimLost { id }),
                Err(e) => {
                    tracing::error!(task = id, "cannot claim: {e}");
                    return Some(Event::ClaimLost { id });
                }
            }
            // Run what was claimed, not what the last scan saw: the file may have been
            // edited in between.
            match self.reread(&id) {
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
                .write_all(task.prompt.as_bytes())
        });
        // Watch before the agent can write anything.
        self.watch_run(&id, attempt);
        if let Err(e) = prepared {
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
            attempt,
            dir,
        };
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let event = match job.run().await {
                Ok(()) => Event::Started { id, attempt },
                Err((reason, retry)) => {
                    tracing::warn!(task = id, attempt, "cannot start the agent: {reason}");
                    Event::StartFailed {
                        id,
                        attempt,
                        reason,
                        retry,
                    }
                }
            };
            let _ = tx.send(Internal::Core(Box::new(event)));
        });
        None
    }

    /// The task as its file in `running/` says now.
    fn reread(&self, id: &str) -> Result<Task, String> {
        let path = self.home.task_file(TaskState::Running, id);
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text = String::from_utf8(text)
            .map_err(|_| format!("{}: the file is not valid UTF-8", path.display()))?;
        let task = crate::task::parse(id, &path, &text).map_err(|e| e.to_string())?;
        crate::queue::validate_against_config(&task, &path, &self.config)
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

    pub(super) fn file_finished(
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
        let filed = match self.store.finish(id, from, to, &md) {
            Ok(dst) => {
                dir.log_event(Timestamp::now(), to.as_str(), &report.reason);
                let (event, verdict) = match to {
                    TaskState::Done => (crate::notify::EventKind::Done, "is done"),
                    _ => (crate::notify::EventKind::Failed, "failed"),
                };
                let why = match &report.summary {
                    Some(s) => format!("{}: {s}", report.reason),
                    None => report.reason.clone(),
                };
                self.notify(event, id, format!("nightshift: {id} {verdict}"), why);
                let state = to.as_str();
                tracing::info!(task = id, "{state}: {} ({})", report.reason, dst.display());
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
                false
            }
        };
        // A session in its grace period is still followed: its exit frees the slot.
        if !self.state.owns_session(&tmux::session_name(id)) {
            self.unwatch_run(id, report.attempt);
        }
        if filed {
            // Tasks waiting on this one may start (or fail) now.
            self.step(Event::Filed {
                id: id.to_string(),
                state: to,
            });
        }
    }

    pub(super) fn file_requeued(&mut self, id: &str, report: &Report) {
        let dir = RunDir::new(self.home.run_dir(id, report.attempt));
        if let Err(e) = dir.write(run::REPORT, report) {
            tracing::warn!(task = id, "cannot save report.json: {e}");
        }
        dir.log_event(Timestamp::now(), "retry", &report.reason);
        if let Err(e) = self.store.requeue(id) {
            tracing::error!(
                task = id,
                "cannot put back in the queue (will try again): {e}"
            );
            self.unfiled.push(Internal::Requeued {
                id: id.to_string(),
                report: Box::new(report.clone()),
            });
        }
        self.unwatch_run(id, report.attempt);
        // Scan now, so the task counts as queued before anything else looks.
        self.scan();
    }
}

impl StartJob {
    /// Checks what can be checked, records the spawn, and creates the session. Errors say
    /// whether another attempt could help.
    async fn run(self) -> Result<(), (String, bool)> {
        let task = &self.task;
        let agent = task
            .agent
            .clone()
            .unwrap_or_else(|| self.config.default_agent.clone());
        let profile = self.config.profile(&agent).ok_or_else(|| {
            (
                format!("agent `{agent}` is not a profile in config.toml"),
                false,
            )
        })?;
        let workdir = task
            .workdir
            .clone()
            .or_else(|| self.config.workdir.clone())
            .ok_or_else(|| ("no workdir".to_string(), false))?;
        if !workdir.is_dir() {
            return Err((
                format!("workdir {} does not exist", workdir.display()),
                false,
            ));
        }
        let argv = config::expand_argv(
            profile,
            &config::ArgvVars {
                prompt: &task.prompt,
                prompt_file: &self.dir.file(run::PROMPT),
                task_id: &task.id,
                workdir: &workdir,
                nightshift: &self.exe,
                hook_settings: &self.dir.file(run::HOOK_SETTINGS),
            },
        )
        .map_err(|e| (e, false))?;
        if profile.uses_hooks() {
            self.dir
                .write(
                    run::HOOK_SETTINGS,
                    &crate::hook::settings(&self.exe, self.dir.path()),
                )
                .map_err(|e| (format!("cannot write the hook settings: {e}"), true))?;
        }
        let path_var = agent_path(&self.exe);
        let program = argv.first().cloned().unwrap_or_default();
        if find_program(&program, &path_var).is_none() {
            return Err((
                format!(
                    "agent `{agent}`: `{program}` was not found on PATH ({})",
                    path_var.to_string_lossy()
                ),
                false,
            ));
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
        ];
        env.extend(profile.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));

        let record = SpawnRecord {
            task_id: task.id.clone(),
            attempt: self.attempt,
            agent,
            argv,
            workdir: workdir.clone(),
            env: env.clone(),
            session: session.clone(),
            claimed_at: Timestamp::now(),
            git_head: git::head(&workdir).await,
        };
        self.dir
            .write(run::SPAWN, &record)
            .map_err(|e| (format!("cannot write spawn.json: {e}"), true))?;

        let wrapper: Vec<OsString> = vec![
            self.exe.clone().into(),
            "__wrap".into(),
            self.dir.path().into(),
        ];
        let transcript = self.dir.transcript();
        let died_channel = tmux::died_channel(&session, self.attempt);
        let spec = SessionSpec {
            died_channel: &died_channel,
            name: &session,
            task_id: &task.id,
            workdir: &workdir,
            env: &env,
            argv: &wrapper,
            transcript: &transcript,
            width: self.config.pane_width,
            height: self.config.pane_height,
        };
        if self.replace {
            let _ = self.tmux.kill_session(&session).await;
        }
        let spawned = match self.tmux.spawn_session(&spec).await {
            Err(TmuxError::Failed { stderr, .. }) if stderr.contains("duplicate session") => {
                // A leftover from an earlier attempt: it is ours to replace.
                let _ = self.tmux.kill_session(&session).await;
                self.tmux.spawn_session(&spec).await
            }
            Err(TmuxError::Failed { stderr, .. }) if stderr.contains("server exited") => {
                // The server was shutting down (someone killed it); the next one starts fresh.
                self.tmux.spawn_session(&spec).await
            }
            other => other,
        }
        .map_err(|e| (e.to_string(), true))?;
        self.dir.log_event(
            Timestamp::now(),
            "spawned",
            &format!(
                "session {session}, pane {} (pid {})",
                spawned.pane_id, spawned.pane_pid
            ),
        );
        tracing::info!(task = task.id, attempt = self.attempt, session, "started");
        Ok(())
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
    let finished_at = Timestamp::now();
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
        duration_secs: started_at.map(|s| finished_at.duration_since(s).as_secs_f64()),
        commits,
        transcript: Some(dir.transcript()),
    }
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
