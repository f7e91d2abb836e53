//! The signals, their flags and thresholds, and what changed.

use std::time::Duration;

use jiff::Timestamp;
use regex::Regex;

use super::detectors::{ERROR_PATTERNS, WAITING_PATTERNS, compile};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    NoCommits,
    RepeatedError,
    Waiting,
    Silence,
    /// The agent CLI keeps retrying its API (server errors, per-minute rate limits).
    Retrying,
    /// The task's wall-clock limit was reached.
    Timeout,
    /// The agent exited without signalling done, or its session vanished.
    Died,
}

impl Signal {
    /// What a raised flag does when nothing is configured: heuristics only notify; a timeout
    /// stops the agent; a dead agent is tried again while attempts remain.
    pub fn default_policy(self) -> crate::Policy {
        match self {
            Signal::Timeout => crate::Policy::Stop,
            Signal::Died => crate::Policy::Restart,
            _ => crate::Policy::Notify,
        }
    }

    /// Whether `policy` makes sense for this signal: a dead agent cannot be left running.
    pub fn check_policy(self, policy: crate::Policy) -> Result<(), String> {
        if self == Signal::Died && policy == crate::Policy::Notify {
            return Err(
                "died: the agent is gone, so the policy is `restart` (the default) or `stop`"
                    .into(),
            );
        }
        Ok(())
    }

    /// The kebab-case name used in config, files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Signal::NoCommits => "no-commits",
            Signal::RepeatedError => "repeated-error",
            Signal::Waiting => "waiting",
            Signal::Silence => "silence",
            Signal::Retrying => "retrying",
            Signal::Timeout => "timeout",
            Signal::Died => "died",
        }
    }
}

/// What an agent's own hooks (Claude Code's) say about it: precise where the screen guesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// It asks a person: a permission prompt, a question dialog, or idling at its prompt.
    NeedsInput(String),
    /// It works: a prompt was submitted, or a tool has run.
    Working,
    /// A tool (named) is about to run: working, unless a permission dialog stops it. If
    /// no [`Hook::Working`] follows within [`Thresholds::tool_window`], the screen is read
    /// for that dialog, well before the agent's own permission notification.
    ToolRequested(String),
    /// A tool failed (it worked, then reported this error). The error's fingerprint: one
    /// normalised line (see [`error_fingerprint`](super::error_fingerprint)), counted
    /// like an error line of the output for the repeated-error signal.
    ToolFailed(String),
    /// A turn ended; unless done was signalled, it now waits at its prompt. Its last words.
    TurnEnded(String),
    /// An API error ended the turn.
    TurnFailed(String),
}

/// A raised signal: since when (the moment its condition was met) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flag {
    pub signal: Signal,
    pub since: Timestamp,
    pub evidence: String,
}

/// Thresholds; `None` switches a signal off.
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub no_commits: Option<Duration>,
    /// This many error lines that normalise the same, within this window.
    pub repeated_error: Option<(u32, Duration)>,
    pub silence: Option<Duration>,
    /// Retrying the API for this long.
    pub retrying: Option<Duration>,
    pub waiting: bool,
    /// A question counts only once output has been quiet this long (it may still be streaming).
    pub input_debounce: Duration,
    /// A tool announced by a hook that has not finished after this long may be waiting at a
    /// permission dialog: the screen is read then (whatever the output does), and again
    /// while it stays pending. Claude Code 2.1.332 draws its dialog about 170 ms after
    /// `PreToolUse`; quick tools finish in 30-220 ms, so most never need a look.
    pub tool_window: Duration,
    /// Lines that look like errors. Benign mentions (`"is_error": false`, `errors: 0`,
    /// `0 errors`, `no errors`) are cut from a line before these are tried.
    pub error_patterns: Vec<Regex>,
    /// Screen lines that ask the user something. Numbered yes/no menus and a plain question
    /// as the last line are recognised on top of these.
    pub waiting_patterns: Vec<Regex>,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            no_commits: Some(Duration::from_secs(15 * 60)),
            repeated_error: Some((5, Duration::from_secs(10 * 60))),
            silence: Some(Duration::from_secs(10 * 60)),
            retrying: Some(Duration::from_secs(5 * 60)),
            waiting: true,
            input_debounce: Duration::from_secs(2),
            tool_window: Duration::from_millis(300),
            error_patterns: compile(ERROR_PATTERNS),
            waiting_patterns: compile(WAITING_PATTERNS),
        }
    }
}

impl Thresholds {
    /// Builds patterns from strings (config); an invalid regex is an error naming it. A
    /// non-empty list replaces the built-ins; an empty one keeps them.
    pub fn with_patterns(errors: &[String], waiting: &[String]) -> Result<Thresholds, String> {
        fn build(kind: &str, list: &[String], into: &mut Vec<Regex>) -> Result<(), String> {
            if !list.is_empty() {
                *into = list
                    .iter()
                    .map(|p| {
                        Regex::new(p).map_err(|e| format!("invalid {kind} pattern `{p}`: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            Ok(())
        }
        let mut t = Thresholds::default();
        build("error", errors, &mut t.error_patterns)?;
        build("waiting", waiting, &mut t.waiting_patterns)?;
        Ok(t)
    }
}

/// What changed in a run's flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub raised: Vec<Flag>,
    pub cleared: Vec<Signal>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.raised.is_empty() && self.cleared.is_empty()
    }
}
