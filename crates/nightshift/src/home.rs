//! The nightshift home: where everything lives, and the single-instance lock.
//!
//! A task file's directory is its state (`queue/`, `running/`, `done/`, `failed/`), so `ls`
//! shows the queue. Each attempt gets `runs/<task>/<attempt>/`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nightshift_store::fsutil;

pub use nightshift_core::records::TaskState;
use nightshift_store::folder::Layout;
pub use nightshift_store::folder::dir_name;

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot find a home directory: pass --home, set NIGHTSHIFT_HOME, or set HOME")]
    NoHome,
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the control socket path {} is {len} bytes, over the {max}-byte limit of Unix sockets; use a shorter --home",
        path.display()
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("another nightshift daemon is already running for {} (pid {pid}); stop it first", home.display())]
    Locked { home: PathBuf, pid: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How long a start waits for a lock whose recorded holder is dead.
const GHOST_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether the process recorded as holding the lock still runs (an unreadable pid counts as
/// running: better to refuse than to run two daemons).
fn holder_alive(pid: &str) -> bool {
    match pid
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => true,
    }
}

/// Unix socket paths are limited to about 108 bytes (104 on macOS).
const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `NIGHTSHIFT_HOME`, else `~/.nightshift`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Home, HomeError> {
        let root = match flag {
            Some(p) => p,
            None => match std::env::var_os("NIGHTSHIFT_HOME").filter(|v| !v.is_empty()) {
                Some(p) => PathBuf::from(p),
                None => {
                    let home = std::env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .ok_or(HomeError::NoHome)?;
                    PathBuf::from(home).join(".nightshift")
                }
            },
        };
        // Absolute, so paths handed to tmux panes and agents mean the same thing everywhere.
        let root = std::path::absolute(&root).map_err(io_err(&root))?;
        Ok(Home { root })
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// The folder store's layout in this home: the task folders and the runs.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.root)
    }
    pub fn state_dir(&self, state: TaskState) -> PathBuf {
        self.layout().state_dir(state)
    }
    pub fn task_file(&self, state: TaskState, id: &str) -> PathBuf {
        self.layout().task_file(state, id)
    }
    pub fn runs_dir(&self) -> PathBuf {
        self.layout().runs_dir()
    }
    pub fn task_runs(&self, id: &str) -> PathBuf {
        self.layout().task_runs(id)
    }
    pub fn run_dir(&self, id: &str, attempt: u32) -> PathBuf {
        self.layout().run_dir(id, attempt)
    }
    /// Private (0700): the control socket and the lock.
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir().join("daemon.sock")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.runtime_dir().join("daemon.lock")
    }
    /// Present while the daemon runs on its last good configuration because `config.toml`
    /// did not load: holds the error, for `ls`.
    pub fn config_error_file(&self) -> PathBuf {
        self.runtime_dir().join("config-error")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Scratch space on the same filesystem as the queue, so a finished write can be
    /// renamed into `queue/` atomically.
    /// Present while the queue is paused (`nightshift pause`): nothing new starts.
    pub fn paused_file(&self) -> PathBuf {
        self.layout().paused_file()
    }

    /// The agent profiles held for a usage or rate limit, as the daemon last decided.
    pub fn limits_file(&self) -> PathBuf {
        self.root.join("limits.json")
    }

    /// The night reports' pages (`nightshift report --open`, `[report] at`).
    pub fn reports_dir(&self) -> PathBuf {
        self.root.join("reports")
    }

    /// Schedule files (`schedules/<name>.md`) and their state (`schedules/.state/`).
    pub fn schedules_dir(&self) -> PathBuf {
        self.root.join("schedules")
    }

    /// Tasks' git worktrees: `worktrees/<repository>-<hash>/<task id>`.
    pub fn worktrees_dir(&self) -> PathBuf {
        self.root.join("worktrees")
    }

    /// The mirrors of the remotes of `repo:` tasks (see [`crate::repo_remote`]).
    pub fn mirrors_dir(&self) -> PathBuf {
        self.root.join("mirrors")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn examples_dir(&self) -> PathBuf {
        self.root.join("examples")
    }

    /// Creates every directory the daemon and CLI need. Idempotent.
    pub fn ensure_layout(&self) -> Result<(), HomeError> {
        let ours = [self.logs_dir(), self.tmp_dir(), self.schedules_dir()];
        let dirs = std::iter::once(self.root.clone())
            .chain(self.layout().folders())
            .chain(ours);
        for dir in dirs {
            // 0700 even where no umask was set: the home is for its user only.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_err(&dir))?;
        }
        let rt = self.runtime_dir();
        fsutil::create_private_dir(&rt, 0o700).map_err(io_err(&rt))?;
        Ok(())
    }

    /// Checks that the socket path fits; call before binding or connecting.
    pub fn checked_socket(&self) -> Result<PathBuf, HomeError> {
        let path = self.socket();
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(HomeError::SocketPathTooLong {
                path,
                len,
                max: MAX_SOCKET_PATH,
            });
        }
        Ok(path)
    }

    /// Why the daemon's last reload of `config.toml` was refused, while it still is. One
    /// left by a daemon killed since says nothing about a daemon running now.
    pub fn reload_error(&self) -> Option<String> {
        let text = fs::read_to_string(self.config_error_file()).ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty() && self.daemon_may_run())
    }

    /// Whether the daemon that last took the lock may still run: its pid on file is alive.
    /// For views that must not report a dead daemon's state as current.
    pub fn daemon_may_run(&self) -> bool {
        fs::read_to_string(self.lock_file()).is_ok_and(|pid| {
            let pid = pid.trim();
            !pid.is_empty() && holder_alive(pid)
        })
    }

    /// Takes the single-instance lock. The lock is released when the returned file is
    /// dropped or the process dies, even by SIGKILL, so a stale lock can't block a restart.
    pub fn lock(&self) -> Result<File, HomeError> {
        let path = self.lock_file();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // A daemon killed with -9 can leave its lock held for a moment after it is gone: a
        // child it had just forked holds the same open file until its exec. Its pid on file
        // is then dead, and the lock is waited for briefly; a live holder is refused at once.
        let deadline = std::time::Instant::now() + GHOST_LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    let pid = fs::read_to_string(&path).unwrap_or_default();
                    let pid = pid.trim().to_string();
                    if holder_alive(&pid) || std::time::Instant::now() >= deadline {
                        return Err(HomeError::Locked {
                            home: self.root.clone(),
                            pid,
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
        }
        use std::io::{Seek, Write};
        file.set_len(0).map_err(io_err(&path))?;
        file.rewind().map_err(io_err(&path))?;
        write!(file, "{}", std::process::id()).map_err(io_err(&path))?;
        Ok(file)
    }

    /// Problems with ownership and modes, for `doctor`.
    pub fn permission_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let uid = rustix::process::getuid().as_raw();
        for (path, private) in [(self.root.clone(), false), (self.runtime_dir(), true)] {
            match fs::metadata(&path) {
                // The daemon creates the runtime folder (0700) when it first starts.
                Err(e) if private && e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!("{}: {e}", path.display())),
                Ok(meta) => {
                    if meta.uid() != uid {
                        problems.push(format!(
                            "{} is owned by uid {}, not by you (uid {uid})",
                            path.display(),
                            meta.uid()
                        ));
                    }
                    let mode = meta.permissions().mode() & 0o777;
                    if private && mode != 0o700 {
                        problems.push(format!(
                            "{} has mode {mode:o}; it must be 700 so only you can reach the socket",
                            path.display()
                        ));
                    }
                    if !private && mode & 0o002 != 0 {
                        problems.push(format!("{} is world-writable", path.display()));
                    }
                }
            }
        }
        problems
    }

    /// What other users can read (the home, its config, transcripts), for `doctor`'s
    /// warnings.
    pub fn readable_by_others(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for path in [self.root.clone(), self.config_file()] {
            if let Some(mode) = mode_of(&path)
                && crate::privacy::open_to_others(mode)
            {
                problems.push(open_to_others_problem(&path, mode));
            }
        }
        // Only where others can reach it: a folder on the way that is closed to others
        // hides it (and the daemon's tightening does not walk into such a folder).
        let open_chain = |p: &Path| {
            p.ancestors()
                .take_while(|a| *a != self.root)
                .all(|a| mode_of(a).is_some_and(crate::privacy::open_to_others))
        };
        let open: Vec<PathBuf> = self
            .transcripts()
            .into_iter()
            .filter(|p| open_chain(p))
            .collect();
        if let Some(first) = open.first() {
            problems.push(format!(
                "{} transcript(s) can be read by other users, e.g. {} ({})",
                open.len(),
                first.display(),
                TIGHTEN_HINT
            ));
        }
        problems
    }

    /// Every attempt's `transcript.log`.
    fn transcripts(&self) -> Vec<PathBuf> {
        let read = |dir: &Path| -> Vec<PathBuf> {
            fs::read_dir(dir)
                .map(|entries| entries.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        read(&self.runs_dir())
            .iter()
            .flat_map(|task| read(task))
            .map(|attempt| attempt.join(crate::run::TRANSCRIPT))
            .filter(|p| p.is_file())
            .collect()
    }
}

/// The user's own home directory (`$HOME`), which `~/` in a task's `workdir` stands for; the
/// core's parser takes it as an argument, so it reads no environment.
pub fn user_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// How to fix a home that is open to others.
pub const TIGHTEN_HINT: &str =
    "the daemon makes the home private when it starts, or run `chmod -R go= <home>`";

/// The mode of what others would reach at `path`: a home or config that is a link is
/// judged by where it points, not by the link's own 0777.
fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

fn open_to_others_problem(path: &Path, mode: u32) -> String {
    format!(
        "{} has mode {mode:o}: other users can read it ({TIGHTEN_HINT})",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A killed daemon's lock can outlive it for a moment (a child it had just forked holds
    /// it until its exec): with the recorded holder dead, a start waits for the lock; with it
    /// alive, a start is refused at once.
    #[test]
    fn a_lock_whose_holder_is_dead_is_waited_for_and_a_live_holders_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = Home::at(dir.path());
        home.ensure_layout().expect("layout");
        let held = home.lock().expect("the first lock");
        assert!(matches!(home.lock(), Err(HomeError::Locked { .. })));

        let mut child = std::process::Command::new("true").spawn().expect("true");
        let dead = child.id();
        child.wait().expect("reaped");
        fs::write(home.lock_file(), dead.to_string()).expect("a dead holder's pid");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        assert!(home.lock().is_ok(), "the ghost lock was not waited for");
        release.join().expect("released");
    }
}
