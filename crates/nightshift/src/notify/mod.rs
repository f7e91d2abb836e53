//! Notification channels: desktop pop-ups, webhooks and user commands.
//!
//! [`Notifier::send`] only enqueues; one tokio task per channel delivers, rate-limits
//! (coalescing what arrives meanwhile) and retries with backoff, so a slow or broken
//! channel never blocks the daemon or the other channels.
//!
//! Here: the configuration, the events and their validation. The queue and delivery
//! worker is in `worker.rs`; each channel's delivery in its own file.

mod command;
mod desktop;
mod webhook;
mod worker;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

pub use worker::Notifier;

/// One `[[notify]]` entry in config.toml.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// "desktop", "webhook" or "command".
    pub kind: ChannelKind,
    /// webhook: the URL (http or https).
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: "json" (default: the Notification as JSON), "ntfy" (plain-text body,
    /// Title/Tags/Priority headers as ntfy.sh expects), "slack" (`{"text": ...}`).
    #[serde(default)]
    pub preset: Option<String>,
    /// command: argv, run directly (never a shell), with the event in NIGHTSHIFT_NOTIFY_* env vars.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Which events: any of "attention", "cleared", "done", "failed", "drained", "held",
    /// "limited", "report". Default: attention, done, failed, held, limited, report.
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
    /// At most one message per this interval per channel (messages in between are merged
    /// into the next). Default "5s".
    #[serde(default)]
    pub min_interval: Option<String>,
}

#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Desktop,
    Webhook,
    Command,
}

#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Attention,
    Cleared,
    Done,
    Failed,
    Drained,
    /// The queue is held: the home's disk is full.
    Held,
    /// An agent hit its plan's usage limit or the API's rate limit: its profile is held.
    Limited,
    /// The night report, at `[report] at`: the summary, and the page in `file`.
    Report,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Attention => "attention",
            EventKind::Cleared => "cleared",
            EventKind::Done => "done",
            EventKind::Failed => "failed",
            EventKind::Drained => "drained",
            EventKind::Held => "held",
            EventKind::Limited => "limited",
            EventKind::Report => "report",
        }
    }

    /// Orders events when several are merged into one message: the merged one takes
    /// the most urgent kind, so e.g. ntfy's priority is not lowered by a trailing "done".
    fn urgency(self) -> u8 {
        match self {
            EventKind::Failed | EventKind::Held => 4,
            EventKind::Limited => 3,
            EventKind::Attention => 3,
            EventKind::Done => 2,
            EventKind::Drained | EventKind::Report => 1,
            EventKind::Cleared => 0,
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelKind::Desktop => "desktop",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Command => "command",
        })
    }
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Notification {
    pub event: EventKind,
    pub task_id: Option<String>,
    /// One line: what happened to which task, e.g. "nightshift: fix-bug needs attention (waiting)".
    pub title: String,
    /// Why, with the evidence, and the exact command to attach.
    pub body: String,
    /// e.g. "nightshift attach fix-bug" (None for drained).
    pub attach: Option<String>,
    pub at: jiff::Timestamp,
    /// A file that goes with it: the night report's page (`report` events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<std::path::PathBuf>,
}

const DEFAULT_EVENTS: [EventKind; 6] = [
    EventKind::Attention,
    EventKind::Done,
    EventKind::Failed,
    EventKind::Held,
    EventKind::Limited,
    // Sent only when `[report] at` is set.
    EventKind::Report,
];
const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// How long a command or desktop pop-up may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-channel queue; when full (a channel stuck for a long time) new messages are dropped
/// with a warning rather than growing memory or blocking the caller.
const QUEUE_CAPACITY: usize = 256;
/// At most this many queued messages are merged into one delivery.
const MAX_BATCH: usize = 50;

/// Validates channel configs (kind-specific fields present, URL parses as http/https,
/// command non-empty, durations parse); errors name the entry index and the problem.
pub fn validate(channels: &[ChannelConfig]) -> Result<(), String> {
    let mut errors = Vec::new();
    for (i, c) in channels.iter().enumerate() {
        let mut problem = |p: String| {
            errors.push(format!("[[notify]] entry {} ({}): {p}", i + 1, c.kind));
        };
        match c.kind {
            ChannelKind::Webhook => match c.url.as_deref() {
                None => problem("missing `url`".into()),
                Some(url) => {
                    if let Err(e) = webhook::check_url(url) {
                        problem(e);
                    }
                }
            },
            _ if c.url.is_some() => problem("`url` is only for kind = \"webhook\"".into()),
            _ => {}
        }
        match (c.kind, c.preset.as_deref()) {
            (ChannelKind::Webhook, Some(p)) => {
                if let Err(e) = webhook::Preset::parse(p) {
                    problem(e);
                }
            }
            (_, Some(_)) => problem("`preset` is only for kind = \"webhook\"".into()),
            _ => {}
        }
        match (c.kind, c.command.as_deref()) {
            (ChannelKind::Command, None) => problem("missing `command` (an argv list)".into()),
            (ChannelKind::Command, Some(argv))
                if argv.first().is_none_or(std::string::String::is_empty) =>
            {
                problem("`command` must start with a program name".into());
            }
            (ChannelKind::Command, Some(_)) => {}
            (_, Some(_)) => problem("`command` is only for kind = \"command\"".into()),
            _ => {}
        }
        if c.events.as_ref().is_some_and(std::vec::Vec::is_empty) {
            problem("`events` is empty (leave it out for the default)".into());
        }
        if let Some(Err(e)) = c
            .min_interval
            .as_deref()
            .map(nightshift_core::duration::parse)
        {
            problem(format!("`min_interval`: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
