//! The process each tmux pane runs: `nightshift __wrap <run-dir>`.
//!
//! It starts the agent from the argv in `spawn.json` (so the prompt never passes through
//! tmux or a shell), records that the agent started, waits for it, and records how it ended
//! in `exit.json`. The daemon learns both from file events, and a restarted daemon finds them
//! on disk, so an exit is never lost even while the daemon is down.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

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

    // Keep the wrapper alive through Ctrl-C and hangups so it can record the agent's exit:
    // the terminal delivers those signals to the agent as well, which decides for itself.
    // Handlers (unlike SIG_IGN) are reset in the child by exec.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&dir, format!("cannot start: {e}")),
    };
    let _signals = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        [
            SignalKind::interrupt(),
            SignalKind::hangup(),
            SignalKind::quit(),
            SignalKind::terminate(),
        ]
        .into_iter()
        .filter_map(|k| signal(k).ok())
        .collect::<Vec<_>>()
    });

    let mut child = match Command::new(program)
        .args(args)
        .current_dir(&spawn.workdir)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(&dir, format!("cannot run `{program}`: {e}")),
    };
    let started = StartedRecord {
        pid: child.id(),
        at: Timestamp::now(),
    };
    if let Err(e) = dir.write(run::STARTED, &started) {
        eprintln!("nightshift: cannot record the start: {e}");
    }
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => return fail(&dir, format!("lost the agent process: {e}")),
    };
    let record = ExitRecord {
        code: status.code(),
        signal: status.signal(),
        error: None,
        at: Timestamp::now(),
    };
    println!("\n[nightshift] {}", record.describe());
    if let Err(e) = dir.write(run::EXIT, &record) {
        eprintln!("nightshift: cannot record the exit: {e}");
    }
    status.code().unwrap_or(128 + status.signal().unwrap_or(0))
}

/// The agent could not be started: say so in the pane and on disk.
fn fail(dir: &RunDir, error: String) -> i32 {
    eprintln!("[nightshift] {error}");
    let record = ExitRecord {
        code: None,
        signal: None,
        error: Some(error),
        at: Timestamp::now(),
    };
    if let Err(e) = dir.write(run::EXIT, &record) {
        eprintln!("nightshift: cannot record the failure: {e}");
    }
    127
}
