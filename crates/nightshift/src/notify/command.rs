//! The command channel: the user's argv, run directly (never through a shell), with the
//! event in `NIGHTSHIFT_NOTIFY_*` environment variables.

use std::process::Stdio;

use super::worker::tail;
use super::{COMMAND_TIMEOUT, Notification};

pub(super) async fn run(argv: &[String], n: &Notification) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let json = serde_json::to_string(n).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("NIGHTSHIFT_NOTIFY_EVENT", n.event.as_str())
        .env("NIGHTSHIFT_NOTIFY_TASK", n.task_id.as_deref().unwrap_or(""))
        .env("NIGHTSHIFT_NOTIFY_TITLE", &n.title)
        .env("NIGHTSHIFT_NOTIFY_BODY", &n.body)
        .env(
            "NIGHTSHIFT_NOTIFY_ATTACH",
            n.attach.as_deref().unwrap_or(""),
        )
        .env("NIGHTSHIFT_NOTIFY_JSON", json)
        // The night report's page (`report` events); empty otherwise.
        .env(
            "NIGHTSHIFT_NOTIFY_FILE",
            n.file
                .as_deref()
                .map(std::path::Path::as_os_str)
                .unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // On timeout the future is dropped, which kills the child.
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Err(_) => return Err(format!("`{program}` timed out after {COMMAND_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("`{program}`: {e}")),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "`{program}` exited with {}: {}",
        output.status,
        tail(&stderr, 300)
    ))
}
