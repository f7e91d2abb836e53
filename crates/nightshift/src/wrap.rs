//! The process each tmux pane runs: `nightshift __wrap <run-dir>`.
//!
//! It starts the agent from the argv in `spawn.json` (so the prompt never passes through
//! tmux or a shell), records that the agent started, waits for it, and records how it ended
//! in `exit.json`. The daemon learns both from file events, and a restarted daemon finds them
//! on disk, so an exit is never lost even while the daemon is down.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use rustix::process::Signal;

use jiff::Timestamp;

use crate::run::{self, ExitRecord, RunDir, SpawnRecord, StartedRecord};

/// Runs the agent of the attempt in `run_dir`; returns the exit code for the pane.
pub fn run(run_dir: &Path) -> i32 {
    let dir = RunDir::new(run_dir);
    let spawn: SpawnRecord = match dir.read(run::SPAWN) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return fail(
                &dir,
                format!("{} is missing", dir.file(run::SPAWN).display()),
            );
        }
        Err(e) => return fail(&dir, e.to_string()),
    };
    let Some((program, args)) = spawn.argv.split_first() else {
        return fail(&dir, "the agent command is empty".into());
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&dir, format!("cannot start: {e}")),
    };
    runtime.block_on(supervise(&dir, &spawn, program, args))
}

/// How long the pane's terminal stays open after the agent exited.
const LINGER: Duration = Duration::from_millis(200);

/// How long an agent may take to exit after its session was closed, before it is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(5);

async fn supervise(dir: &RunDir, spawn: &SpawnRecord, program: &str, args: &[String]) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers (unlike SIG_IGN) are reset in the child by exec, so the agent still gets the
    // terminal's Ctrl-C and Ctrl-\ itself; the wrapper only has to outlive it.
    let mut hangup = signal(SignalKind::hangup()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    let _interrupt = signal(SignalKind::interrupt()).ok();
    let _quit = signal(SignalKind::quit()).ok();

    // nightshift runs under umask 077; the agent's files in the worktree are the user's.
    let umask = spawn
        .env
        .iter()
        .find(|(k, _)| k == crate::privacy::USER_UMASK_ENV)
        .and_then(|(_, v)| crate::privacy::parse_umask(v))
        .unwrap_or_else(crate::privacy::user_umask);
    crate::privacy::restore_user_umask(umask);
    // The environment goes on the agent itself: tmux replaces some variables given with
    // `new-session -e` (PATH among them) with the tmux client's own.
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(spawn.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spawn.workdir);
    if let Some(path) = &spawn.stdin_file {
        // The profile reads its prompt from stdin.
        match std::fs::File::open(path) {
            Ok(f) => {
                command.stdin(f);
            }
            Err(e) => return fail(dir, format!("cannot open {}: {e}", path.display())),
        }
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return fail(dir, format!("cannot run `{program}`: {e}")),
    };
    let started = StartedRecord {
        pid: child.id().unwrap_or(0),
        at: Timestamp::now(),
    };
    if let Err(e) = dir.write(run::STARTED, &started) {
        let _ = writeln!(
            std::io::stderr(),
            "nightshift: cannot record the start: {e}"
        );
    }

    // When tmux closes the session, the kernel sends SIGHUP to the pane's process (this
    // wrapper) only. Pass it on to the agent's whole process group, and kill what is left
    // if it does not go.
    let mut forwarded: Option<tokio::time::Instant> = None;
    let status = loop {
        let kill_at = forwarded.map(|at| at + HANGUP_GRACE);
        tokio::select! {
            status = child.wait() => break status,
            Some(()) = recv(&mut hangup), if forwarded.is_none() => {
                forward(Signal::HUP);
                forwarded = Some(tokio::time::Instant::now());
            }
            Some(()) = recv(&mut terminate), if forwarded.is_none() => {
                forward(Signal::TERM);
                forwarded = Some(tokio::time::Instant::now());
            }
            () = sleep_until(kill_at) => {
                // Only the agent itself: SIGKILL to the group would take the wrapper too, and
                // then nobody records the exit.
                let _ = child.start_kill();
                forwarded = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
        }
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => return fail(dir, format!("lost the agent process: {e}")),
    };
    let record = ExitRecord {
        code: status.code(),
        signal: status.signal(),
        error: None,
        at: Timestamp::now(),
        hangup: forwarded.is_some(),
    };
    // Record first: the terminal may be gone, and printing must not stop that.
    if let Err(e) = dir.write(run::EXIT, &record) {
        let _ = writeln!(std::io::stderr(), "nightshift: cannot record the exit: {e}");
    }
    let _ = writeln!(std::io::stdout(), "\n[nightshift] {}", record.describe());
    // Keep the terminal open a moment: tmux drops output it had not read yet when the last
    // process on a pane's terminal exits (seen with agents that print and exit at once).
    tokio::time::sleep(LINGER).await;
    status.code().unwrap_or(128 + status.signal().unwrap_or(0))
}

async fn recv(sig: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Signals every process in the pane's process group (the agent and its children). The
/// wrapper is in the group too; its handlers keep it alive, and it forwards only once.
fn forward(sig: Signal) {
    let _ = rustix::process::kill_current_process_group(sig);
}

/// The agent could not be started: say so in the pane and on disk.
fn fail(dir: &RunDir, error: String) -> i32 {
    let _ = writeln!(std::io::stderr(), "[nightshift] {error}");
    let record = ExitRecord {
        code: None,
        signal: None,
        error: Some(error),
        at: Timestamp::now(),
        hangup: false,
    };
    if let Err(e) = dir.write(run::EXIT, &record) {
        let _ = writeln!(
            std::io::stderr(),
            "nightshift: cannot record the failure: {e}"
        );
    }
    127
}
