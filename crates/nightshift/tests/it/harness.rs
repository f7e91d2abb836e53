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

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long any wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(25);

pub const BIN: &str = env!("CARGO_BIN_EXE_nightshift");

/// The task states, as folder names.
pub const STATES: [&str; 4] = ["queue", "running", "done", "failed"];

/// The default config lines; [`EnvBuilder::config`] replaces a line with the same key.
fn default_config(root: &Path, repo: &Path) -> Vec<(String, String)> {
    vec![
        (
            "tmux_socket".into(),
            toml_str(&root.join("tmux.sock").to_string_lossy()),
        ),
        ("default_agent".into(), toml_str("test")),
        ("workdir".into(), toml_str(&repo.to_string_lossy())),
        ("grace_period".into(), toml_str("1s")),
        ("settle".into(), toml_str("200ms")),
    ]
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub struct EnvBuilder {
    overrides: Vec<(String, String)>,
    tail: String,
}

impl EnvBuilder {
    /// Sets a top-level config key to a raw TOML value, e.g. `.config("max_agents", "1")` or
    /// `.config("settle", "\"10s\"")`.
    pub fn config(mut self, key: &str, raw_value: &str) -> Self {
        self.overrides.push((key.into(), raw_value.into()));
        self
    }

    /// Appends raw TOML after the top-level keys (for `[agents.x]` tables).
    pub fn config_tail(mut self, toml: &str) -> Self {
        self.tail.push_str(toml);
        self.tail.push('\n');
        self
    }

    pub fn build(self) -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("ns-it-")
            .tempdir()
            .expect("temp dir");
        // Canonical, so paths compare equal to what the binary prints (no /tmp symlinks).
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        let home = root.join("home");
        let repo = root.join("repo");
        let staging = root.join("staging");
        for d in [&home, &repo, &staging] {
            fs::create_dir_all(d).unwrap();
        }
        let env = Env {
            tmp: Some(tmp),
            home,
            repo,
            staging,
            daemon: None,
            daemons_started: 0,
            diagnosed: false,
            root,
        };
        env.init_repo();
        let mut lines = default_config(&env.root, &env.repo);
        for (k, v) in self.overrides {
            match lines.iter_mut().find(|(key, _)| *key == k) {
                Some(line) => line.1 = v,
                None => lines.push((k, v)),
            }
        }
        let mut text: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        text.push_str(&self.tail);
        fs::write(env.home.join("config.toml"), text).unwrap();
        env
    }
}

/// One running daemon process.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub struct Env {
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
}

impl Env {
    pub fn new() -> Env {
        Env::builder().build()
    }

    pub fn builder() -> EnvBuilder {
        EnvBuilder {
            overrides: Vec::new(),
            tail: String::new(),
        }
    }

    /// A path inside the temp dir, e.g. for `@append` logs.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn tmux_socket(&self) -> PathBuf {
        self.root.join("tmux.sock")
    }

    fn daemon_stderr(&self) -> PathBuf {
        self.root.join("daemon.stderr")
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
            .env_remove("NIGHTSHIFT_LOG");
    }

    pub fn git(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        self.isolate(&mut cmd);
        let out = cmd
            .arg("-C")
            .arg(&self.repo)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn init_repo(&self) {
        self.git(&["init", "-q"]);
        self.git(&["config", "user.name", "Night Shift Test"]);
        self.git(&["config", "user.email", "nightshift-test@invalid"]);
        self.git(&["config", "commit.gpgsign", "false"]);
        fs::write(self.repo.join("README.md"), "test repo\n").unwrap();
        self.git(&["add", "README.md"]);
        self.git(&["commit", "-q", "-m", "initial commit"]);
    }

    /// Subjects of the repo's commits, newest first.
    pub fn git_log(&self) -> Vec<String> {
        self.git(&["log", "--format=%s"])
            .lines()
            .map(String::from)
            .collect()
    }

    // ----- the CLI -----

    /// `nightshift --home HOME ARGS…`, to be run with [`Cmd::run`].
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        let mut command = Command::new(BIN);
        self.isolate(&mut command);
        command.arg("--home").arg(&self.home).args(args);
        command.current_dir(&self.root);
        Cmd {
            command,
            stdin: None,
            out_dir: self.root.clone(),
        }
    }

    /// Runs `nightshift ARGS…` and returns what it did.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).run()
    }

    // ----- the daemon -----

    /// Starts `nightshift daemon` and waits until it answers on its socket.
    pub fn start_daemon(&mut self) {
        self.spawn_daemon(&[]);
        self.wait_daemon_ready();
    }

    /// Starts the daemon with extra environment, without waiting for it to be ready (it may
    /// be meant to die, e.g. with `NIGHTSHIFT_FAULT`).
    pub fn spawn_daemon(&mut self, vars: &[(&str, &str)]) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        self.daemons_started += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.daemon_stderr())
            .unwrap();
        writeln!(log, "===== daemon start #{} =====", self.daemons_started).unwrap();
        let mut command = Command::new(BIN);
        self.isolate(&mut command);
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

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("no daemon").pid()
    }

    /// Waits until the daemon we started answers `ls --json` with its own pid.
    pub fn wait_daemon_ready(&mut self) {
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
    pub fn daemon_try_wait(&mut self) -> Option<ExitStatus> {
        let d = self.daemon.as_mut()?;
        let status = d.child.try_wait().expect("try_wait")?;
        self.daemon = None;
        Some(status)
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait_daemon_exit(&mut self) -> ExitStatus {
        let mut status = None;
        self.wait_until("the daemon exits", |env| {
            status = env.daemon_try_wait();
            status.is_some()
        });
        status.unwrap()
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9_daemon(&mut self) {
        let mut d = self.daemon.take().expect("no daemon");
        d.child.kill().expect("SIGKILL the daemon");
        let status = d.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status}");
    }

    /// SIGTERM, then waits for the exit; returns how it exited.
    pub fn term_daemon(&mut self) -> ExitStatus {
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
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.daemon_stderr()).unwrap_or_default()
    }

    // ----- tmux -----

    pub fn tmux(&self, args: &[&str]) -> std::process::Output {
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
    pub fn sessions(&self) -> Vec<String> {
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

    pub fn has_session(&self, name: &str) -> bool {
        self.sessions().iter().any(|s| s == name)
    }

    // ----- task files -----

    /// Drops a task file into `queue/` the safe way: write elsewhere, then rename in.
    pub fn queue(&self, id: &str, task: &(impl TaskText + ?Sized)) {
        self.queue_bytes(id, task.task_text().as_bytes());
    }

    pub fn queue_bytes(&self, id: &str, bytes: &[u8]) {
        let staged = self.staging.join(format!("{id}.md"));
        fs::write(&staged, bytes).unwrap();
        fs::create_dir_all(self.home.join("queue")).unwrap();
        fs::rename(&staged, self.task_path("queue", id)).unwrap();
    }

    /// Makes every file in `queue/` look old. A daemon that starts while files are younger
    /// than `settle` may take them as still being written and pick them up one by one as
    /// each settles; tests about the order of a full queue need them all ready at once.
    pub fn backdate_queue(&self) {
        let past = std::time::SystemTime::now() - Duration::from_secs(60);
        for id in self.ids_in("queue") {
            let f = fs::File::options()
                .append(true)
                .open(self.task_path("queue", &id))
                .unwrap();
            f.set_modified(past).unwrap();
        }
    }

    /// Puts a file straight into a state folder (for set-ups the daemon would never make).
    pub fn put(&self, state: &str, id: &str, task: &(impl TaskText + ?Sized)) {
        fs::create_dir_all(self.home.join(state)).unwrap();
        fs::write(self.task_path(state, id), task.task_text()).unwrap();
    }

    /// Opens `queue/<id>.md` for writing by hand: the caller decides when it is complete.
    pub fn open_in_queue(&self, id: &str) -> fs::File {
        fs::create_dir_all(self.home.join("queue")).unwrap();
        fs::File::create(self.task_path("queue", id)).unwrap()
    }

    pub fn task_path(&self, state: &str, id: &str) -> PathBuf {
        self.home.join(state).join(format!("{id}.md"))
    }

    /// Which folder the task file is in, if any.
    pub fn state_of(&self, id: &str) -> Option<&'static str> {
        STATES.into_iter().find(|s| self.task_path(s, id).is_file())
    }

    /// Ids of the task files in a state folder, sorted.
    pub fn ids_in(&self, state: &str) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.home.join(state))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        if name.starts_with('.') {
                            return None;
                        }
                        name.strip_suffix(".md").map(String::from)
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The task file's text wherever it is.
    pub fn task_text(&self, id: &str) -> String {
        let state = self
            .state_of(id)
            .unwrap_or_else(|| panic!("task {id} is nowhere\n{}", self.diagnostics()));
        fs::read_to_string(self.task_path(state, id)).unwrap()
    }

    pub fn run_dir(&self, id: &str, attempt: u32) -> PathBuf {
        self.home.join("runs").join(id).join(attempt.to_string())
    }

    /// The worktree an attempt ran in, from its spawn record.
    pub fn worktree_of(&self, id: &str, attempt: u32) -> PathBuf {
        let path = self.run_dir(id, attempt).join("spawn.json");
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let spawn: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        PathBuf::from(spawn["worktree"]["path"].as_str().expect("a worktree"))
    }

    pub fn transcript(&self, id: &str, attempt: u32) -> String {
        let bytes = fs::read(self.run_dir(id, attempt).join("transcript.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether the transcript has a line that is exactly `line` (ignoring `\r` and blanks at
    /// the ends), so the echo of a prompt line `@say x` does not count as the output `x`.
    pub fn transcript_has_line(&self, id: &str, attempt: u32, line: &str) -> bool {
        has_line(&self.transcript(id, attempt), line)
    }

    /// The pids of an attempt's processes that were recorded: the pane's wrapper (from the
    /// `spawned` event) and the agent (from `started.json`).
    pub fn run_pids(&self, id: &str, attempt: u32) -> Vec<u32> {
        run_pids(&self.run_dir(id, attempt))
    }

    /// The attempt numbers that have a run folder.
    pub fn attempts(&self, id: &str) -> Vec<u32> {
        let mut found: Vec<u32> = fs::read_dir(self.home.join("runs").join(id))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        found.sort_unstable();
        found
    }

    /// Lines of a file in the temp dir (empty if it does not exist).
    pub fn lines_of(&self, rel: &str) -> Vec<String> {
        fs::read_to_string(self.path(rel))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    // ----- waiting -----

    /// Polls `cond` until it holds; after [`DEADLINE`] fails the test, saying what it was
    /// waiting for, with the daemon log and `ls`.
    pub fn wait_until(&mut self, what: &str, mut cond: impl FnMut(&mut Env) -> bool) {
        let start = Instant::now();
        loop {
            if cond(self) {
                return;
            }
            if start.elapsed() > DEADLINE {
                self.diagnosed = true;
                panic!(
                    "timed out after {DEADLINE:?} waiting until {what}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the task file is in `state` (`queue`, `running`, `done`, `failed`).
    pub fn wait_for_state(&mut self, id: &str, state: &str) {
        assert!(STATES.contains(&state), "unknown state {state}");
        self.wait_until(&format!("task {id} is in {state}/"), |env| {
            env.task_path(state, id).is_file()
        });
    }

    /// Waits until a finished task is in `done/` or `failed/` and returns which.
    pub fn wait_finished(&mut self, id: &str) -> &'static str {
        let mut found = None;
        self.wait_until(&format!("task {id} is in done/ or failed/"), |env| {
            found = ["done", "failed"]
                .into_iter()
                .find(|s| env.task_path(s, id).is_file());
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits until the agent of attempt `attempt` has started (its wrapper recorded it).
    pub fn wait_started(&mut self, id: &str, attempt: u32) {
        let f = self.run_dir(id, attempt).join("started.json");
        self.wait_until(&format!("attempt {attempt} of {id} has started"), |_| {
            f.is_file()
        });
    }

    /// The daemon log, `ls`, and the files: what a person needs when a test fails.
    pub fn diagnostics(&self) -> String {
        let ls = match self.cmd(&["ls"]).timeout(Duration::from_secs(10)).try_run() {
            Some(o) => format!("{}{}", o.stdout, o.stderr),
            None => "(ls did not finish)".into(),
        };
        let mut files = String::new();
        list_files(&self.home, &self.home, &mut files);
        format!(
            "--- nightshift ls ---\n{ls}\n--- files in the home ---\n{files}\n--- tmux sessions ---\n{:?}\n--- daemon log ---\n{}",
            self.sessions(),
            self.daemon_log()
        )
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

fn run_pids(dir: &Path) -> Vec<u32> {
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
pub fn pid_alive(pid: u32) -> bool {
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

fn list_files(base: &Path, dir: &Path, out: &mut String) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
        if p.is_dir() {
            out.push_str(&format!("{rel}/\n"));
            list_files(base, &p, out);
        } else {
            out.push_str(&format!("{rel}\n"));
        }
    }
}

pub fn has_line(text: &str, line: &str) -> bool {
    text.split(['\n', '\r']).any(|l| l.trim() == line)
}

/// Every file under `dir` whose name starts with `prefix`.
pub fn find_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return found;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(p.clone());
        }
        if ft.is_dir() && !ft.is_symlink() {
            found.extend(find_named(&p, prefix));
        }
    }
    found
}

// ----- running a command -----

pub struct Cmd {
    command: Command,
    stdin: Option<Vec<u8>>,
    out_dir: PathBuf,
}

impl Cmd {
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// The command itself, for tests that drive its pipes.
    pub fn into_std(self) -> Command {
        self.command
    }

    pub fn timeout(self, limit: Duration) -> TimedCmd {
        TimedCmd { cmd: self, limit }
    }

    /// Runs the command to completion (at most [`DEADLINE`]).
    pub fn run(self) -> Output {
        let shown = format!("{:?}", self.command);
        self.timeout(DEADLINE)
            .try_run()
            .unwrap_or_else(|| panic!("{shown} did not finish within {DEADLINE:?}"))
    }
}

/// Waits for `child` to exit; `None` (after killing it) if it takes longer than `limit`.
pub fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
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

pub struct TimedCmd {
    cmd: Cmd,
    limit: Duration,
}

impl TimedCmd {
    /// Runs the command; `None` (after killing it) if it takes longer than the limit.
    pub fn try_run(self) -> Option<Output> {
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
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the exit code, showing the output if it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
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
    pub fn success(&self) -> &Self {
        self.expect_code(0)
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e})\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

// ----- task files -----

/// A task file: optional front matter lines, then the body.
#[derive(Debug, Clone, Default)]
pub struct Task {
    front: Vec<String>,
    body: String,
}

impl Task {
    /// A task whose body is these lines (test-agent steps and plain text).
    pub fn script<'a>(lines: impl IntoIterator<Item = &'a str>) -> Task {
        let mut body = String::from("# test task\n\n");
        for l in lines {
            body.push_str(l);
            body.push('\n');
        }
        Task {
            front: Vec::new(),
            body,
        }
    }

    /// A task with exactly this body.
    pub fn body(body: &str) -> Task {
        Task {
            front: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a front-matter line, e.g. `.front("max_attempts: 2")`.
    pub fn front(mut self, line: &str) -> Task {
        self.front.push(line.into());
        self
    }

    pub fn text(&self) -> String {
        if self.front.is_empty() {
            return self.body.clone();
        }
        let mut s = String::from("---\n");
        for l in &self.front {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("---\n");
        s.push_str(&self.body);
        s
    }
}

/// What [`Env::queue`] accepts: raw text or a [`Task`].
pub trait TaskText {
    fn task_text(&self) -> String;
}

impl TaskText for str {
    fn task_text(&self) -> String {
        self.to_string()
    }
}

impl TaskText for String {
    fn task_text(&self) -> String {
        self.clone()
    }
}

impl TaskText for Task {
    fn task_text(&self) -> String {
        self.text()
    }
}
