//! The daemon process, the test's tmux server, and the clean-up when the test ends.

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use super::Env;

/// One running daemon process.
pub(crate) struct Daemon {
    child: Child,
}

impl Daemon {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Env {
    // ----- the daemon -----

    /// Starts `nightshift daemon` and waits until it answers on its socket.
    pub(crate) fn start_daemon(&mut self) {
        self.spawn_daemon(&[]);
        self.wait_daemon_ready();
    }

    /// Starts the daemon with extra environment, without waiting for it to be ready (it may
    /// be meant to die, e.g. with `NIGHTSHIFT_FAULT`).
    pub(crate) fn spawn_daemon(&mut self, vars: &[(&str, &str)]) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        self.daemons_started += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.daemon_stderr())
            .unwrap();
        writeln!(log, "===== daemon start #{} =====", self.daemons_started).unwrap();
        let mut command = self.nightshift();
        command
            .arg("--home")
            .arg(&self.home)
            .arg("daemon")
            .env("NIGHTSHIFT_LOG", "debug")
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in vars {
            command.env(k, v);
        }
        let child = command.spawn().expect("start the daemon");
        self.daemon = Some(Daemon { child });
    }

    pub(crate) fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("no daemon").pid()
    }

    /// Waits until the daemon we started answers `ls --json` with its own pid.
    pub(crate) fn wait_daemon_ready(&mut self) {
        let pid = self.daemon_pid();
        self.wait_until("the daemon answers on its socket", |env| {
            if let Some(status) = env.daemon_try_wait() {
                panic!("the daemon exited during start-up: {status}");
            }
            let out = env.run(&["ls", "--json"]);
            out.json()["daemon"]["pid"].as_u64() == Some(u64::from(pid))
        });
    }

    /// The daemon's exit status if it has exited (and forgets it then).
    pub(crate) fn daemon_try_wait(&mut self) -> Option<ExitStatus> {
        let d = self.daemon.as_mut()?;
        let status = d.child.try_wait().expect("try_wait")?;
        self.daemon = None;
        Some(status)
    }

    /// Waits for the daemon to exit on its own.
    pub(crate) fn wait_daemon_exit(&mut self) -> ExitStatus {
        let mut status = None;
        self.wait_until("the daemon exits", |env| {
            status = env.daemon_try_wait();
            status.is_some()
        });
        status.unwrap()
    }

    /// `kill -9`: no chance to clean up.
    pub(crate) fn kill9_daemon(&mut self) {
        let mut d = self.daemon.take().expect("no daemon");
        d.child.kill().expect("SIGKILL the daemon");
        let status = d.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status}");
    }

    /// SIGTERM, then waits for the exit; returns how it exited.
    pub(crate) fn term_daemon(&mut self) -> ExitStatus {
        let pid = self.daemon_pid();
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {pid} failed");
        self.wait_daemon_exit()
    }

    /// The daemon's stderr (all daemons this env started, in order).
    pub(crate) fn daemon_log(&self) -> String {
        fs::read_to_string(self.daemon_stderr()).unwrap_or_default()
    }

    // ----- tmux -----

    pub(crate) fn tmux(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("tmux");
        self.isolate(&mut cmd);
        cmd.arg("-S")
            .arg(self.tmux_socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// Names of the sessions on the test's tmux server (none when there is no server).
    pub(crate) fn sessions(&self) -> Vec<String> {
        let out = self.tmux(&["list-sessions", "-F", "#{session_name}"]);
        if !out.status.success() {
            return Vec::new();
        }
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    pub(crate) fn has_session(&self, name: &str) -> bool {
        self.sessions().iter().any(|s| s == name)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed && !self.diagnosed {
            // Before the clean-up, so `ls` and the sessions show the state at the failure.
            eprintln!("{}", self.diagnostics());
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
        let _ = self.tmux(&["kill-server"]);
        self.kill_leftover_agents();
        if failed
            && std::env::var_os("NIGHTSHIFT_KEEP_TMP").is_some()
            && let Some(tmp) = self.tmp.take()
        {
            eprintln!("kept {}", tmp.keep().display());
        }
    }
}

impl Env {
    /// Agents must die with their session, but if one survived (a bug the tests report),
    /// it must not outlive the test: kill every recorded process still tied to a run folder.
    fn kill_leftover_agents(&self) {
        let runs = self.home.join("runs");
        let Ok(tasks) = fs::read_dir(&runs) else {
            return;
        };
        for task in tasks.filter_map(Result::ok) {
            let Ok(attempts) = fs::read_dir(task.path()) else {
                continue;
            };
            for attempt in attempts.filter_map(Result::ok) {
                let dir = attempt.path();
                for pid in run_pids(&dir) {
                    if belongs_to_run(pid, &dir) {
                        let _ = Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .stderr(Stdio::null())
                            .status();
                    }
                }
            }
        }
    }
}

pub(super) fn run_pids(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let events = fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    for line in events.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["event"] == "spawned"
            && let Some(detail) = v["detail"].as_str()
            && let Some((_, rest)) = detail.rsplit_once("(pid ")
            && let Ok(pid) = rest.trim_end_matches(')').parse()
        {
            pids.push(pid);
        }
    }
    if let Ok(text) = fs::read_to_string(dir.join("started.json"))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(pid) = v["pid"].as_u64()
    {
        pids.push(pid as u32);
    }
    pids
}

/// Whether `pid` is a live (not zombie) process.
pub(crate) fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether a live process is one of this run's (its command line or environment names the
/// run folder), so a recycled pid is never killed.
fn belongs_to_run(pid: u32, dir: &Path) -> bool {
    let needle = dir.to_string_lossy().into_owned();
    ["cmdline", "environ"].iter().any(|f| {
        fs::read(format!("/proc/{pid}/{f}"))
            .is_ok_and(|b| String::from_utf8_lossy(&b).contains(&needle))
    }) && pid_alive(pid)
}
