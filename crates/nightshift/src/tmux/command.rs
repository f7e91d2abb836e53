//! Running one tmux command on the server: argv only, a time limit, and stdin when the
//! text is too large for an argument.

use std::ffi::OsString;
use std::process::Stdio;

use tokio::process::Command;

use super::{TMUX_TIMEOUT, Tmux, TmuxError};

impl Tmux {
    /// Under systemd, the command that may start the tmux server runs in its own transient
    /// scope: a server forked inside the service's cgroup would die with every agent on
    /// `systemctl --user restart`.
    pub(super) fn command_for(&self, what: &str) -> Command {
        let mut cmd = if self.scoped && what == "new-session" {
            let mut c = Command::new("systemd-run");
            c.args(["--user", "--scope", "--quiet", "--collect", "--", "tmux"]);
            c
        } else {
            Command::new("tmux")
        };
        cmd.args(self.socket_args())
            // The server (started by the first command) passes its environment to every
            // agent: the database's credentials stay with the daemon.
            .env_remove("NIGHTSHIFT_STORE_PASSWORD")
            .env_remove("NIGHTSHIFT_STORE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    pub(super) async fn run(&self, what: &str, args: &[OsString]) -> Result<String, TmuxError> {
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
    pub(super) async fn output(
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

    /// Runs tmux with `input` on its stdin, within the same time limit as [`Tmux::run`].
    pub(super) async fn run_with_input(
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
}
