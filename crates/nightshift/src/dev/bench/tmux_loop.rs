//! The floor under the drain: a bare loop of `tmux new-session -d`, each session running a
//! trivial command to its end, on a private tmux server. A drain cannot beat it, since every
//! task is at least one such session.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dev::sandbox;
use crate::out::outln;

use super::drain::{last_pid, pids_between};

pub(super) struct Loop {
    pub(super) sessions: u32,
    pub(super) elapsed: Duration,
    pub(super) processes: Option<u64>,
}

impl Loop {
    pub(super) fn rate(&self) -> f64 {
        self.sessions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn tmux(socket: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["-f", "/dev/null"])
        .args(args)
        .env_remove("TMUX")
        .stdin(Stdio::null())
        .output()?)
}

fn sessions_left(socket: &Path) -> anyhow::Result<usize> {
    let out = tmux(socket, &["list-sessions", "-F", "x"])?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// `sessions` sessions one after the other, then until the last one's command has ended.
pub(super) fn run(dir: &Path, sessions: u32) -> anyhow::Result<Loop> {
    let socket = dir.join("bare-loop.sock");
    // A server that stays up with no sessions, so each new-session is only a session.
    let up = tmux(
        &socket,
        &["start-server", ";", "set-option", "-g", "exit-empty", "off"],
    )?;
    anyhow::ensure!(
        up.status.success(),
        "cannot start a tmux server: {}",
        String::from_utf8_lossy(&up.stderr).trim()
    );
    let result = (|| {
        let pid_before = last_pid();
        let start = Instant::now();
        for _ in 0..sessions {
            sandbox::check_interrupted()?;
            let out = tmux(&socket, &["new-session", "-d", "true"])?;
            anyhow::ensure!(
                out.status.success(),
                "tmux new-session failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        while sessions_left(&socket)? > 0 {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60) + Duration::from_secs(sessions.into()),
                "the bare tmux loop's sessions did not end"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(Loop {
            sessions,
            elapsed: start.elapsed(),
            processes: pids_between(pid_before, last_pid()),
        })
    })();
    let _ = tmux(&socket, &["kill-server"]);
    result
}

pub(super) fn report(l: &Loop) -> std::io::Result<()> {
    outln!(
        "bare tmux loop: {} x `tmux new-session -d true` one after the other on a private \
         server, until every session's command has ended",
        l.sessions
    )?;
    let per = l.processes.map_or(String::new(), |p| {
        format!(
            "; {:.1} processes per session",
            p as f64 / f64::from(l.sessions.max(1))
        )
    });
    outln!(
        "  {:.2} s = {:.1} sessions/s{per}",
        l.elapsed.as_secs_f64(),
        l.rate()
    )?;
    Ok(())
}
