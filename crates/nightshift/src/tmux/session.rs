//! Sessions on the server: create one per task (with its transcript pipe and tags), list,
//! kill, and wait for the pane's end.

use std::ffi::OsString;
use std::path::Path;

use super::{
    ATTEMPT_OPTION, HOME_OPTION, TASK_OPTION, Tmux, TmuxError, exact_pane, exact_session,
    is_no_server, shell_quote,
};

/// What to start in a new session.
#[derive(Debug, Clone)]
pub struct SessionSpec<'a> {
    pub name: &'a str,
    pub task_id: &'a str,
    /// The attempt, stored in [`ATTEMPT_OPTION`]: a close meant for one attempt never
    /// closes the next one's session of the same name.
    pub attempt: u32,
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
        let attempt = spec.attempt.to_string();
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
            vec!["set-option", "-t", &target, ATTEMPT_OPTION, &attempt],
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
        self.close_own_session(name, home, None).await.map(drop)
    }

    /// Captures the last screen of the session (all it shows and has scrolled past) and
    /// kills it, unless it belongs to another home: one tmux client, the check done by tmux
    /// itself ([`own_session_check`]), so the session cannot change hands between the check
    /// and the kill. Returns the screen when the session was this home's and is now closed;
    /// `None` when it was another home's or was already gone. With `attempt`, only that
    /// attempt's session is closed (one made before attempts were recorded counts as it).
    pub async fn close_own_session(
        &self,
        name: &str,
        home: &str,
        attempt: Option<u32>,
    ) -> Result<Option<String>, TmuxError> {
        let args = close_args(name, home, attempt)?;
        closed_screen(self.run("kill-session", &args).await)
    }

    /// [`Tmux::close_own_session`] once the pane's process has died and tmux has read all
    /// its output (the `died_channel` is signalled), in the same client: for a session whose
    /// agent is known to have exited, so its last bytes reach the transcript before the
    /// kill. `None` when it did not die within `limit` (the client is killed, and its queued
    /// close with it; the channel is per attempt, so a close left queued by an older tmux
    /// could only ever close this attempt's session).
    pub async fn close_own_session_once_died(
        &self,
        name: &str,
        home: &str,
        attempt: u32,
        limit: std::time::Duration,
    ) -> Option<Result<Option<String>, TmuxError>> {
        let channel = died_channel(name, attempt);
        let mut args: Vec<OsString> = vec!["wait-for".into(), channel.into(), ";".into()];
        match close_args(name, home, Some(attempt)) {
            Ok(close) => args.extend(close),
            Err(e) => return Some(Err(e)),
        }
        let close = self.run("kill-session", &args);
        let done = tokio::time::timeout(limit, close).await.ok()?;
        Some(closed_screen(done))
    }

    /// Waits until the pane's process has died and tmux has read all its output, or until
    /// `limit` passes, then captures everything the pane shows and has scrolled past: one
    /// tmux client, the capture queued behind the wait. `None` when it did not die in time
    /// (the client is killed, and its queued capture with it) or cannot be captured.
    pub async fn wait_died_and_capture(
        &self,
        channel: &str,
        name: &str,
        limit: std::time::Duration,
    ) -> Option<String> {
        let args: Vec<OsString> = vec![
            "wait-for".into(),
            channel.into(),
            ";".into(),
            "capture-pane".into(),
            "-p".into(),
            "-J".into(),
            "-S".into(),
            "-".into(),
            "-E".into(),
            "-".into(),
            "-t".into(),
            exact_pane(name).into(),
        ];
        let wait = self.run("wait-for", &args);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(screen)) => Some(screen),
            _ => None,
        }
    }
}

/// The `if-shell` of a close: when the session is this home's ([`own_session_check`]), say
/// so, print its whole screen and kill it.
fn close_args(name: &str, home: &str, attempt: Option<u32>) -> Result<Vec<OsString>, TmuxError> {
    // tmux parses the close below as commands: the session name is the one part that
    // varies in it, so it must be a name nightshift makes (`session_name`).
    if !is_plain_session_name(name) {
        return Err(TmuxError::Failed {
            command: "kill-session".into(),
            stderr: format!("{name:?} is not a nightshift session name"),
        });
    }
    let target = exact_session(name);
    let pane = exact_pane(name);
    let close = format!(
        "display-message -p {CLOSED_LINE} ; capture-pane -p -J -S - -E - -t {pane} ; kill-session -t {target}"
    );
    Ok(vec![
        "if-shell".into(),
        "-F".into(),
        "-t".into(),
        pane.into(),
        own_session_check(home, attempt).into(),
        close.into(),
    ])
}

/// What a close printed: the screen when it closed the session; `None` when the session was
/// another home's or already gone.
fn closed_screen(out: Result<String, TmuxError>) -> Result<Option<String>, TmuxError> {
    match out {
        Ok(out) => Ok(out
            .strip_prefix(CLOSED_LINE)
            .and_then(|rest| rest.strip_prefix('\n'))
            .map(str::to_string)),
        Err(TmuxError::Failed { stderr, .. })
            // "no current target": the server is up with no session left at all.
            if is_no_server(&stderr)
                || stderr.contains("can't find")
                || stderr.contains("no current target") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The first line [`Tmux::close_own_session`] prints when it closed the session.
const CLOSED_LINE: &str = "nightshift-closed";

/// Whether `name` is made only of the characters [`session_name`] uses, which tmux's
/// command parser takes literally.
///
/// [`session_name`]: super::session_name
fn is_plain_session_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A tmux format that is `1` when the target session is this home's: tagged with `home`, or
/// untagged (made before homes were recorded). The home is escaped for tmux's format
/// language (`##`, `#,`, `#}`), so no path can end the comparison early or run `#(…)`.
fn own_session_check(home: &str, attempt: Option<u32>) -> String {
    let mut escaped = String::with_capacity(home.len());
    for c in home.chars() {
        if matches!(c, '#' | ',' | '}') {
            escaped.push('#');
        }
        escaped.push(c);
    }
    let home = format!("#{{?#{{{HOME_OPTION}}},#{{==:#{{{HOME_OPTION}}},{escaped}}},1}}");
    match attempt {
        Some(n) => format!(
            "#{{&&:{home},#{{?#{{{ATTEMPT_OPTION}}},#{{==:#{{{ATTEMPT_OPTION}}},{n}}},1}}}}"
        ),
        None => home,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_session_check_escapes_what_tmux_formats_treat_specially() {
        assert_eq!(
            own_session_check("/h/a,b}c#(x)", None),
            "#{?#{@nightshift_home},#{==:#{@nightshift_home},/h/a#,b#}c##(x)},1}"
        );
        assert_eq!(
            own_session_check("/h", Some(2)),
            "#{&&:#{?#{@nightshift_home},#{==:#{@nightshift_home},/h},1},#{?#{@nightshift_attempt},#{==:#{@nightshift_attempt},2},1}}"
        );
    }

    #[test]
    fn only_names_nightshift_makes_reach_a_tmux_command_string() {
        assert!(is_plain_session_name(&super::super::session_name("a b;c")));
        assert!(is_plain_session_name("ns-fix_2"));
        for bad in ["", "ns-a b", "ns-a;kill-server", "ns-'x'", "ns-a:b"] {
            assert!(!is_plain_session_name(bad), "{bad:?}");
        }
    }
}
