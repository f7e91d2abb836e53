//! A throwaway nightshift for `demo` and `bench`: a temporary home and git repository, a
//! private tmux server, and a daemon running as a child of this binary. Dropping the
//! [`Sandbox`] stops the daemon, kills the tmux server and removes the directory (unless
//! asked to keep it), so neither command leaves anything behind.

use std::fs;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use crate::config::Config;
use crate::exit::{self, CliError};
use crate::home::{Home, TaskState};
use crate::tmux::shell_quote;
use nightshift_store::fsutil;

/// The first line of `tmux -V` or `git --version`, or `None` when the tool cannot run.
pub fn tool_version(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// Both commands drive real tmux and git: say plainly what is missing before starting.
pub fn require_tools(command: &str) -> Result<(), CliError> {
    let missing: Vec<&str> = [("tmux", "-V"), ("git", "--version")]
        .into_iter()
        .filter(|(p, arg)| tool_version(p, arg).is_none())
        .map(|(p, _)| p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(CliError::new(
        exit::FAILURE,
        format!(
            "`nightshift {command}` needs tmux and git on PATH; cannot run: {}\n\
             install with your package manager (e.g. `apt install {pkgs}` or `brew install {pkgs}`)",
            missing.join(", "),
            pkgs = missing.join(" "),
        ),
    ))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turns Ctrl-C, SIGTERM and SIGHUP into a flag that the wait loops check, so the sandbox's
/// Drop still runs (the default action would leave the tmux server and temp dir behind).
/// A second signal exits at once.
pub fn catch_interrupts() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered here, before returning, so there is no window where Ctrl-C kills us.
    let mut signals = rt.block_on(async {
        [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .into_iter()
        .map(signal)
        .collect::<Result<Vec<_>, _>>()
    })?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            loop {
                let [a, b, c] = &mut signals[..] else { return };
                tokio::select! {
                    _ = a.recv() => {}
                    _ = b.recv() => {}
                    _ = c.recv() => {}
                }
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
            }
        });
    });
    Ok(())
}

pub fn check_interrupted() -> Result<(), CliError> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(CliError::new(
            exit::FAILURE,
            "interrupted; cleaning up (press Ctrl-C again to quit at once)",
        ));
    }
    Ok(())
}

/// Wall-clock nanoseconds since the epoch: the unit of the test agent's `@stamp`.
pub fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// File events from a few folders, each with the time it was seen.
pub struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<(SystemTime, notify::Event)>,
}

impl FolderWatch {
    /// Watches each folder; `true` means recursively.
    pub fn new(folders: &[(PathBuf, bool)]) -> anyhow::Result<FolderWatch> {
        let (tx, events) = mpsc::channel();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                // Stamped here, in the watcher's thread, so a busy reader does not skew the time.
                if let Ok(event) = res {
                    let _ = tx.send((SystemTime::now(), event));
                }
            })?;
        for (dir, recursive) in folders {
            let mode = match recursive {
                true => RecursiveMode::Recursive,
                false => RecursiveMode::NonRecursive,
            };
            watcher
                .watch(dir, mode)
                .with_context(|| format!("watching {}", dir.display()))?;
        }
        Ok(FolderWatch {
            _watcher: watcher,
            events,
        })
    }

    /// Waits up to `timeout` for the next events; returns all that have arrived (maybe none).
    pub fn next(&self, timeout: Duration) -> Vec<(SystemTime, notify::Event)> {
        let mut out = Vec::new();
        if let Ok(first) = self.events.recv_timeout(timeout) {
            out.push(first);
            out.extend(self.events.try_iter());
        }
        out
    }
}

/// Calls `check` whenever a watched folder changes (and at least every 100 ms, in case an
/// event is missed) until it returns `Some`, the deadline passes, or the user interrupts.
pub fn wait_for<T>(
    watch: &FolderWatch,
    deadline: Instant,
    what: &str,
    mut check: impl FnMut(&[(SystemTime, notify::Event)]) -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let mut events = Vec::new();
    loop {
        if let Some(found) = check(&events)? {
            return Ok(found);
        }
        check_interrupted()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(
                CliError::new(exit::FAILURE, format!("timed out waiting for {what}")).into(),
            );
        }
        events = watch.next(left.min(Duration::from_millis(100)));
    }
}

pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    pub home: Home,
    pub repo: PathBuf,
    pub tmux_socket: PathBuf,
    daemon: Option<Child>,
    /// Keep the directory when dropped.
    pub keep: bool,
}

impl Sandbox {
    /// Creates `<tmp>/nightshift-<name>-XXXX/` with `home/` (config written, layout made)
    /// and `repo/` (a git repository with one commit). `config` is appended to the
    /// config.toml, which already sets the test agent, the repo as workdir and a private tmux
    /// socket.
    pub fn create(name: &str, keep: bool, config: &str) -> anyhow::Result<Sandbox> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("nightshift-{name}-"))
            .tempdir()
            .context("creating a temporary directory")?;
        // Canonical, so paths printed and handed to tmux match what the agents see.
        let root = fs::canonicalize(dir.path())?;
        let sandbox = Sandbox {
            home: Home::at(root.join("home")),
            repo: root.join("repo"),
            tmux_socket: root.join("tmux.sock"),
            root,
            dir: Some(dir),
            daemon: None,
            keep,
        };
        sandbox.init_repo()?;
        let toml_str = |p: &Path| toml::Value::String(p.to_string_lossy().into_owned()).to_string();
        let text = format!(
            "# Written by `nightshift {name}`: a temporary home with its own tmux server.\n\
             default_agent = \"test\"\n\
             workdir = {}\n\
             tmux_socket = {}\n\
             {config}\n",
            toml_str(&sandbox.repo),
            toml_str(&sandbox.tmux_socket),
        );
        let config_file = sandbox.home.config_file();
        sandbox.home.ensure_layout()?;
        fs::write(&config_file, text)
            .with_context(|| format!("writing {}", config_file.display()))?;
        // Refuse a bad configuration here, with a clear error, rather than in the daemon.
        Config::load(&config_file)?;
        Ok(sandbox)
    }

    fn init_repo(&self) -> anyhow::Result<()> {
        init_repo(&self.repo)
    }

    /// Runs git in the repo; returns its stdout.
    pub fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        git_in(&self.repo, args)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.stderr.log")
    }

    /// Starts `nightshift --home <home> daemon` and waits until it answers on its socket.
    pub fn start_daemon(&mut self) -> anyhow::Result<()> {
        self.spawn_daemon()?;
        self.wait_daemon_ready(Duration::from_secs(30))
    }

    /// Starts the daemon without waiting for it. Its stderr is appended to
    /// [`Sandbox::daemon_log`], so the log of every daemon of a run is kept.
    pub fn spawn_daemon(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding the nightshift binary")?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.daemon_log())?;
        let child = Command::new(exe)
            .arg("--home")
            .arg(self.home.root())
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // A plain log file, and no link to a tmux client this command may run inside.
            .env("NO_COLOR", "1")
            .env_remove("TMUX")
            // This process already runs under umask 077; the agents get the user's.
            .env(
                crate::privacy::USER_UMASK_ENV,
                format!("{:04o}", crate::privacy::user_umask()),
            )
            // Its own process group: Ctrl-C reaches only us, and we stop it in order.
            .process_group(0)
            .spawn()
            .context("starting the daemon")?;
        self.daemon = Some(child);
        Ok(())
    }

    /// Waits until the daemon we started answers a status request with its own pid (a
    /// killed daemon's socket file stays behind, so its presence proves nothing).
    pub fn wait_daemon_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let pid = self.daemon_pid();
        let socket = self.home.socket();
        let rt = crate::client::runtime()?;
        let watch = FolderWatch::new(&[(self.home.runtime_dir(), false)])?;
        wait_for(
            &watch,
            Instant::now() + limit,
            "the daemon to start",
            |_| {
                self.check_daemon()?;
                let status = rt.block_on(crate::client::request(
                    &socket,
                    &crate::ipc::Request::Status,
                ));
                Ok(
                    matches!(status, Ok(crate::ipc::Response::Status(s)) if Some(s.pid) == pid)
                        .then_some(()),
                )
            },
        )
    }

    /// The pid of the daemon we started, while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// `kill -9` of the daemon, at once. An error if it had already exited by itself.
    pub fn kill9_daemon(&mut self) -> anyhow::Result<()> {
        self.check_daemon()?;
        if let Some(mut child) = self.daemon.take() {
            child.kill().context("killing the daemon")?;
            child.wait().context("waiting for the killed daemon")?;
        }
        Ok(())
    }

    /// An error (with the end of its log) if the daemon has exited.
    pub fn check_daemon(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.daemon.as_mut() else {
            return Ok(());
        };
        if let Ok(Some(status)) = child.try_wait() {
            self.daemon = None;
            return Err(CliError::new(
                exit::FAILURE,
                format!(
                    "the daemon stopped ({status}); the end of its log:\n{}",
                    self.log_tail(20)
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The last `lines` lines of the daemon's stderr, indented.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(self.daemon_log()) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| format!("  {l}\n"))
            .collect()
    }

    /// Stops the daemon: SIGTERM so it flushes its log, SIGKILL if it does not go.
    pub fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Writes a task file to `tmp/<id>.md`, ready for [`Sandbox::enqueue`].
    pub fn stage(&self, id: &str, text: &str) -> anyhow::Result<()> {
        let path = self.home.tmp_dir().join(format!("{id}.md"));
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Renames a staged task into `queue/`, as `nightshift add` does: the daemon only ever
    /// sees a whole file.
    pub fn enqueue(&self, id: &str) -> anyhow::Result<()> {
        let from = self.home.tmp_dir().join(format!("{id}.md"));
        let to = self.home.task_file(TaskState::Queued, id);
        match fsutil::move_noclobber(&from, &to) {
            Ok(true) => Ok(()),
            Ok(false) => anyhow::bail!("{} vanished", from.display()),
            Err(e) => Err(e).with_context(|| format!("moving into {}", to.display())),
        }
    }

    /// How to run this binary by hand: `nightshift` when that is what PATH finds.
    pub fn command_name() -> String {
        let exe = std::env::current_exe().ok();
        let on_path = std::env::var_os("PATH")
            .and_then(|p| crate::daemon::find_program("nightshift", &p))
            .and_then(|p| fs::canonicalize(p).ok());
        match exe {
            Some(exe) if on_path.as_ref() != Some(&exe) => quote(&exe.to_string_lossy()),
            _ => "nightshift".to_string(),
        }
    }

    /// `nightshift --home <home>`, quoted for a shell.
    pub fn command_prefix(&self) -> String {
        format!(
            "{} --home {}",
            Self::command_name(),
            quote(&self.home.root().to_string_lossy())
        )
    }
}

/// Quotes for a shell only when needed, so the usual temp path stays easy to read.
pub fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        shell_quote(s)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_daemon();
        // Agents run in tmux, not under the daemon: the server must go too.
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.tmux_socket)
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(dir) = self.dir.take() {
            if self.keep {
                let _ = dir.keep();
            } else if let Err(e) = dir.close() {
                eprintln!("nightshift: cannot remove {}: {e}", self.root.display());
            }
        }
    }
}

/// ANSI colour for a terminal, plain text otherwise (pipes, CI logs, `NO_COLOR`).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Style {
            color: std::io::stdout().is_terminal() && !no_color && !dumb,
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        match self.color {
            true => format!("\x1b[{code}m{text}\x1b[0m"),
            false => text.to_string(),
        }
    }

    pub fn green(self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn red(self, t: &str) -> String {
        self.paint("31", t)
    }
    pub fn yellow(self, t: &str) -> String {
        self.paint("33", t)
    }
    pub fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
    pub fn bold(self, t: &str) -> String {
        self.paint("1", t)
    }
}

/// Runs git in `repo` (argv, no shell); returns its stdout, or an error with git's message.
pub fn git_in(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running git")?;
    if !out.status.success() {
        anyhow::bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A scratch repository with one commit, its own identity and no signing: the user's global
/// git config must not make the agents' commits fail or prompt for a passphrase.
pub fn init_repo(repo: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(repo)?;
    fs::write(
        repo.join("README.md"),
        "# scratch\n\nA scratch repository for nightshift's demo and benchmarks.\n",
    )?;
    let steps: [&[&str]; 7] = [
        &["init", "-q"],
        &["symbolic-ref", "HEAD", "refs/heads/main"],
        &["config", "user.name", "nightshift demo"],
        &["config", "user.email", "demo@nightshift.invalid"],
        &["config", "commit.gpgsign", "false"],
        &["add", "-A"],
        &["commit", "-q", "-m", "Initial commit"],
    ];
    for args in steps {
        git_in(repo, args)?;
    }
    Ok(())
}
