//! The store's errors: each says what failed and where.

use std::io;
use std::path::{Path, PathBuf};

use nightshift_core::records::TaskState;

/// A store operation failed: what, and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the folder store.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The store did not answer in time; the operation may or may not have happened. The
    /// daemon treats it as failed: a claim as lost (a task it did claim stays `running` until
    /// a restart adopts it), a filing as to be tried again (which finds it done).
    #[error("the task store did not answer within {} s ({what})", limit.as_secs_f32())]
    TimedOut {
        what: &'static str,
        limit: std::time::Duration,
    },
    /// A database backend failed or could not be reached; the message says which.
    #[error("{message}")]
    Database { message: String },
    /// A write for a claim that is no longer this daemon's: another host took the task over
    /// (its fencing token moved on), so the write was refused.
    #[error("task `{id}` was taken over by another daemon; this daemon's write was refused")]
    Superseded { id: String },
}

impl StoreError {
    /// Whether the failure was a full disk (the daemon holds new work until there is room).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => crate::fsutil::is_disk_full(source),
            _ => false,
        }
    }
}

pub(crate) fn at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs one store call with a time limit, so a store that does not answer (a database
/// behind a partition) fails the call instead of stalling the caller.
pub async fn within<T, E: From<StoreError>>(
    what: &'static str,
    limit: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::TimedOut { what, limit }.into()),
    }
}

/// Why a task could not be added.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("`{id}` is not a valid task id: {reason}")]
    InvalidId { id: String, reason: String },
    #[error("a task with id `{id}` already exists ({})", state.as_str())]
    Exists { id: String, state: TaskState },
    #[error(transparent)]
    Store(#[from] StoreError),
}
