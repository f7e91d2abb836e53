//! Tying checks to the daemon's life: the guard a check starts through, and the next
//! daemon's kill of what a dead one left running.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// The hidden subcommand that runs [`guard`].
pub const GUARD_COMMAND: &str = "__check-guard";

/// `nightshift __check-guard DAEMON_PID -- PROGRAM ARGS…`: arranges to be killed when the
/// daemon dies, then becomes PROGRAM (the same process, so the same process group). Only
/// the shell itself is reached this way; what it started is killed by [`kill_recorded`]
/// when the next daemon starts. Returns an exit code when PROGRAM cannot be run.
pub fn guard(daemon: u32, argv: &[std::ffi::OsString]) -> i32 {
    use std::os::unix::process::CommandExt;
    // The signal comes when the thread that started this process ends: one of the daemon's
    // runtime workers, which live as long as the daemon does.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
        eprintln!("nightshift: cannot tie the check to the daemon: {e}");
        return 126;
    }
    // The daemon may have died before the signal was set: then nothing would come.
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if parent.and_then(|p| u32::try_from(p).ok()) != Some(daemon) {
        eprintln!("nightshift: the daemon (pid {daemon}) is gone; not running the check");
        return 126;
    }
    let Some((program, args)) = argv.split_first() else {
        eprintln!("nightshift: {GUARD_COMMAND}: no program to run");
        return 2;
    };
    // Recorded here, before the check can start anything: a daemon killed right after the
    // spawn, before it could write the record itself, still leaves it for the next one
    // ([`kill_recorded`]). This process leads the group and becomes the shell.
    if let Some(record) = std::env::var_os(CHECK_ENV) {
        let pid = std::process::id();
        let record = Path::new(&record);
        if let Err(e) =
            nightshift_store::fsutil::write_atomic(record, format!("{pid}\n").as_bytes(), 0o600)
        {
            eprintln!(
                "nightshift: cannot record the check's process group in {}: {e}",
                record.display()
            );
            return 126;
        }
    }
    let error = std::process::Command::new(program).args(args).exec();
    eprintln!(
        "nightshift: cannot run {}: {error}",
        program.to_string_lossy()
    );
    127
}

/// The environment variable naming a recorded check's record file, in each of its processes.
pub(super) const CHECK_ENV: &str = "NIGHTSHIFT_CHECK";

/// How long [`kill_recorded`] waits for a killed group to be gone.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Kills the process group a check left running when its daemon died (recorded by
/// [`super::run_commands_recorded`] in `record`), waits until it is gone, and removes the record.
/// Only processes that carry the record in their environment count, so a group id reused
/// since is never killed. Returns how many kills it sent.
pub async fn kill_recorded(record: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(record) else {
        return 0;
    };
    let mark = format!("{CHECK_ENV}={}", record.to_string_lossy());
    let members = || {
        text.trim()
            .parse::<i32>()
            .ok()
            .and_then(Pid::from_raw)
            .map(|pgid| group_members(pgid, &mark))
            .unwrap_or_default()
    };
    let started = Instant::now();
    let mut killed = 0;
    loop {
        let live = members();
        if live.is_empty() || started.elapsed() > KILL_WAIT {
            break;
        }
        // Again each round: a member may have started another before it died.
        for pid in &live {
            // ESRCH: gone already.
            let _ = rustix::process::kill_process(*pid, Signal::KILL);
        }
        killed += live.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(record);
    killed
}

/// The live (not zombie) processes in group `pgid` whose environment holds `mark`.
fn group_members(pgid: Pid, mark: &str) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(Pid::from_raw)
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
            else {
                return false;
            };
            // After the parenthesised command name: state, ppid, pgrp.
            let mut fields = stat
                .rsplit_once(')')
                .map(|(_, r)| r)
                .unwrap_or("")
                .split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
            state != "Z" && state != "X" && pgrp == Some(pgid.as_raw_nonzero().get())
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{}/environ", pid.as_raw_nonzero()))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == mark.as_bytes()))
        })
        .collect()
}
