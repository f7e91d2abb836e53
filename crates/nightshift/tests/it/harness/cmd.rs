//! Running the `nightshift` CLI: a command with a time limit and its captured output.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{DEADLINE, Env};

impl Env {
    // ----- the CLI -----

    /// `nightshift --home HOME ARGS…`, to be run with [`Cmd::run`].
    pub(crate) fn cmd(&self, args: &[&str]) -> Cmd {
        let mut command = self.nightshift();
        command.arg("--home").arg(&self.home).args(args);
        command.current_dir(&self.root);
        Cmd {
            command,
            stdin: None,
            out_dir: self.root.clone(),
        }
    }

    /// Runs `nightshift ARGS…` and returns what it did.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).run()
    }
}

// ----- running a command -----

pub(crate) struct Cmd {
    command: Command,
    stdin: Option<Vec<u8>>,
    out_dir: PathBuf,
}

impl Cmd {
    pub(crate) fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub(crate) fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// The command itself, for tests that drive its pipes.
    pub(crate) fn into_std(self) -> Command {
        self.command
    }

    pub(crate) fn timeout(self, limit: Duration) -> TimedCmd {
        TimedCmd { cmd: self, limit }
    }

    /// Runs the command to completion (at most [`DEADLINE`]).
    pub(crate) fn run(self) -> Output {
        let shown = format!("{:?}", self.command);
        self.timeout(DEADLINE)
            .try_run()
            .unwrap_or_else(|| panic!("{shown} did not finish within {DEADLINE:?}"))
    }
}

/// Waits for `child` to exit; `None` (after killing it) if it takes longer than `limit`.
pub(crate) fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) struct TimedCmd {
    cmd: Cmd,
    limit: Duration,
}

impl TimedCmd {
    /// Runs the command; `None` (after killing it) if it takes longer than the limit.
    pub(crate) fn try_run(self) -> Option<Output> {
        let Cmd {
            mut command,
            stdin,
            out_dir,
        } = self.cmd;
        // Output goes to files, so a chatty command can't block on a full pipe while we poll.
        let out = tempfile::tempfile_in(&out_dir).unwrap();
        let err = tempfile::tempfile_in(&out_dir).unwrap();
        command
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = command.spawn().expect("run nightshift");
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(&bytes).unwrap();
        }
        let status = wait_exit(&mut child, self.limit)?;
        let read = |mut f: fs::File| {
            use std::io::{Read, Seek};
            let mut s = Vec::new();
            f.rewind().unwrap();
            f.read_to_end(&mut s).unwrap();
            String::from_utf8_lossy(&s).into_owned()
        };
        Some(Output {
            status,
            stdout: read(out),
            stderr: read(err),
        })
    }
}

#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the exit code, showing the output if it differs.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub(crate) fn success(&self) -> &Self {
        self.expect_code(0)
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e})\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}
