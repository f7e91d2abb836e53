//! A typed wrapper over the tmux CLI on nightshift's own server.
//!
//! Everything is passed as argv: tmux never sees a shell string built from a prompt. The one
//! shell command tmux runs is `pipe-pane`'s `nightshift __transcript <limit> <transcript>`,
//! whose only variable parts are paths nightshift chose, single-quoted, and a number.
//!
//! Here: the server handle and its names. Running one tmux command (time limit, stdin) is
//! in `command.rs`, sessions (create, list, kill, wait for the end) in `session.rs`, and
//! what goes into and out of a pane (typing, pasting, capture) in `pane.rs`.

mod command;
mod pane;
mod session;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

pub use session::{SessionInfo, SessionSpec, Spawned, died_channel};

/// The user option on each session that names its task; re-adoption after a restart relies
/// on it rather than on the session name.
pub const TASK_OPTION: &str = "@nightshift_task";

/// The user option on each session that names the home it belongs to (its canonical path):
/// a daemon touches only its own home's sessions, even on a tmux server shared with another.
pub const HOME_OPTION: &str = "@nightshift_home";

/// The user option on each session that holds the attempt running in it: a close meant for
/// one attempt leaves the next attempt's session of the same name alone.
pub const ATTEMPT_OPTION: &str = "@nightshift_attempt";

/// The longest any tmux command may take.
const TMUX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error("cannot run tmux: {0} (is tmux installed and on PATH?)")]
    Spawn(std::io::Error),
    #[error("tmux {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("tmux {command} did not answer within {after:?}")]
    Timeout {
        command: String,
        after: std::time::Duration,
    },
    #[error("tmux {command} printed unexpected output: {output:?}")]
    Parse { command: String, output: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Socket {
    Name(String),
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmux {
    socket: Socket,
    /// Start the server through `systemd-run --user --scope` (running as a systemd service).
    scoped: bool,
}

/// The environment variable the systemd unit sets so the tmux server gets its own scope.
pub const SCOPE_ENV: &str = "NIGHTSHIFT_TMUX_SCOPE";

impl Tmux {
    /// A name selects `tmux -L name`; anything with a `/` is a socket path for `tmux -S`.
    pub fn new(socket: &str) -> Tmux {
        let socket = if socket.contains('/') {
            Socket::Path(PathBuf::from(socket))
        } else {
            Socket::Name(socket.to_string())
        };
        // Set by the systemd unit `service install` writes (see `command`).
        let scoped = std::env::var_os(SCOPE_ENV).is_some_and(|v| v == "1");
        Tmux { socket, scoped }
    }

    pub fn socket_args(&self) -> Vec<OsString> {
        match &self.socket {
            Socket::Name(n) => vec!["-L".into(), n.into()],
            Socket::Path(p) => vec!["-S".into(), p.into()],
        }
    }

    /// How a person reaches this server by hand, e.g. `tmux -L nightshift`.
    pub fn display_prefix(&self) -> String {
        match &self.socket {
            Socket::Name(n) => format!("tmux -L {}", shell_quote(n)),
            Socket::Path(p) => format!("tmux -S {}", shell_quote(&p.to_string_lossy())),
        }
    }

    /// `tmux … attach -t SESSION`, as a blocking command for the CLI to hand the terminal to.
    pub fn attach_command(&self, name: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("tmux");
        cmd.args(self.socket_args())
            .args(["attach-session", "-t", &exact_session(name)])
            // Attaching from inside another tmux is fine: it is a different server.
            .env_remove("TMUX");
        cmd
    }
}

/// `tmux -V`, e.g. `tmux 3.3a`.
pub async fn version() -> Result<String, TmuxError> {
    let out = Command::new("tmux")
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(TmuxError::Spawn)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Only a missing server means "no sessions"; other errors (permissions, a protocol
/// mismatch after a tmux upgrade) must not look like every agent vanished.
fn is_no_server(stderr: &str) -> bool {
    stderr.contains("no server running")
        || (stderr.contains("error connecting to")
            && (stderr.contains("No such file or directory")
                || stderr.contains("Connection refused")))
}

/// `=name` matches the session name exactly instead of by prefix.
fn exact_session(name: &str) -> String {
    format!("={name}")
}

/// The active pane of the session named exactly `name`.
fn exact_pane(name: &str) -> String {
    format!("={name}:")
}

pub use nightshift_core::session::session_name;
use nightshift_core::session::stable_hash;

/// A home's identity on a tmux server: its canonical path (as given, if it cannot be
/// resolved, e.g. before `init` creates it).
pub fn home_id(home: &Path) -> String {
    home.canonicalize()
        .unwrap_or_else(|_| home.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// The server every home shared by default before each had its own.
pub const LEGACY_SOCKET: &str = "nightshift";

/// The tmux server a home uses when its config names none: one per home, so two homes never
/// share a server (and each other's sessions) by accident.
pub fn default_socket(home: &Path) -> String {
    format!(
        "nightshift-{:08x}",
        stable_hash(home_id(home).as_bytes()) as u32
    )
}

/// Quotes a string for a POSIX shell: `'…'` with embedded quotes closed and escaped. The
/// one quoting for every shell line nightshift writes (tmux's pipe, the hook settings, git
/// hooks); only nightshift's own paths and names go through it, never a prompt.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A word for a command line a person reads and copies: as it is when the shell takes it
/// literally, else quoted.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:@%+=,-".contains(&b));
    if plain { s.to_string() } else { shell_quote(s) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_the_shell_would_change_them() {
        assert_eq!(shell_word("/tmp/ns-it/tmux.sock"), "/tmp/ns-it/tmux.sock");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("$(x)"), "'$(x)'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn only_another_homes_tagged_session_is_foreign() {
        let session = |home: &str| SessionInfo {
            name: "ns-t".into(),
            task_id: "t".into(),
            home: home.into(),
            pane_dead: false,
            pane_pid: 1,
        };
        assert!(!session("/h/a").is_foreign("/h/a"));
        assert!(session("/h/b").is_foreign("/h/a"));
        assert!(
            !session("").is_foreign("/h/a"),
            "untagged: from before homes were recorded"
        );
    }

    #[test]
    fn session_names_are_tmux_safe_and_distinct() {
        assert_eq!(session_name("fix-bug_2"), "ns-fix-bug_2");
        let a = session_name("a.b");
        let b = session_name("a_b");
        assert_ne!(a, b);
        assert!(!a.contains('.') && !a.contains(':'));
        assert!(session_name("nightly@2026-11-24T02:00Z").starts_with("ns-nightly_2026"));
    }

    #[test]
    fn each_home_gets_its_own_default_socket() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a)?;
        std::fs::create_dir(&b)?;
        assert_ne!(default_socket(&a), default_socket(&b));
        assert!(default_socket(&a).starts_with("nightshift-"));
        // The same home reached another way is the same server.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link)?;
        assert_eq!(default_socket(&link), default_socket(&a));
        assert_eq!(default_socket(&a.join(".")), default_socket(&a));
        Ok(())
    }

    #[test]
    fn shell_quote_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
