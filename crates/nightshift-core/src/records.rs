//! Plain records shared by the core, the store and the edges.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Done,
    Failed,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Done,
        TaskState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DoneSource {
    /// `nightshift done`
    Command,
    /// the completion marker in the output
    Marker,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoneRecord {
    pub ok: bool,
    pub summary: Option<String>,
    pub source: DoneSource,
    pub at: Timestamp,
}
