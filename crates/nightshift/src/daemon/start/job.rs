//! The background half of a start: checks, the task's worktree, the spawn record, and the
//! agent's tmux session.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::{RESUME_MESSAGE, StartJob, TypedPrompt};
use crate::config;
use crate::daemon::check::failure_line;
use crate::git;
use crate::run::{self, RunDir, SpawnRecord};
use crate::tmux::{self, SessionSpec, TmuxError};
use nightshift_core::start::StartError;

impl StartJob {
    /// Checks what can be checked, records the spawn, and creates the session; returns the
    /// prompt still to type, if the agent takes it typed. Errors say whether another attempt
    /// could help.
    pub(super) async fn run(self) -> Result<Option<TypedPrompt>, StartError> {
        let task = &self.task;
        let agent = task
            .agent
            .clone()
            .unwrap_or_else(|| self.config.default_agent.clone());
        let profile = self.config.profile(&agent).ok_or_else(|| {
            StartError::lasting(format!("agent `{agent}` is not a profile in config.toml"))
        })?;
        let (worktree, workdir) = match &task.repo {
            Some(url) => {
                let wt = self.remote_worktree(url).await?;
                let workdir = wt.workdir.clone();
                (Some(wt), workdir)
            }
            None => {
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
                (worktree, workdir)
            }
        };
        // Which agent CLI it is decides what `{hook_settings}` holds and where trust is kept.
        let dialect = crate::hook::Dialect::for_agent(
            profile.command.first().map_or("", String::as_str),
            &agent,
        );
        if let Some(wt) = &worktree
            && profile.trust_worktrees
            && let Err(e) = crate::agent_trust::trust_worktree(
                profile.command.first().map_or("", String::as_str),
                &wt.path,
                &self.agent_env(profile),
            )
        {
            tracing::warn!(task = task.id, "cannot mark the worktree trusted: {e}");
        }
        // A resume continues the agent's own session, when the last attempt left one.
        let resume = self.take_resume(profile)?;
        // A follow-up continues the earlier task's agent session, with its own prompt.
        let continued = match (&resume, &task.continues) {
            (None, Some(earlier)) if !profile.resume_command.is_empty() => {
                crate::followup::earlier_session(&self.home, earlier, &agent)
            }
            _ => None,
        };
        let resumes = resume.is_some() || continued.is_some();
        let template = if resumes {
            &profile.resume_command
        } else {
            &profile.command
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
            hook_settings: &self.dir.file(dialect.settings_file()),
            session_id: resume
                .as_ref()
                .map(|r| r.session_id.as_str())
                .or(continued.as_deref())
                .unwrap_or(""),
            run_dir: self.dir.path(),
        };
        let via_argv = profile.prompt == config::PromptVia::Argument || resumes;
        let argv = config::expand_argv(template, &vars, via_argv).map_err(StartError::lasting)?;
        if profile.uses_hooks() {
            nightshift_store::fsutil::write_atomic(
                &self.dir.file(dialect.settings_file()),
                &dialect.settings_contents(&self.exe, self.dir.path()),
                0o600,
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
        let typed = profile.prompt == config::PromptVia::Typed && !resumes;
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
            stdin_file: (profile.prompt == config::PromptVia::Stdin && !resumes)
                .then(|| self.dir.file(run::PROMPT)),
            resumed_session: resume.as_ref().map(|r| r.session_id.clone()).or(continued),
            worktree,
            prompt_note,
            typed_prompt: typed,
            // A `repo:` task's branch is pushed after every check round already.
            landing: task
                .repo
                .is_none()
                .then(|| self.config.landing(task))
                .flatten(),
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
            attempt: self.attempt,
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
        let prepared = crate::worktree::prepare_pooled(
            workdir,
            &root,
            &task.id,
            base.as_deref(),
            self.config.worktree_pool,
        )
        .await
        .map_err(|e| StartError::lasting(format!("cannot create the task's worktree: {e}")))?;
        let wt = prepared.worktree;
        if prepared.warm {
            self.dir
                .log_event(Timestamp::now(), "worktree", "claimed from the warm pool");
        }
        if wt.created {
            self.set_up(&wt).await?;
        }
        Ok(Some(wt))
    }

    /// A new worktree: noted, its included files copied (from a local checkout; a mirror
    /// has none) and its setup run.
    pub(super) async fn set_up(&self, wt: &crate::worktree::Worktree) -> Result<(), StartError> {
        let task = &self.task;
        self.dir.log_event(
            Timestamp::now(),
            "worktree",
            &format!("{} on {} from {}", wt.path.display(), wt.branch, wt.base),
        );
        if wt.remote.is_none() {
            match crate::worktree::copy_included(wt).await {
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
        Ok(())
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
