//! Exit codes (documented in the README) and the error that carries one: shared by the CLI,
//! the dashboard, the client actions and the dev tools, and read by `main`.

pub const SUCCESS: i32 = 0;
/// Something failed (the message says what).
pub const FAILURE: i32 = 1;
/// The command line was wrong.
pub const USAGE: i32 = 2;
/// The command needs the daemon and it is not running.
pub const NOT_RUNNING: i32 = 3;
/// No task has that id.
pub const NOT_FOUND: i32 = 4;
/// `wait --timeout` ran out before the tasks finished (the `timeout` command's code).
pub const TIMEOUT: i32 = 124;

/// An error with a specific exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(id: &str) -> Self {
        CliError::new(
            NOT_FOUND,
            format!("no task `{id}` in queue/, running/, done/ or failed/"),
        )
    }
}
