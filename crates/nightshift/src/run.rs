//! The records of one attempt, in `runs/<task>/<attempt>/`.
//!
//! Each record is written by exactly one party, atomically, and never rewritten:
//!
//! | file | writer | meaning |
//! |---|---|---|
//! | `prompt.md` | daemon | the prompt the agent got |
//! | `spawn.json` | daemon | argv, workdir, session, git HEAD and boot clock at start |
//! | `started.json` | pane wrapper | the agent process was started |
//! | `transcript.log` | `nightshift __transcript` (tmux `pipe-pane`) | what the pane showed: all of it, or its start and a marker line with the bytes skipped when it is over `transcript_limit` |
//! | `transcript.N.log` | `nightshift __transcript` | the latest output of a transcript over its limit (the last two kept) |
//! | `done.json` | `nightshift done` or the daemon (marker) | the agent signalled done |
//! | `exit.json` | pane wrapper | the agent process ended |
//! | `screen.txt` | daemon | the pane's last screen and scrollback, once the agent exited |
//! | `attention.json` | daemon | the attention flags now (rewritten when they change) |
//! | `ack.json` | `nightshift ack` | a person acknowledged the flags |
//! | `hook-settings.json` | daemon | the agent's hook settings (Claude Code `--settings`) |
//! | `hooks.jsonl` | `nightshift hook` | the agent's hook events, one a line |
//! | `session.json` | `nightshift hook` | the agent's own session id (SessionStart) |
//! | `verify-N.json` | daemon | the acceptance checks of round N |
//! | `done-N.json` | daemon | a done signal whose checks failed in round N (moved aside) |
//! | `resumed.json` | daemon | this attempt resumed an earlier one's agent session |
//! | `cancel.json` | daemon | a person cancelled the run |
//! | `report.json` | daemon | the attempt's outcome |
//! | `events.jsonl` | daemon (and `nightshift send`: `sent`) | a log of what happened, one JSON object a line |
//!
//! Because these files are the state, a restarted daemon rebuilds a run from them and the
//! live tmux sessions: crash recovery is the ordinary start-up path.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use nightshift_store::fsutil;

pub use nightshift_core::records::{DoneRecord, DoneSource};

pub const PROMPT: &str = "prompt.md";
pub const SPAWN: &str = "spawn.json";
pub const STARTED: &str = "started.json";
pub const TRANSCRIPT: &str = "transcript.log";
pub const DONE: &str = "done.json";
pub const EXIT: &str = "exit.json";
pub const CANCEL: &str = "cancel.json";
pub const REPORT: &str = "report.json";
pub const EVENTS: &str = "events.jsonl";
/// The pane's final screen and scrollback, saved by tmux itself when the pane dies.
pub const SCREEN: &str = "screen.txt";
/// The attempt's attention flags, as the daemon last decided them.
pub const ATTENTION: &str = "attention.json";
/// The attempt waits out a usage or rate limit ([`LimitedRecord`]); gone once it continues.
pub const LIMITED: &str = "limited.json";
/// A person acknowledged the flags (`nightshift ack`).
pub const ACK: &str = "ack.json";
/// The hook settings given to the agent (Claude Code's `--settings`).
pub const HOOK_SETTINGS: &str = "hook-settings.json";
/// The agent's hook events, appended by `nightshift hook`.
pub const HOOKS: &str = "hooks.jsonl";
/// The agent's own session id, from its SessionStart hook.
pub const SESSION: &str = "session.json";
/// The acceptance checks of one round (`verify-1.json`, …).
pub fn verify_file(round: u32) -> String {
    format!("verify-{round}.json")
}
/// A done record that a failed acceptance check sent back (`done-1.json`, …).
pub fn done_of_round(round: u32) -> String {
    format!("done-{round}.json")
}
/// The `events.jsonl` event of a person typing into the agent (`nightshift send`).
pub const SENT_EVENT: &str = "sent";
/// The setup commands' results, when a new worktree was set up.
pub const SETUP: &str = "setup.json";
/// The process group of the setup or check command running now (see
/// [`crate::checks::kill_recorded`]).
pub const CHECK_GROUP: &str = "check-group";
/// How far the transcript had been read when failed checks went back to the agent: a
/// restarted daemon reads on from there, not from a done marker the checks already judged.
pub const TOLD_AT: &str = "told-at";

/// Written once a typed prompt is in the agent's terminal: a daemon killed before then types
/// it after the restart.
pub const TYPED: &str = "typed.json";
/// Written once a typed prompt is pasted, before its Enter: a daemon killed in between
/// leaves the paste in the agent's input, so the next one only presses Enter.
pub const PASTED: &str = "pasted.json";

/// Why and what the next attempt resumes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResumeRecord {
    pub session_id: String,
    pub from_attempt: u32,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpawnRecord {
    pub task_id: String,
    pub attempt: u32,
    pub agent: String,
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    /// Extra environment for the agent (the task's and the profile's).
    pub env: Vec<(String, String)>,
    pub session: String,
    /// When the task was claimed for this attempt.
    pub claimed_at: Timestamp,
    /// `git rev-parse HEAD` in the workdir when the attempt started, if it is a repo.
    pub git_head: Option<String>,
    /// A file the agent reads as its stdin (profiles with `prompt = "stdin"`).
    #[serde(default)]
    pub stdin_file: Option<PathBuf>,
    /// The agent session this attempt resumed, if it did.
    #[serde(default)]
    pub resumed_session: Option<String>,
    /// The task's own worktree and branch, when it runs isolated.
    #[serde(default)]
    pub worktree: Option<crate::worktree::Worktree>,
    /// How the prompt the agent gets differs from the task's (typed prompts lose their
    /// control sequences).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_note: Option<String>,
    /// The prompt (`prompt.md`) is typed into the terminal once the agent is up.
    #[serde(default)]
    pub typed_prompt: bool,
    /// The boot clock when the task was claimed: timeouts count from it, not from the wall
    /// clock, across a daemon restart (in the same boot).
    #[serde(default)]
    pub boot: Option<BootStamp>,
    /// What its branch does at done (`push:`, `pr:`), settled at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing: Option<nightshift_core::landing::Landing>,
}

/// A reading of the boot clock (`CLOCK_BOOTTIME`), and which boot it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootStamp {
    /// `/proc/sys/kernel/random/boot_id`
    pub boot_id: String,
    /// Milliseconds since boot, counting suspend.
    pub boottime_ms: u64,
}

/// `typed.json`: when the typed prompt went in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TypedRecord {
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartedRecord {
    pub pid: u32,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    /// The agent's exit code, if it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Why the agent could not be started at all (missing binary, bad workdir).
    pub error: Option<String>,
    pub at: Timestamp,
    /// The session was closed under it (tmux killed, logout, reboot): the wrapper passed a
    /// hangup on. Such an agent did not give up; it may be resumed.
    #[serde(default)]
    pub hangup: bool,
}

impl ExitRecord {
    pub fn describe(&self) -> String {
        if let Some(e) = &self.error {
            return format!("the agent could not be started: {e}");
        }
        match (self.code, self.signal) {
            (Some(c), _) => format!("the agent exited with code {c}"),
            (None, Some(s)) => format!("the agent was killed by signal {s}"),
            (None, None) => "the agent exited".to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CancelRecord {
    pub at: Timestamp,
}

/// One attempt's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn transcript(&self) -> PathBuf {
        self.file(TRANSCRIPT)
    }

    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(&self.path)
    }

    /// Writes a record atomically. Records are private to the user (0600).
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.file(name), &json, 0o600)
    }

    /// Reads a record; `Ok(None)` when it does not exist. A record that does not parse is an
    /// error naming the file, never silently ignored.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        let path = self.file(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        self.file(name).exists()
    }

    /// Appends to `events.jsonl`. Best effort: the event log is for people, not for recovery.
    pub fn log_event(&self, at: Timestamp, event: &str, detail: &str) {
        let line = serde_json::json!({ "at": at, "event": event, "detail": detail });
        if let Err(e) = fsutil::append_line(&self.file(EVENTS), &line.to_string(), 0o600) {
            tracing::warn!("cannot append to {}: {e}", self.file(EVENTS).display());
        }
    }
}

pub use nightshift_store::folder::history::{
    BUDGET_FROM, RESUME_NEXT, RESUMED, attempt_counts, attempts, resumes,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AttentionRecord {
    pub flags: Vec<nightshift_core::attention::Flag>,
    pub updated_at: Option<Timestamp>,
}

/// A run waiting out a limit of its agent's plan or API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LimitedRecord {
    pub profile: String,
    pub kind: nightshift_core::limits::LimitKind,
    pub since: Timestamp,
    pub until: Timestamp,
    pub evidence: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AckRecord {
    pub at: Timestamp,
}
