//! What the core tells the daemon to do.

use std::path::PathBuf;

use crate::attention;
use crate::records::TaskState;
use crate::task::Task;

// Moved a handful of times each; boxing the task would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Claim the task (move it to `running/`, unless `claim` is false because it is there
    /// already) and start its agent.
    Start {
        task: Task,
        attempt: u32,
        claim: bool,
    },
    /// Move an invalid file aside to `failed/` with its error next to it.
    Reject { path: PathBuf, error: String },
    /// A queued task can never run: file it in `failed/` with the reason.
    FailQueued { id: String, reason: String },
    /// The attempt failed and another is allowed: record it and put the task back in `queue/`.
    /// With `resume`, the next attempt resumes this one's agent session.
    Requeue {
        id: String,
        attempt: u32,
        reason: String,
        resume: Option<String>,
    },
    /// Run the acceptance checks (and deal with uncommitted work) for a done signal, and
    /// report [`Event::Checked`]. `round` counts from 1.
    Check {
        id: String,
        attempt: u32,
        round: u32,
    },
    /// Type a message into the agent's session (failed checks go back to it).
    Tell {
        id: String,
        attempt: u32,
        text: String,
    },
    /// The task is finished: append the report and move the file to `done/` or `failed/`.
    Finish {
        id: String,
        attempt: u32,
        outcome: TaskState,
        reason: String,
        attempts: u32,
        summary: Option<String>,
    },
    /// Kill a tmux session.
    CloseSession { session: String },
    /// The attempt's attention flags changed: record them (`flags` is the whole set now).
    Attention {
        id: String,
        attempt: u32,
        flags: Vec<attention::Flag>,
        change: attention::Change,
    },
    /// Read the pane's screen and report it as [`Observation::Screen`].
    CaptureScreen { id: String, attempt: u32 },
    /// Look at the workdir's HEAD and report a new commit as [`Observation::Commit`].
    CheckHead { id: String, attempt: u32 },
    /// The run is still flagged after the re-notify interval: tell a person again.
    Remind {
        id: String,
        attempt: u32,
        flags: Vec<attention::Flag>,
    },
    /// Undo a claim whose start never got going: remove the attempt's folder and put the
    /// task back in `queue/` untouched.
    Unclaim { id: String, attempt: u32 },
    /// The home's disk is full: hold (running agents go on, nothing new starts), and tell
    /// a person when `notify` (once, until a start succeeds again).
    DiskHold { what: String, notify: bool },
    /// Space is back: starts resume.
    DiskResume,
    /// A run hit a usage or rate limit: mark it limited until `until`, and tell a person
    /// when `notify` (once per hold of the profile).
    Limited {
        id: String,
        attempt: u32,
        profile: String,
        kind: crate::limits::LimitKind,
        until: jiff::Timestamp,
        evidence: String,
        notify: bool,
    },
    /// A profile's hold is over (its time came, a person lifted it, or one of its runs
    /// went on by itself): new starts of it go on, and these runs (id, attempt) are no
    /// longer limited.
    LimitLifted {
        profile: String,
        by_hand: bool,
        runs: Vec<(String, u32)>,
    },
}
