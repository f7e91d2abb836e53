//! The test harness: a throwaway world (temp dir, home, git repo, tmux server) and a few
//! verbs to drive the real `nightshift` binary in it, so each test reads like a story:
//!
//! ```ignore
//! let env = Env::new();
//! env.queue("hello", &Task::script(["@done all good"]));
//! let _d = env.start_daemon();
//! env.wait_for_state("hello", "done");
//! ```
//!
//! Everything lives under one temp dir: HOME, the nightshift home, the repo and the tmux
//! socket. Dropping the [`Env`] kills the daemon and the tmux server and removes the dir.

mod agent_clis;
mod browser;
mod builder;
mod cmd;
mod daemon;
mod git;
mod tasks;
mod wait;

pub(crate) use agent_clis::{path_with, require_cli};
pub(crate) use browser::{check_page, require_browser};
pub(crate) use builder::toml_str;
pub(crate) use cmd::{Cmd, wait_exit};
pub(crate) use daemon::{Daemon, pid_alive};
pub(crate) use tasks::{Task, find_named, number_after};
// The rest of the harness's public names, reachable as `crate::harness::X` too, though no
// test names them today.
#[allow(unused_imports)]
pub(crate) use {
    builder::EnvBuilder,
    cmd::{Output, TimedCmd},
    tasks::{TaskText, has_line},
};

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long any wait may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(25);

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_nightshift");

/// The task states, as folder names.
pub(crate) const STATES: [&str; 4] = ["queue", "running", "done", "failed"];

pub(crate) struct Env {
    tmp: Option<tempfile::TempDir>,
    /// The temp dir; also `HOME` for everything the tests run.
    pub root: PathBuf,
    /// The nightshift home (`--home`).
    pub home: PathBuf,
    /// A git repository with one commit: the default workdir.
    pub repo: PathBuf,
    /// Where task files are written before they are renamed into `queue/`.
    staging: PathBuf,
    daemon: Option<Daemon>,
    daemons_started: u32,
    /// The diagnostics were already part of a panic message: don't print them twice.
    diagnosed: bool,
    /// A program every `nightshift` of this env runs through (see [`EnvBuilder::wrapper`]).
    wrapper: Vec<String>,
}

impl Env {
    pub(crate) fn new() -> Env {
        Env::builder().build()
    }

    /// A path inside the temp dir, e.g. for `@append` logs.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(crate) fn tmux_socket(&self) -> PathBuf {
        self.root.join("tmux.sock")
    }

    fn daemon_stderr(&self) -> PathBuf {
        self.root.join("daemon.stderr")
    }

    /// The `nightshift` binary (through the env's wrapper, if any), isolated.
    fn nightshift(&self) -> Command {
        let mut command = match &self.wrapper[..] {
            [program, args @ ..] => {
                let mut command = Command::new(program);
                command.args(args).arg(BIN);
                command
            }
            [] => Command::new(BIN),
        };
        self.isolate(&mut command);
        command
    }

    /// Environment shared by every process the tests start: nothing of the real user's.
    fn isolate(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.root)
            .env("NIGHTSHIFT_HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("NIGHTSHIFT_FAULT")
            .env_remove("NIGHTSHIFT_RUN_DIR")
            .env_remove("NIGHTSHIFT_TASK_ID")
            .env_remove("NIGHTSHIFT_SOCKET")
            .env_remove("NIGHTSHIFT_ATTEMPT")
            .env_remove("NIGHTSHIFT_LOG")
            // The tests of colour output must not depend on the runner's setting.
            .env_remove("NO_COLOR")
            .env_remove("NIGHTSHIFT_HOST")
            .env_remove("NIGHTSHIFT_STORE_URL");
    }
}
