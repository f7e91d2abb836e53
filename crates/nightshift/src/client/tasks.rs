//! The actions a person takes on one task, or on the queue: type into an agent, cancel,
//! retry, acknowledge its flags, pause. Each says what it did, for the CLI to print and the
//! dashboard to show.

use jiff::Timestamp;

use crate::exit::{self, CliError};
use crate::home::{Home, TaskState};
use crate::ipc::{IpcError, Request, Response};
use crate::report::Report;
use crate::run::{self, AckRecord, RunDir};
use crate::tasks;
use crate::tmux::{self, Tmux};
use nightshift_store::{Store, fsutil};

use super::{load_config, request, runtime};

/// The session of a running task, or a clear error.
pub fn running_session(home: &Home, id: &str) -> anyhow::Result<String> {
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

/// The host a running task runs on, when that is another host of a shared store: a person
/// here reaches its agent through that host's daemon.
pub fn runs_elsewhere(home: &Home, id: &str) -> anyhow::Result<Option<String>> {
    let config = load_config(home)?;
    let store = tasks::open(home);
    if !store.shared() {
        return Ok(None);
    }
    let entry = tasks::call("entry", store.entry(id))?;
    Ok(entry
        .filter(|e| e.state == TaskState::Running)
        .and_then(|e| e.host)
        .filter(|host| *host != config.host))
}

/// The command that attaches to a session on another host of the fleet: `ssh HOST -t tmux
/// -S SOCKET attach -t SESSION`, with the socket that host's daemon registered.
pub fn remote_attach(home: &Home, host: &str, session: &str) -> anyhow::Result<String> {
    let store = tasks::open(home);
    let socket = match store.postgres() {
        Some(pg) => tasks::call("hosts", async {
            pg.hosts().await.map_err(nightshift_store::StoreError::from)
        })?
        .into_iter()
        .find(|h| h.name == host)
        .and_then(|h| h.tmux_socket)
        .filter(|s| !s.is_empty()),
        None => None,
    };
    let mut words = vec!["ssh", host, "-t", "tmux"];
    if let Some(socket) = &socket {
        words.extend(["-S", socket]);
    }
    words.extend(["attach", "-t", session]);
    let quoted: Vec<String> = words.iter().map(|w| tmux::shell_word(w)).collect();
    Ok(format!(
        "`{session}` runs on {host}; attach with:\n  {}",
        quoted.join(" ")
    ))
}

/// Leaves a request for the daemon of `host`, which runs the task.
fn relay(home: &Home, host: &str, request: nightshift_store::Relayed) -> anyhow::Result<()> {
    let store = tasks::open(home);
    tasks::call("relay", store.relay(host, &request))?;
    Ok(())
}

/// Types a line into a running agent (for the CLI and the dashboard); one on another host
/// of a shared store is typed by that host's daemon.
pub fn send_text(home: &Home, id: &str, text: &str) -> anyhow::Result<String> {
    let config = load_config(home)?;
    let session = running_session(home, id)?;
    if let Some(host) = runs_elsewhere(home, id)? {
        let request = nightshift_store::Relayed::Send {
            id: id.to_string(),
            text: text.to_string(),
        };
        relay(home, &host, request)?;
        return Ok(format!("sent to {id} (its daemon on {host} types it)"));
    }
    let tmux = Tmux::new(&config.tmux_socket);
    let removed = runtime()?
        .block_on(tmux.send_line(&session, text))
        .map_err(|e| CliError::new(exit::FAILURE, format!("cannot type into {session}: {e}")))?;
    // For the night report: a person answered. Only that they did, not what they typed.
    if let Some(&attempt) = run::attempts(&home.task_runs(id)).last() {
        RunDir::new(home.run_dir(id, attempt)).log_event(
            Timestamp::now(),
            run::SENT_EVENT,
            "a person typed a line",
        );
    }
    // Say so when the text was changed: the agent did not get exactly what was typed.
    let note = nightshift_core::delivery::removed_note(" (the text", removed)
        .map(|n| format!("{n})"))
        .unwrap_or_default();
    Ok(format!("sent to {id}{note}"))
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
                    format!(
                        "`{id}` just left the queue; run `{}` again",
                        super::hint::command(home, &format!("cancel {id}"))
                    ),
                )
                .into());
            }
            Ok(format!("cancelled {id} (it had not started)"))
        }
        Some(TaskState::Running) => {
            if let Some(host) = runs_elsewhere(home, id)? {
                relay(
                    home,
                    &host,
                    nightshift_store::Relayed::Cancel { id: id.to_string() },
                )?;
                return Ok(format!("cancelling {id} (its daemon on {host} stops it)"));
            }
            let socket = home.checked_socket()?;
            match runtime()?.block_on(request(&socket, &Request::Cancel { id: id.to_string() })) {
                Ok(Response::Ok { message }) => Ok(message),
                Ok(Response::Error { message }) => Err(CliError::new(exit::FAILURE, message).into()),
                Ok(other) => Err(CliError::new(exit::FAILURE, format!("unexpected answer: {other:?}")).into()),
                Err(IpcError::NotRunning) => Err(CliError::new(
                    exit::NOT_RUNNING,
                    format!(
                        "`{id}` is running, and only the daemon can stop it, but the daemon is not running (start it with `{}`)",
                        super::hint::command(home, "daemon")
                    ),
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

/// Pauses or resumes the queue and says what changed (for the CLI and the dashboard).
pub fn set_paused(home: &Home, paused: bool) -> anyhow::Result<String> {
    home.ensure_layout()?;
    let changed = tasks::call(
        "set_paused",
        tasks::open(home).set_paused(paused, Timestamp::now()),
    )?;
    Ok(match (paused, changed) {
        (true, _) => format!(
            "paused: running agents go on, nothing new starts (`{}` to go on)",
            super::hint::command(home, "resume")
        ),
        (false, true) => "resumed".into(),
        (false, false) => "the queue was not paused".into(),
    })
}

/// Acknowledges a task's flags and says so (for the CLI and the dashboard).
pub fn ack_task(home: &Home, id: &str) -> anyhow::Result<String> {
    match tasks::locate(home, id)? {
        None => return Err(CliError::not_found(id).into()),
        Some(TaskState::Running) => {}
        Some(state) => {
            return Err(CliError::new(
                exit::FAILURE,
                format!("task `{id}` is {}, not running", state.as_str()),
            )
            .into());
        }
    }
    let Some(&attempt) = run::attempts(&home.task_runs(id)).last() else {
        return Err(
            CliError::new(exit::FAILURE, format!("task `{id}` has not started yet")).into(),
        );
    };
    let dir = RunDir::new(home.run_dir(id, attempt));
    let json = serde_json::to_vec_pretty(&AckRecord {
        at: Timestamp::now(),
    })?;
    fsutil::write_atomic(&dir.file(run::ACK), &json, 0o600)?;
    Ok(match super::daemon_status(home) {
        Ok(Some(_)) => format!("acknowledged {id}"),
        Ok(None) => {
            format!("acknowledged {id}; the daemon is not running, and starts with fresh flags")
        }
        Err(e) => format!("acknowledged {id}; {e}"),
    })
}
