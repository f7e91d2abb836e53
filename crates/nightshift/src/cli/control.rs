//! Commands that act on one task: attach, send, cancel, retry, done.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use jiff::Timestamp;

use crate::home::{Home, TaskState};
use crate::ipc::{self, IpcError, Request, Response};
use crate::report::Report;
use crate::run::{self, DoneRecord, DoneSource, RunDir};
use crate::tasks;
use crate::tmux::{self, Tmux};
use nightshift_store::{Store, fsutil};

use super::{CliError, exit, load_config, runtime};

/// The session of a running task, or a clear error.
fn running_session(home: &Home, id: &str) -> anyhow::Result<String> {
    match tasks::locate(home, id)? {
        None => Err(CliError::not_found(id).into()),
        Some(TaskState::Running) => Ok(tmux::session_name(id)),
        Some(state) => Err(CliError::new(
            exit::FAILURE,
            format!("task `{id}` is {}, not running", state.as_str()),
        )
        .into()),
    }
}

pub fn attach(home: &Home, id: &str) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    let session = running_session(home, id)?;
    let tmux = Tmux::new(&config.tmux_socket);
    // Replace this process: the terminal belongs to tmux until the user detaches.
    let err = tmux.attach_command(&session).exec();
    Err(CliError::new(exit::FAILURE, format!("cannot run tmux: {err}")).into())
}

pub fn send(home: &Home, id: &str, text: &str) -> anyhow::Result<i32> {
    println!("{}", send_text(home, id, text)?);
    Ok(exit::SUCCESS)
}

/// Types a line into a running agent (for the CLI and the dashboard).
pub fn send_text(home: &Home, id: &str, text: &str) -> anyhow::Result<String> {
    let config = load_config(home)?;
    let session = running_session(home, id)?;
    let tmux = Tmux::new(&config.tmux_socket);
    let removed = runtime()?
        .block_on(tmux.send_line(&session, text))
        .map_err(|e| CliError::new(exit::FAILURE, format!("cannot type into {session}: {e}")))?;
    // Say so when the text was changed: the agent did not get exactly what was typed.
    let note = nightshift_core::delivery::removed_note(" (the text", removed)
        .map(|n| format!("{n})"))
        .unwrap_or_default();
    Ok(format!("sent to {id}{note}"))
}

pub fn cancel(home: &Home, id: &str) -> anyhow::Result<i32> {
    println!("{}", cancel_task(home, id)?);
    Ok(exit::SUCCESS)
}

/// Cancels a task and says what happened (for the CLI and the dashboard).
pub fn cancel_task(home: &Home, id: &str) -> anyhow::Result<String> {
    home.ensure_layout()?;
    match tasks::locate(home, id)? {
        None => Err(CliError::not_found(id).into()),
        Some(TaskState::Queued) => {
            let report = Report::before_start(id, "cancelled by user before it started");
            let report = report.to_markdown(&[]);
            if !tasks::call("cancel", tasks::open(home).cancel(id, &report))? {
                return Err(CliError::new(
                    exit::FAILURE,
                    format!("`{id}` just left the queue; run `nightshift cancel {id}` again"),
                )
                .into());
            }
            Ok(format!("cancelled {id} (it had not started)"))
        }
        Some(TaskState::Running) => {
            let socket = home.checked_socket()?;
            match runtime()?.block_on(ipc::request(&socket, &Request::Cancel { id: id.to_string() })) {
                Ok(Response::Ok { message }) => Ok(message),
                Ok(Response::Error { message }) => Err(CliError::new(exit::FAILURE, message).into()),
                Ok(other) => Err(CliError::new(exit::FAILURE, format!("unexpected answer: {other:?}")).into()),
                Err(IpcError::NotRunning) => Err(CliError::new(
                    exit::NOT_RUNNING,
                    format!("`{id}` is running, and only the daemon can stop it, but the daemon is not running (start it with `nightshift daemon`)"),
                )
                .into()),
                Err(e) => Err(e.into()),
            }
        }
        Some(state) => Err(CliError::new(
            exit::FAILURE,
            format!("task `{id}` already finished ({})", state.as_str()),
        )
        .into()),
    }
}

pub fn retry(home: &Home, id: &str) -> anyhow::Result<i32> {
    println!("{}", retry_task(home, id)?);
    Ok(exit::SUCCESS)
}

/// Queues a finished task again and says so (for the CLI and the dashboard).
pub fn retry_task(home: &Home, id: &str) -> anyhow::Result<String> {
    home.ensure_layout()?;
    let state = tasks::locate(home, id)?.ok_or_else(|| CliError::not_found(id))?;
    if !matches!(state, TaskState::Done | TaskState::Failed) {
        return Err(CliError::new(
            exit::FAILURE,
            format!(
                "task `{id}` is {}; only done or failed tasks can be retried",
                state.as_str()
            ),
        )
        .into());
    }
    match tasks::call("retry", tasks::open(home).retry(id))? {
        Some(next) => Ok(format!("queued {id} again (attempt {next} next)")),
        None => Err(CliError::new(
            exit::FAILURE,
            format!("`{id}` just changed state; try again"),
        )
        .into()),
    }
}

#[derive(Debug, clap::Args)]
pub struct DoneArgs {
    /// The task failed
    #[arg(long)]
    pub fail: bool,
    /// What was done, for the report
    #[arg(long, allow_hyphen_values = true)]
    pub summary: Option<String>,
}

/// Run by the agent inside its pane: records done in the run folder. The daemon sees the
/// file appear; if it is down, it finds the record when it starts.
pub fn done(args: DoneArgs) -> anyhow::Result<i32> {
    let dir = std::env::var_os("NIGHTSHIFT_RUN_DIR").map(PathBuf::from).ok_or_else(|| {
        CliError::new(exit::USAGE, "`nightshift done` is for agents inside a nightshift session (NIGHTSHIFT_RUN_DIR is not set)")
    })?;
    let dir = RunDir::new(dir);
    if !dir.path().is_dir() {
        return Err(CliError::new(
            exit::FAILURE,
            format!("{} does not exist", dir.path().display()),
        )
        .into());
    }
    let record = DoneRecord {
        ok: !args.fail,
        summary: args.summary,
        source: DoneSource::Command,
        at: Timestamp::now(),
    };
    let json = serde_json::to_vec_pretty(&record)?;
    match write_done(&dir.file(run::DONE), &json) {
        Ok(()) => {
            let task = std::env::var("NIGHTSHIFT_TASK_ID").unwrap_or_default();
            println!(
                "nightshift: recorded {} for {task}",
                if record.ok { "done" } else { "failed" }
            );
            Ok(exit::SUCCESS)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            println!("nightshift: done was already recorded for this run");
            Ok(exit::SUCCESS)
        }
        Err(e) if fsutil::is_disk_full(&e) => Err(CliError::new(
            exit::FAILURE,
            format!(
                "nightshift: done was NOT recorded: cannot write {}: {e} (tried for {}s). Free space on that disk, then run `nightshift done` again.",
                dir.file(run::DONE).display(),
                DONE_RETRY_FOR.as_secs()
            ),
        )
        .into()),
        Err(e) => Err(CliError::new(
            exit::FAILURE,
            format!("{}: {e}", dir.file(run::DONE).display()),
        )
        .into()),
    }
}

/// How long `nightshift done` keeps trying while the disk is full: the agent waits anyway,
/// and a lost done signal costs the whole attempt.
const DONE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes `done.json`, trying again with backoff while the disk is full.
fn write_done(path: &std::path::Path, json: &[u8]) -> std::io::Result<()> {
    let start = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        match fsutil::write_new_atomic(path, json, 0o600) {
            Err(e) if fsutil::is_disk_full(&e) && start.elapsed() < DONE_RETRY_FOR => {
                if wait == std::time::Duration::from_millis(100) {
                    eprintln!(
                        "nightshift: cannot write {}: {e}; trying again for up to {}s",
                        path.display(),
                        DONE_RETRY_FOR.as_secs()
                    );
                }
                let left = DONE_RETRY_FOR.saturating_sub(start.elapsed());
                std::thread::sleep(wait.min(left));
                wait = (wait * 2).min(std::time::Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// `pause` / `resume`: the `paused` file in the home is the state, so this works with or
/// without the daemon, and a pause survives restarts.
pub fn pause(home: &Home, paused: bool) -> anyhow::Result<i32> {
    println!("{}", set_paused(home, paused)?);
    Ok(exit::SUCCESS)
}

/// Pauses or resumes the queue and says what changed (for the CLI and the dashboard).
pub fn set_paused(home: &Home, paused: bool) -> anyhow::Result<String> {
    home.ensure_layout()?;
    let file = home.paused_file();
    if paused {
        let at = Timestamp::now().to_string();
        fsutil::write_atomic(&file, at.as_bytes(), 0o600)?;
        Ok(
            "paused: running agents go on, nothing new starts (`nightshift resume` to go on)"
                .into(),
        )
    } else {
        match std::fs::remove_file(&file) {
            Ok(()) => Ok("resumed".into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok("the queue was not paused".into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
