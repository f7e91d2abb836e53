//! What the daemon tells the core: the world, turned into events.

use std::path::PathBuf;

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::attention;
use crate::records::{DoneRecord, TaskState};
use crate::task::Task;

/// How a restarted daemon found an attempt of a task in `running/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// Claimed, but the agent was never started: start it now (this is not a second run).
    NotStarted,
    /// The agent was started; its session may or may not still be alive. The daemon replays
    /// the run's done/exit records after this.
    Started,
}

// Events and actions are moved a handful of times each; boxing the task would only add
// allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The queue folder as it is now, and the ids in `done/` and `failed/`.
    Scanned {
        queued: Vec<QueuedTask>,
        invalid: Vec<Invalid>,
        finished: BTreeMap<String, TaskState>,
    },
    /// A task's file reached `done/` or `failed/`.
    Filed { id: String, state: TaskState },
    /// A task found in `running/` at start-up, with what its records say of its history.
    Recovered {
        task: Task,
        attempt: u32,
        counted_attempts: u32,
        started_at: Timestamp,
        how: Recovered,
        /// Resumes of the task so far.
        resumes: u32,
        /// Acceptance-check rounds of this attempt that failed.
        failed_rounds: u32,
        /// The checkout it holds, if it runs in place.
        lock: Option<String>,
    },
    /// The session exists and the agent is starting.
    Started { id: String, attempt: u32 },
    /// The agent could not be started.
    StartFailed {
        id: String,
        attempt: u32,
        reason: String,
        retry: bool,
    },
    /// The task file vanished from `queue/` before it could be claimed.
    ClaimLost { id: String },
    /// A running task's claim is another daemon's now (a shared store gave it to another
    /// host after this one's lease lapsed): its agent here stops, and nothing is filed.
    TakenOver { id: String },
    /// New lines of the agent's output.
    Output {
        id: String,
        attempt: u32,
        lines: Vec<String>,
    },
    /// The agent ran `nightshift done`.
    Done {
        id: String,
        attempt: u32,
        record: DoneRecord,
    },
    /// The agent process ended.
    Exited {
        id: String,
        attempt: u32,
        how: String,
        /// Its session was closed under it (a hangup was passed on).
        hangup: bool,
    },
    /// The acceptance checks of a done signal ran.
    Checked {
        id: String,
        attempt: u32,
        passed: bool,
        /// One line for the report when they failed.
        summary: String,
        /// The message for the agent when they failed: what ran and what it printed.
        feedback: String,
    },
    /// The session disappeared without the agent's exit being recorded.
    SessionGone { id: String, attempt: u32 },
    /// A person cancelled a running task.
    Cancel { id: String },
    /// Something seen about a running attempt, for the attention signals.
    Observed {
        id: String,
        attempt: u32,
        what: Observation,
    },
    /// A person acknowledged the task's attention flags.
    Ack { id: String },
    /// The queue was paused (nothing new starts) or resumed.
    Paused(bool),
    /// A start failed because the home's disk is full (`what` failed). The attempt does not
    /// count: the task goes back to the queue as it was, and nothing new starts.
    StartHeld {
        id: String,
        attempt: u32,
        what: String,
    },
    /// Writing to the home failed because its disk is full: nothing new starts.
    DiskFull { what: String },
    /// The home's free space, looked at while held.
    DiskSpace { available: u64 },
    /// A person lifted the hold of one profile (or of all) for a usage or rate limit: its
    /// limited agents continue now.
    ResumeLimited { profile: Option<String> },
    /// Time passed.
    Tick,
}

/// What the edges report about a running attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The workdir has a new commit.
    Commit,
    /// The workdir is not a git repository: no-commits does not apply.
    NotARepo,
    /// The pane's visible screen, read after the output went quiet.
    Screen(String),
    /// The agent's own hooks reported an event.
    Hook(attention::Hook),
    /// The agent's own session id (for resuming it).
    AgentSession(String),
}

impl Event {
    /// Whether the event can change what a live view shows. Output and ticks that decide
    /// nothing do not; waking every dashboard at the agents' output rate would be waste.
    pub fn may_show(&self) -> bool {
        !matches!(
            self,
            Event::Output { .. }
                | Event::Tick
                | Event::Observed {
                    what: Observation::Screen(_) | Observation::Hook(_),
                    ..
                }
        )
    }
}

impl Observation {
    /// What a look at a running attempt's workdir shows: not a repository, or a new commit
    /// when HEAD is not the last one seen (or, at first, the one the attempt started on).
    pub fn of_head(repo: bool, head: Option<&str>, last: Option<&str>) -> Option<Observation> {
        if !repo {
            return Some(Observation::NotARepo);
        }
        (head.is_some() && head != last).then_some(Observation::Commit)
    }
}

/// A valid task in `queue/`, with its attempt history.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTask {
    pub task: Task,
    /// Where the file is.
    pub path: PathBuf,
    /// The highest attempt number so far (0 if never run).
    pub last_attempt: u32,
    /// Attempts that count against `max_attempts`.
    pub counted_attempts: u32,
    /// The next attempt resumes the agent's session (it does not count against the budget).
    pub resume: bool,
    /// Attempts so far that were resumes.
    pub resumes: u32,
    /// The checkout it runs in place in (`isolation: none` in a git repository): one task at
    /// a time there.
    pub lock: Option<String>,
    /// Why its last attempt ended without a word from the daemon that ran it: that daemon's
    /// host was lost (a shared store requeued it). Counted against the budget.
    pub lost: Option<String>,
}

/// A file in `queue/` that is not a valid task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: PathBuf,
    pub error: String,
}
