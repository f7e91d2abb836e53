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

/// How many lines of output a result keeps.
pub const TAIL_LINES: usize = 60;
/// How many bytes of output a result keeps, at most.
pub const TAIL_BYTES: usize = 8 * 1024;

/// After the shell exits, how long its output may take to reach end-of-file before
/// whatever still holds the pipe (a background job) is killed with the group.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

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
        let took = crate::task::format_duration(Duration::from_millis(self.duration_ms));
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
        if let Err(e) = crate::fsutil::write_atomic(record, format!("{pid}\n").as_bytes(), 0o600) {
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
        if let Err(e) = crate::fsutil::write_atomic(record, format!("{pid}\n").as_bytes(), 0o600) {
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
const CHECK_ENV: &str = "NIGHTSHIFT_CHECK";

/// How long [`kill_recorded`] waits for a killed group to be gone.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Kills the process group a check left running when its daemon died (recorded by
/// [`run_commands_recorded`] in `record`), waits until it is gone, and removes the record.
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
mod tests {
    use super::*;

    fn cmds(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    async fn run(list: &[&str], dir: &Path, timeout: Duration) -> Vec<CommandResult> {
        run_commands(&cmds(list), dir, timeout, &[]).await
    }

    /// A process is gone once /proc has no entry for it or it is a zombie waiting for a
    /// reaper (the test may run under a pid 1 that reaps slowly).
    fn process_gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn passing_command_keeps_stdout_and_stderr() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let results = run(
            &["echo out; echo err >&2; pwd"],
            tmp.path(),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.exit_code, Some(0));
        assert!(!r.timed_out);
        assert!(r.output_tail.contains("out\n"), "{r:?}");
        assert!(r.output_tail.contains("err\n"), "{r:?}");
        let dir = std::fs::canonicalize(tmp.path()).expect("canonical");
        assert!(
            r.output_tail.contains(dir.to_str().expect("utf-8")),
            "runs in dir: {r:?}"
        );
    }

    #[tokio::test]
    async fn failing_command_keeps_the_tail() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let results = run(
            &["i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo line $i; done; printf '\\033[31mred\\033[0m\\n'; exit 3"],
            tmp.path(),
            Duration::from_secs(10),
        )
        .await;
        let r = &results[0];
        assert!(!r.passed());
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.output_tail.lines().count(), TAIL_LINES, "{r:?}");
        assert!(r.output_tail.starts_with("line 42\n"), "{r:?}");
        assert!(r.output_tail.contains("line 100\n"));
        assert!(
            r.output_tail.ends_with("\u{1b}[31mred\u{1b}[0m\n"),
            "escapes kept: {r:?}"
        );
    }

    #[tokio::test]
    async fn long_output_is_capped_in_bytes() {
        let tmp = tempfile::tempdir().expect("temp dir");
        // Three lines of 3000 bytes of two-byte characters, then a marker: over the cap.
        let results = run(
            &["for n in 1 2 3; do yes é | head -n 1500 | tr -d '\\n'; echo; done; echo end"],
            tmp.path(),
            Duration::from_secs(10),
        )
        .await;
        let r = &results[0];
        assert!(r.passed(), "{r:?}");
        assert!(r.output_tail.len() <= TAIL_BYTES);
        assert!(r.output_tail.ends_with("\nend\n"));
        assert!(!r.output_tail.contains('\u{FFFD}'), "cut at a character");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let pidfile = tmp.path().join("pid");
        let started = Instant::now();
        let results = run(
            &["sleep 30 & echo $! > pid; echo started; wait"],
            tmp.path(),
            Duration::from_millis(500),
        )
        .await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        let r = &results[0];
        assert!(r.timed_out, "{r:?}");
        assert!(!r.passed());
        assert_eq!(r.exit_code, None);
        assert!(r.output_tail.contains("started"), "{r:?}");
        let pid = std::fs::read_to_string(&pidfile).expect("pid written");
        let pid = pid.trim();
        assert!(!pid.is_empty());
        let deadline = Instant::now() + Duration::from_secs(3);
        while !process_gone(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(process_gone(pid), "sleep {pid} survived the timeout");
    }

    #[tokio::test]
    async fn background_job_holding_output_does_not_hold_the_result() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let results = run(
            &["sleep 30 & echo $! > pid; echo done"],
            tmp.path(),
            Duration::from_secs(20),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let r = &results[0];
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.output_tail, "done\n");
        let pid = std::fs::read_to_string(tmp.path().join("pid")).expect("pid written");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !process_gone(pid.trim()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(process_gone(pid.trim()));
    }

    #[tokio::test]
    async fn stops_at_the_first_failure() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let results = run(
            &["echo one", "echo two; false", "touch ran-third"],
            tmp.path(),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(results.len(), 2, "{results:?}");
        assert!(results[0].passed());
        assert_eq!(results[1].command, "echo two; false");
        assert_eq!(results[1].exit_code, Some(1));
        assert!(!tmp.path().join("ran-third").exists());
    }

    #[tokio::test]
    async fn all_pass_runs_all() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let results = run(
            &["true", "true", "true"],
            tmp.path(),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(CommandResult::passed));
    }

    #[tokio::test]
    async fn env_is_passed() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let env = vec![("NS_CHECK_VALUE".to_string(), "it's $here".to_string())];
        let results = run_commands(
            &cmds(&["printf '%s\\n' \"$NS_CHECK_VALUE\""]),
            tmp.path(),
            Duration::from_secs(10),
            &env,
        )
        .await;
        assert_eq!(results[0].output_tail, "it's $here\n");
    }

    #[tokio::test]
    async fn stdin_is_empty() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let results = run(&["cat; echo eof"], tmp.path(), Duration::from_secs(10)).await;
        assert!(results[0].passed());
        assert_eq!(results[0].output_tail, "eof\n");
    }

    #[tokio::test]
    async fn unstartable_command_reports_the_error() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let missing = tmp.path().join("missing");
        let results = run(&["true", "true"], &missing, Duration::from_secs(10)).await;
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].exit_code, None);
        assert!(!results[0].timed_out);
        assert!(
            results[0].output_tail.contains("missing"),
            "{:?}",
            results[0]
        );
    }

    #[tokio::test]
    async fn signal_death_is_noted() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let results = run(&["kill -9 $$"], tmp.path(), Duration::from_secs(10)).await;
        assert_eq!(results[0].exit_code, None);
        assert!(!results[0].timed_out);
        assert!(
            results[0].output_tail.contains("signal 9"),
            "{:?}",
            results[0]
        );
    }

    #[test]
    fn describe_says_how_it_ended() {
        let result = |exit_code, timed_out, output_tail: &str| CommandResult {
            command: "make check".into(),
            exit_code,
            timed_out,
            duration_ms: 2500,
            output_tail: output_tail.into(),
        };
        assert_eq!(result(Some(0), false, "").describe(), "passed in 2s");
        assert_eq!(
            result(Some(2), false, "boom\n").describe(),
            "exited with code 2 after 2s"
        );
        assert_eq!(
            result(None, true, "").describe(),
            "timed out after 2s and was killed"
        );
        let killed = format!("partial{}", signal_marker(15));
        assert_eq!(
            result(None, false, &killed).describe(),
            "was killed by signal 15 after 2s"
        );
        assert_eq!(
            result(None, false, "cannot run `sh -c` in /x: No such file").describe(),
            "could not be started: cannot run `sh -c` in /x: No such file"
        );
    }

    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("", 3), "");
        assert_eq!(last_lines("a\n", 0), "");
    }

    /// A recorded group id that now belongs to processes without the record's mark (the id
    /// was reused) is left alone; the check's own processes are killed, children included.
    #[tokio::test]
    async fn kill_recorded_kills_only_the_checks_own_processes() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let record = tmp.path().join("check-group");
        use std::os::unix::process::CommandExt;
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        std::fs::write(&record, format!("{}\n", stranger.id())).expect("record");
        assert_eq!(kill_recorded(&record).await, 0);
        assert!(
            !process_gone(&stranger.id().to_string()),
            "a stranger survives"
        );
        assert!(!record.exists(), "the record is used up");
        let _ = stranger.kill();
        let _ = stranger.wait();

        let pids = tmp.path().join("pids");
        let command = format!(
            "sleep 30 & echo $! > {}; echo $$ >> {0}; wait",
            pids.display()
        );
        let check = {
            let (cmds, dir, record) = (cmds(&[&command]), tmp.path().to_path_buf(), record.clone());
            tokio::spawn(async move {
                let tie = Tie {
                    record: &record,
                    guard: None,
                };
                run_commands_recorded(&cmds, &dir, Duration::from_secs(60), &[], Some(tie)).await
            })
        };
        while std::fs::read_to_string(&pids).map_or(0, |t| t.lines().count()) < 2
            || !record.exists()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(kill_recorded(&record).await >= 2);
        let text = std::fs::read_to_string(&pids).expect("pids");
        assert!(text.lines().all(process_gone), "{text}");
        let results = check.await.expect("joined");
        assert!(!results[0].passed());
    }
}
