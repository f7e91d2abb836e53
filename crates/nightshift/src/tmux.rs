//! A typed wrapper over the tmux CLI on nightshift's own server.
//!
//! Everything is passed as argv: tmux never sees a shell string built from a prompt. The one
//! shell command tmux runs is `pipe-pane`'s `nightshift __transcript <limit> <transcript>`,
//! whose only variable parts are paths nightshift chose, single-quoted, and a number.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use nightshift_core::delivery::clean_typed;

/// The user option on each session that names its task; re-adoption after a restart relies
/// on it rather than on the session name.
pub const TASK_OPTION: &str = "@nightshift_task";

/// The user option on each session that names the home it belongs to (its canonical path):
/// a daemon touches only its own home's sessions, even on a tmux server shared with another.
pub const HOME_OPTION: &str = "@nightshift_home";

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

/// What to start in a new session.
#[derive(Debug, Clone)]
pub struct SessionSpec<'a> {
    pub name: &'a str,
    pub task_id: &'a str,
    /// The home's identity ([`home_id`]), stored in [`HOME_OPTION`].
    pub home: &'a str,
    pub workdir: &'a Path,
    pub env: &'a [(String, String)],
    pub argv: &'a [OsString],
    pub transcript: &'a Path,
    /// The nightshift binary, whose `__transcript` writes the transcript with its cap.
    pub transcript_writer: &'a Path,
    /// The most the transcript keeps, in bytes.
    pub transcript_limit: u64,
    /// The `wait-for` channel tmux signals when the pane dies.
    pub died_channel: &'a str,
    pub width: u16,
    pub height: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    pub pane_id: String,
    pub pane_pid: u32,
}

/// One nightshift session as tmux sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub name: String,
    /// The `@nightshift_task` option; empty for sessions nightshift did not make.
    pub task_id: String,
    /// The `@nightshift_home` option; empty for sessions made before homes were recorded.
    pub home: String,
    pub pane_dead: bool,
    pub pane_pid: u32,
}

impl SessionInfo {
    /// Whether the session is recorded as another home's ([`home_id`]): never to be touched.
    /// An untagged one (made before homes were recorded) is not foreign.
    pub fn is_foreign(&self, home_id: &str) -> bool {
        !self.home.is_empty() && self.home != home_id
    }
}

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

    /// Under systemd, the command that may start the tmux server runs in its own transient
    /// scope: a server forked inside the service's cgroup would die with every agent on
    /// `systemctl --user restart`.
    fn command_for(&self, what: &str) -> Command {
        let mut cmd = if self.scoped && what == "new-session" {
            let mut c = Command::new("systemd-run");
            c.args(["--user", "--scope", "--quiet", "--collect", "--", "tmux"]);
            c
        } else {
            Command::new("tmux")
        };
        cmd.args(self.socket_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, what: &str, args: &[OsString]) -> Result<String, TmuxError> {
        let output = self.output(what, args).await?;
        if !output.status.success() {
            return Err(TmuxError::Failed {
                command: what.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs tmux with a time limit: a hung tmux server must not hang the daemon.
    async fn output(
        &self,
        what: &str,
        args: &[OsString],
    ) -> Result<std::process::Output, TmuxError> {
        let run = self.command_for(what).args(args).output();
        match tokio::time::timeout(TMUX_TIMEOUT, run).await {
            Ok(result) => result.map_err(TmuxError::Spawn),
            Err(_) => Err(TmuxError::Timeout {
                command: what.to_string(),
                after: TMUX_TIMEOUT,
            }),
        }
    }

    /// Creates the session, keeps its pane after the process exits, streams the pane to the
    /// transcript and tags the session with its task, all in one tmux command queue, so the
    /// pipe is in place before tmux reads the first byte of output.
    pub async fn spawn_session(&self, spec: &SessionSpec<'_>) -> Result<Spawned, TmuxError> {
        let target = exact_pane(spec.name);
        let mut args: Vec<OsString> = vec![
            "new-session".into(),
            "-d".into(),
            "-P".into(),
            "-F".into(),
            "#{pane_id} #{pane_pid}".into(),
            "-s".into(),
            spec.name.into(),
            "-x".into(),
            spec.width.to_string().into(),
            "-y".into(),
            spec.height.to_string().into(),
            "-c".into(),
            // tmux expands formats in the start directory: `#(…)` would run a command.
            escape_formats(spec.workdir.as_os_str()),
        ];
        for (k, v) in spec.env {
            args.push("-e".into());
            args.push(format!("{k}={v}").into());
        }
        args.push("--".into());
        args.extend(spec.argv.iter().cloned());
        // `exec`: one process per pane for the transcript, not a shell plus cat.
        let died = format!("wait-for -S {}", spec.died_channel);
        // The paths are ours, single-quoted for the shell, with `#` doubled so tmux's format
        // expansion (which would run `#(…)`) leaves them alone.
        let quoted = |p: &Path| shell_quote(&p.to_string_lossy()).replace('#', "##");
        let cat = format!(
            "exec {} __transcript {} {}",
            quoted(spec.transcript_writer),
            spec.transcript_limit,
            quoted(spec.transcript)
        );
        for cmd in [
            // Keep the pane after the wrapper exits until nightshift closes it: without this,
            // tmux may destroy the pane before reading its last output.
            vec!["set-option", "-w", "-t", &target, "remain-on-exit", "on"],
            vec!["pipe-pane", "-t", &target, "-o", &cat],
            // When the pane dies, tmux has read every byte the agent wrote. Say so on a
            // channel the daemon can wait on (`wait-for` remembers a signal nobody waited for).
            vec!["set-hook", "-t", &target, "pane-died", &died],
            vec!["set-option", "-t", &target, TASK_OPTION, spec.task_id],
            vec!["set-option", "-t", &target, HOME_OPTION, spec.home],
            // Keep the server up between tasks: restarting it costs every pickup, and a new
            // session could race a server that is shutting down.
            vec!["set-option", "-g", "exit-empty", "off"],
        ] {
            args.push(";".into());
            args.extend(cmd.into_iter().map(OsString::from));
        }
        let out = self.run("new-session", &args).await?;
        let parse_err = || TmuxError::Parse {
            command: "new-session".into(),
            output: out.clone(),
        };
        let line = out.lines().next().ok_or_else(parse_err)?;
        let (pane_id, pid) = line.split_once(' ').ok_or_else(parse_err)?;
        Ok(Spawned {
            pane_id: pane_id.to_string(),
            pane_pid: pid.trim().parse().map_err(|_| parse_err())?,
        })
    }

    /// Every session on the server. No server, or a server with no sessions, means none.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>, TmuxError> {
        const SEP: &str = "\u{1f}";
        let format = format!(
            "#{{session_name}}{SEP}#{{{TASK_OPTION}}}{SEP}#{{pane_dead}}{SEP}#{{pane_pid}}{SEP}#{{{HOME_OPTION}}}"
        );
        let args: Vec<OsString> = ["list-panes", "-a", "-F", &format]
            .map(OsString::from)
            .into();
        let output = self.output("list-panes", &args).await?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if is_no_server(&stderr) || self.has_no_sessions(&stderr).await {
                return Ok(Vec::new());
            }
            return Err(TmuxError::Failed {
                command: "list-panes".into(),
                stderr: stderr.trim().to_string(),
            });
        }
        let mut sessions: Vec<SessionInfo> = Vec::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let fields: Vec<&str> = line.split(SEP).collect();
            let [name, task, dead, pid, home] = fields[..] else {
                continue;
            };
            // One pane per session; if a person split it, the first pane is the agent.
            if sessions.iter().any(|s| s.name == name) {
                continue;
            }
            sessions.push(SessionInfo {
                name: name.to_string(),
                task_id: task.to_string(),
                home: home.to_string(),
                pane_dead: dead == "1",
                pane_pid: pid.parse().unwrap_or(0),
            });
        }
        Ok(sessions)
    }

    /// Whether `list-panes -a` failed only because the server is up with no session at all
    /// (it says "no current target"): `list-sessions` confirms it by listing nothing.
    async fn has_no_sessions(&self, stderr: &str) -> bool {
        if !stderr.contains("no current target") && !stderr.contains("no sessions") {
            return false;
        }
        let args: Vec<OsString> = ["list-sessions", "-F", "#{session_name}"]
            .map(OsString::from)
            .into();
        match self.output("list-sessions", &args).await {
            Ok(out) => out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace),
            Err(_) => false,
        }
    }

    /// A variable of the session's environment (as set with `-e` at its creation).
    pub async fn session_env(&self, name: &str, var: &str) -> Option<String> {
        let args: Vec<OsString> = vec![
            "show-environment".into(),
            "-t".into(),
            exact_session(name).into(),
            var.into(),
        ];
        let out = self.run("show-environment", &args).await.ok()?;
        out.trim_end()
            .strip_prefix(var)?
            .strip_prefix('=')
            .map(String::from)
    }

    /// Kills a session; one that is already gone is not an error.
    pub async fn kill_session(&self, name: &str) -> Result<(), TmuxError> {
        match self
            .run(
                "kill-session",
                &[
                    "kill-session".into(),
                    "-t".into(),
                    exact_session(name).into(),
                ],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(TmuxError::Failed { stderr, .. })
                if is_no_server(&stderr) || stderr.contains("can't find session") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Kills a session unless it belongs to another home on this server (its
    /// `@nightshift_home` names another home): homes that share a server on purpose may run
    /// tasks of the same id, and each closes only its own sessions.
    pub async fn kill_own_session(&self, name: &str, home: &str) -> Result<(), TmuxError> {
        let sessions = self.list_sessions().await?;
        if sessions
            .iter()
            .any(|s| s.name == name && !s.home.is_empty() && s.home != home)
        {
            return Ok(());
        }
        self.kill_session(name).await
    }

    /// Types `text` literally into the session's pane, then presses Enter. The pause lets
    /// agent UIs that debounce input take the text before the Enter. Control sequences are
    /// taken out first ([`clean_typed`]): an ESC typed into an agent UI interrupts it, and a
    /// sequence could steer the terminal. Returns how many were taken out.
    pub async fn send_line(&self, name: &str, text: &str) -> Result<usize, TmuxError> {
        let target = exact_pane(name);
        let cleaned = clean_typed(text);
        if !cleaned.text.is_empty() {
            self.run(
                "send-keys",
                &[
                    "send-keys".into(),
                    "-t".into(),
                    target.clone().into(),
                    "-l".into(),
                    "--".into(),
                    cleaned.text.into(),
                ],
            )
            .await?;
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
        self.run(
            "send-keys",
            &[
                "send-keys".into(),
                "-t".into(),
                target.into(),
                "Enter".into(),
            ],
        )
        .await?;
        Ok(cleaned.removed)
    }

    /// Pastes `text` into the session's pane as one bracketed paste (so its newlines do not
    /// submit it line by line), waits, then presses Enter: agent UIs drop an Enter that
    /// comes too soon after a paste. Control sequences are taken out first
    /// ([`clean_typed`]), so that nothing in the text can end the paste early and be read
    /// as keystrokes; returns how many were. The text reaches tmux on the stdin of
    /// `load-buffer -`, never in an argument, so its size has no limit but memory.
    pub async fn paste_line(&self, name: &str, text: &str) -> Result<usize, TmuxError> {
        let removed = self.paste(name, text).await?;
        self.press_enter_after_paste(name).await?;
        Ok(removed)
    }

    /// The first half of [`Tmux::paste_line`]: the cleaned text as one bracketed paste, no
    /// Enter. Returns how many control sequences were taken out.
    pub async fn paste(&self, name: &str, text: &str) -> Result<usize, TmuxError> {
        let target = exact_pane(name);
        let buffer = format!("nightshift-{name}");
        let cleaned = clean_typed(text);
        let load: Vec<OsString> = vec![
            "load-buffer".into(),
            "-b".into(),
            buffer.clone().into(),
            "-".into(),
        ];
        self.run_with_input("load-buffer", &load, cleaned.text.into_bytes())
            .await?;
        self.run(
            "paste-buffer",
            &[
                "paste-buffer".into(),
                "-p".into(),
                "-d".into(),
                "-b".into(),
                buffer.into(),
                "-t".into(),
                target.into(),
            ],
        )
        .await?;
        Ok(cleaned.removed)
    }

    /// The second half of [`Tmux::paste_line`]: a pause (agent UIs drop an Enter that
    /// comes too soon after a paste), then Enter.
    pub async fn press_enter_after_paste(&self, name: &str) -> Result<(), TmuxError> {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        self.run(
            "send-keys",
            &[
                "send-keys".into(),
                "-t".into(),
                exact_pane(name).into(),
                "Enter".into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Runs tmux with `input` on its stdin, within the same time limit as [`Tmux::run`].
    async fn run_with_input(
        &self,
        what: &str,
        args: &[OsString],
        input: Vec<u8>,
    ) -> Result<String, TmuxError> {
        use tokio::io::AsyncWriteExt;
        let run = async {
            let mut child = self
                .command_for(what)
                .args(args)
                .stdin(Stdio::piped())
                .spawn()
                .map_err(TmuxError::Spawn)?;
            let mut stdin = child.stdin.take();
            // Written while the output is read, so neither side waits on a full pipe.
            let write = async move {
                if let Some(stdin) = stdin.as_mut() {
                    stdin.write_all(&input).await?;
                    stdin.shutdown().await?;
                }
                drop(stdin);
                Ok::<(), std::io::Error>(())
            };
            let (written, output) = tokio::join!(write, child.wait_with_output());
            let output = output.map_err(TmuxError::Spawn)?;
            if !output.status.success() {
                return Err(TmuxError::Failed {
                    command: what.to_string(),
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                });
            }
            written.map_err(|e| TmuxError::Failed {
                command: what.to_string(),
                stderr: format!("cannot write to its stdin: {e}"),
            })?;
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        match tokio::time::timeout(TMUX_TIMEOUT, run).await {
            Ok(result) => result,
            Err(_) => Err(TmuxError::Timeout {
                command: what.to_string(),
                after: TMUX_TIMEOUT,
            }),
        }
    }

    /// Waits until the pane's process has died and tmux has read all its output, or until
    /// `limit` passes. Returns whether it died in time.
    pub async fn wait_pane_died(&self, channel: &str, limit: std::time::Duration) -> bool {
        let args: [OsString; 2] = ["wait-for".into(), channel.into()];
        let wait = self.run("wait-for", &args);
        matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(_)))
    }

    /// The visible screen of the session's pane, for the waiting-for-input signal.
    pub async fn capture(&self, name: &str) -> Result<String, TmuxError> {
        let args: Vec<OsString> = vec![
            "capture-pane".into(),
            "-p".into(),
            "-J".into(),
            "-t".into(),
            exact_pane(name).into(),
        ];
        self.run("capture-pane", &args).await
    }

    /// Everything the pane shows and has scrolled past.
    pub async fn capture_all(&self, name: &str) -> Result<String, TmuxError> {
        self.run(
            "capture-pane",
            &[
                "capture-pane".into(),
                "-p".into(),
                "-J".into(),
                "-S".into(),
                "-".into(),
                "-E".into(),
                "-".into(),
                "-t".into(),
                exact_pane(name).into(),
            ],
        )
        .await
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

/// Doubles `#`, which tmux format expansion turns back into one.
fn escape_formats(s: &std::ffi::OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::with_capacity(s.len());
    for &b in s.as_bytes() {
        out.push(b);
        if b == b'#' {
            out.push(b'#');
        }
    }
    OsString::from_vec(out)
}

/// The `wait-for` channel of one attempt's pane death. Per attempt, because tmux remembers
/// a signal that nobody waited for.
pub fn died_channel(session: &str, attempt: u32) -> String {
    format!("nightshift-died-{session}-{attempt}")
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

/// Quotes a string for a POSIX shell: `'…'` with embedded quotes closed and escaped.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
