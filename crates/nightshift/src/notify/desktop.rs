//! The desktop channel: `notify-send` on Linux, `osascript` on macOS.

use std::process::Stdio;

use super::worker::{Outcome, tail};
use super::{COMMAND_TIMEOUT, Notification};

/// Desktop pop-up through the OS tool; title and body go as argv, never into a script.
pub(super) async fn send(n: &Notification) -> Outcome {
    let (program, mut cmd) = if cfg!(target_os = "macos") {
        let mut cmd = tokio::process::Command::new("osascript");
        cmd.args([
            "-e",
            "on run argv",
            "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e",
            "end run",
        ]);
        ("osascript", cmd)
    } else {
        let mut cmd = tokio::process::Command::new("notify-send");
        // `--` so a title starting with `-` is not taken for an option.
        cmd.arg("--");
        ("notify-send", cmd)
    };
    // A pop-up cannot hold a report: it shows where the page is.
    let body = match &n.file {
        Some(file) => format!("{}\n{}", first_line(&n.body), file.display()),
        None => n.body.clone(),
    };
    cmd.arg(&n.title)
        .arg(body)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Unavailable(format!("`{program}` is not on PATH"));
        }
        Err(e) => return Outcome::Failed(format!("cannot run `{program}`: {e}")),
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Err(_) => Outcome::Failed(format!("`{program}` timed out")),
        Ok(Err(e)) => Outcome::Failed(format!("`{program}`: {e}")),
        Ok(Ok(out)) if out.status.success() => Outcome::Sent,
        Ok(Ok(out)) => Outcome::Failed(format!(
            "`{program}` exited with {}: {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 300)
        )),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
