//! Running a task's user-authored shell commands (`setup:` and `verify:`) with a timeout.
//!
//! Each command runs as `sh -c <command>` in its own process group, so a timeout can kill
//! everything it started, not only the shell. Output (stdout and stderr through one pipe,
//! so they interleave as written) is kept only as a tail for the report.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

mod tied;

use tied::CHECK_ENV;
pub use tied::{GUARD_COMMAND, guard, kill_recorded};

/// How many lines of output a result keeps.
pub const TAIL_LINES: usize = 60;
/// How many bytes of output a result keeps, at most.
pub const TAIL_BYTES: usize = 8 * 1024;

/// After the shell exits, how long its output may take to reach end-of-file before
/// whatever still holds the pipe (a background job) is killed with the group.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// One round of acceptance checks, as saved in `verify-N.json` and in the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerifyRound {
    pub round: u32,
    pub passed: bool,
    pub results: Vec<CommandResult>,
    /// What happened to work the agent left uncommitted, if it left any.
    #[serde(default)]
    pub uncommitted: Option<String>,
    pub at: jiff::Timestamp,
}

/// What one command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command as written in the task.
    pub command: String,
    /// The shell's exit code; `None` when it was killed by a signal (a timeout included)
    /// or could not be started.
    pub exit_code: Option<i32>,
    /// Whether it ran past its timeout and was killed.
    pub timed_out: bool,
    pub duration_ms: u64,
    /// The last [`TAIL_LINES`] lines (at most [`TAIL_BYTES`] bytes) of stdout and stderr
    /// together, decoded lossily, terminal escapes kept. For a command that could not be
    /// started, the error.
    pub output_tail: String,
}

impl CommandResult {
    /// Exited with status 0 in time.
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// How it ended, for a person, without the command or its output: `passed in 2s`,
    /// `exited with code 1 after 5s`, `timed out after 10m and was killed`,
    /// `was killed by signal 9 after 1s`, `could not be started: …`.
    pub fn describe(&self) -> String {
        let took = nightshift_core::duration::format(Duration::from_millis(self.duration_ms));
        if self.timed_out {
            return format!("timed out after {took} and was killed");
        }
        match self.exit_code {
            Some(0) => format!("passed in {took}"),
            Some(code) => format!("exited with code {code} after {took}"),
            None => match signal_note(&self.output_tail) {
                Some(signal) => format!("was killed by signal {signal} after {took}"),
                None => format!("could not be started: {}", self.output_tail.trim()),
            },
        }
    }
}

/// The note added to the output of a shell killed by a signal.
fn signal_marker(signal: i32) -> String {
    format!("\n[killed by signal {signal}]\n")
}

/// The signal from a [`signal_marker`] ending `tail`.
fn signal_note(tail: &str) -> Option<i32> {
    let last = tail.trim_end().lines().last()?;
    last.strip_prefix("[killed by signal ")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Runs `commands` one after another as `sh -c <command>` in `dir`, each with its own
/// `timeout`, with `env` added to the inherited environment and stdin empty.
///
/// Stops at the first command that does not pass: the result holds every command that
/// ran, the failing one last. A command that times out is killed with its whole process
/// group. Background jobs a command leaves behind still holding its output open are
/// killed when the shell exits (they would otherwise hold the result back); ones that
/// detach from the output (`nohup … >log &`) are left running.
pub async fn run_commands(
    commands: &[String],
    dir: &Path,
    timeout: Duration,
    env: &[(String, String)],
) -> Vec<CommandResult> {
    run_commands_recorded(commands, dir, timeout, env, None).await
}

/// How the daemon ties the commands it runs to its own life.
#[derive(Debug, Clone, Copy)]
pub struct Tie<'a> {
    /// The file recording the running command's process group (removed when it ends), so a
    /// daemon started after a crash can kill whatever the last one left: [`kill_recorded`].
    pub record: &'a Path,
    /// The nightshift binary: its `__check-guard` makes the shell die with the daemon
    /// ([`guard`]). The death signal follows the thread that spawned it, so run these only
    /// on the runtime's worker threads (not `spawn_blocking`, whose threads end when idle).
    pub guard: Option<&'a Path>,
}

/// [`run_commands`], tied to the daemon's life by `tie`.
pub async fn run_commands_recorded(
    commands: &[String],
    dir: &Path,
    timeout: Duration,
    env: &[(String, String)],
    tie: Option<Tie<'_>>,
) -> Vec<CommandResult> {
    let mut results = Vec::with_capacity(commands.len());
    for command in commands {
        let result = run_command(command, dir, timeout, env, tie).await;
        let passed = result.passed();
        results.push(result);
        if !passed {
            break;
        }
    }
    results
}

async fn run_command(
    command: &str,
    dir: &Path,
    timeout: Duration,
    env: &[(String, String)],
    tie: Option<Tie<'_>>,
) -> CommandResult {
    let started = Instant::now();
    let finish = |exit_code, timed_out, output_tail| CommandResult {
        command: command.to_string(),
        exit_code,
        timed_out,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        output_tail,
    };
    let mut env = env.to_vec();
    if let Some(tie) = tie {
        // Marks every process of the check, so only they are ever killed by the record.
        env.push((CHECK_ENV.into(), tie.record.to_string_lossy().into_owned()));
    }
    let record = tie.map(|t| t.record);
    let (child, output) = match spawn(command, dir, &env, tie.and_then(|t| t.guard)) {
        Ok(spawned) => spawned,
        Err(e) => {
            let message = format!("cannot run `sh -c` in {}: {e}", dir.display());
            return finish(None, false, message);
        }
    };
    // A guarded check records itself before it runs anything; an unguarded one here.
    let unguarded = tie.is_some_and(|t| t.guard.is_none());
    if let (Some(record), Some(pid), true) = (record, child.id(), unguarded) {
        // The shell leads its own group, so its pid is the group's id.
        if let Err(e) =
            nightshift_store::fsutil::write_atomic(record, format!("{pid}\n").as_bytes(), 0o600)
        {
            tracing::warn!(
                "cannot record the check's process group in {}: {e}",
                record.display()
            );
        }
    }
    let (status, timed_out, mut tail) = supervise(child, output, timeout).await;
    if let Some(record) = record {
        let _ = std::fs::remove_file(record);
    }
    let exit_code = match &status {
        Ok(s) => s.code(),
        Err(_) => None,
    };
    // Without an exit code nothing else would say why it failed.
    if !timed_out {
        match &status {
            Ok(s) => {
                if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(s) {
                    tail.push(signal_marker(signal).as_bytes());
                }
            }
            Err(e) => tail.push(format!("\n[cannot wait for the shell: {e}]\n").as_bytes()),
        }
    }
    finish(exit_code, timed_out, tail.into_string())
}

/// Starts the shell with stdout and stderr on the write end of one pipe, and returns the
/// child and the read end.
fn spawn(
    command: &str,
    dir: &Path,
    env: &[(String, String)],
    guard: Option<&Path>,
) -> io::Result<(Child, pipe::Receiver)> {
    let (reader, writer) = io::pipe()?;
    // Registered before the spawn, so no failure after it can leave a process behind.
    let output = pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let mut cmd = match guard {
        Some(guard) => {
            let mut c = Command::new(guard);
            c.arg(GUARD_COMMAND)
                .arg(rustix::process::getpid().as_raw_nonzero().to_string())
                .arg("--")
                .arg("sh");
            c
        }
        None => Command::new("sh"),
    };
    cmd.arg("-c")
        // nightshift itself runs under umask 077; what a check or setup command creates in
        // the worktree is the user's, with the user's umask.
        .arg(crate::privacy::with_umask(
            command,
            crate::privacy::user_umask(),
        ))
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    // The command holds the parent's copies of the write end: while they are open the
    // reader would never see end-of-file.
    drop(cmd);
    Ok((child, output))
}

/// Waits for the shell (killing its group at the timeout) while collecting its output.
async fn supervise(
    mut child: Child,
    mut output: pipe::Receiver,
    timeout: Duration,
) -> (io::Result<ExitStatus>, bool, Tail) {
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    // If this future is dropped (the task was cancelled) the group must not live on.
    let mut guard = GroupGuard(group);
    let mut tail = Tail::default();
    let (status, timed_out) = {
        let mut reading = pin!(read_into(&mut output, &mut tail));
        let mut read_all = false;
        let mut deadline = pin!(tokio::time::sleep(timeout));
        let (status, timed_out) = loop {
            tokio::select! {
                () = &mut reading, if !read_all => read_all = true,
                status = child.wait() => break (status, false),
                () = &mut deadline => {
                    kill_group(group);
                    break (child.wait().await, true);
                }
            }
        };
        // Reaped: the group id may be reused from now on, so only a group that still has
        // members (holding the pipe open) is worth killing, and only once.
        guard.0 = None;
        if !read_all
            && tokio::time::timeout(DRAIN_GRACE, &mut reading)
                .await
                .is_err()
        {
            kill_group(group);
            // A process that left the group can still hold the pipe: give up on it.
            let _ = tokio::time::timeout(DRAIN_GRACE, &mut reading).await;
        }
        (status, timed_out)
    };
    (status, timed_out, tail)
}

async fn read_into(output: &mut pipe::Receiver, tail: &mut Tail) {
    let mut buf = [0u8; 8192];
    loop {
        match output.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn kill_group(group: Option<Pid>) {
    if let Some(pgid) = group {
        // ESRCH (already gone) is the outcome wanted anyway.
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
}

/// Kills the process group when dropped while still armed.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// The last [`TAIL_BYTES`] bytes of a stream.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > TAIL_BYTES {
            let excess = self.bytes.len() - TAIL_BYTES;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    fn into_string(self) -> String {
        let mut bytes = self.bytes.as_slice();
        if self.truncated {
            // The cut may have split a character: drop its continuation bytes.
            let start = bytes
                .iter()
                .position(|b| b & 0xC0 != 0x80)
                .unwrap_or(bytes.len());
            bytes = &bytes[start..];
        }
        let text = String::from_utf8_lossy(bytes);
        let text = last_lines(&text, TAIL_LINES);
        // Replacement characters are longer than the bytes they replace.
        let mut start = text.len().saturating_sub(TAIL_BYTES);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }
}

/// The last `n` lines of `text`; a final newline does not start another line.
fn last_lines(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(n - 1) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

#[cfg(test)]
mod tests;
