//! Starting an attempt: the claim, its run folder, and the agent's session, started in the
//! background; then the prompt, typed in once the agent is ready.

mod job;
mod ready;
mod repo;
pub use job::find_program;

use std::path::PathBuf;

use jiff::Timestamp;

use super::{Daemon, Internal};
use crate::config::Config;
use crate::home::Home;
use crate::run::{self, RunDir, SpawnRecord};
use crate::tmux::{self, Tmux};
use nightshift_core::Event;
use nightshift_core::start;
use nightshift_core::task::Task;
use nightshift_store::{Store, within};

/// How long a typed prompt waits, past the profile's `type_delay`, for the agent to turn
/// bracketed paste on (see ready.rs).
const READY_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

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
        if !self.pasted {
            ready::wait_for_input(&dir.transcript(), READY_LIMIT).await;
        }
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
        let mut prompt =
            start::prompt_with_preamble(&self.config.preamble, takes_preamble, &task.prompt);
        if let Some(earlier) = &task.continues {
            prompt.push_str(&crate::followup::context(&self.home, earlier));
        }
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
