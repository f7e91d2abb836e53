//! Commands that act on one task: attach, send, cancel, retry, done.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use jiff::Timestamp;

use crate::client::{cancel_task, running_session, send_text, set_paused};
use crate::home::Home;
use crate::out::outln;
use crate::run::{self, DoneRecord, DoneSource, RunDir};
use crate::tmux::Tmux;
use nightshift_store::fsutil;

use super::{CliError, exit, load_config};

pub(super) fn attach(home: &Home, id: &str) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    let session = running_session(home, id)?;
    if let Some(host) = crate::client::runs_elsewhere(home, id)? {
        // Its terminal is on that host: say how to reach it rather than guess at ssh.
        outln!("{}", crate::client::remote_attach(home, &host, &session)?)?;
        return Ok(exit::SUCCESS);
    }
    let tmux = Tmux::new(&config.tmux_socket);
    // Replace this process: the terminal belongs to tmux until the user detaches.
    let err = tmux.attach_command(&session).exec();
    Err(CliError::new(exit::FAILURE, format!("cannot run tmux: {err}")).into())
}

pub(super) fn send(home: &Home, id: &str, text: &str) -> anyhow::Result<i32> {
    outln!("{}", send_text(home, id, text)?)?;
    Ok(exit::SUCCESS)
}

pub(super) fn cancel(home: &Home, id: &str) -> anyhow::Result<i32> {
    outln!("{}", cancel_task(home, id)?)?;
    Ok(exit::SUCCESS)
}

/// `resume-limited`: the daemon lifts the hold now.
pub(super) fn resume_limited(home: &Home, profile: Option<String>) -> anyhow::Result<i32> {
    use crate::ipc::{IpcError, Request, Response};
    let socket = home.checked_socket()?;
    let rt = super::runtime()?;
    match rt.block_on(crate::client::request(
        &socket,
        &Request::ResumeLimited { profile },
    )) {
        Ok(Response::Ok { message }) => {
            outln!("{message}")?;
            Ok(exit::SUCCESS)
        }
        Ok(Response::Error { message }) => Err(CliError::new(exit::FAILURE, message).into()),
        Ok(other) => {
            Err(CliError::new(exit::FAILURE, format!("unexpected answer: {other:?}")).into())
        }
        Err(IpcError::NotRunning) => Err(CliError::new(
            exit::NOT_RUNNING,
            format!(
                "the daemon is not running: holds lift when it runs (start it with `{}`)",
                crate::client::hint::command(home, "daemon")
            ),
        )
        .into()),
        Err(e) => Err(e.into()),
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
pub(super) fn done(args: DoneArgs) -> anyhow::Result<i32> {
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
            outln!(
                "nightshift: recorded {} for {task}",
                if record.ok { "done" } else { "failed" }
            )?;
            Ok(exit::SUCCESS)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            outln!("nightshift: done was already recorded for this run")?;
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
pub(super) fn pause(home: &Home, paused: bool) -> anyhow::Result<i32> {
    outln!("{}", set_paused(home, paused)?)?;
    Ok(exit::SUCCESS)
}
