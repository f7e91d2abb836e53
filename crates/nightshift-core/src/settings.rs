//! The knobs the core takes from the configuration, and what a flag does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::attention;

/// The knobs the core needs, taken from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_agents: usize,
    pub default_max_attempts: u32,
    pub default_timeout: Option<Duration>,
    pub grace_period: Duration,
    /// After the agent exits without a done signal, how long to wait for the last of its
    /// output (which may still hold the marker) before calling the attempt failed.
    pub exit_settle: Duration,
    pub done_marker: String,
    /// When a running agent needs a person.
    pub attention: attention::Thresholds,
    /// What a raised flag does besides notifying; signals not listed take their default
    /// ([`attention::Signal::default_policy`]).
    pub policies: BTreeMap<attention::Signal, Policy>,
    /// Remind a person this often while a run stays flagged.
    pub renotify: Option<Duration>,
    /// The profile of tasks that name none.
    pub default_agent: String,
    /// What the core needs of each agent profile.
    pub agents: BTreeMap<String, AgentSettings>,
    /// Failed acceptance checks go back to the agent this many times before the task fails.
    pub verify_rounds: u32,
    /// This host's name and labels: tasks for another host are left queued.
    pub host: crate::routing::Host,
    /// How usage and rate limits are waited out.
    pub limits: crate::limits::LimitSettings,
    /// The zone agents print clock times in (a reset "at 3pm"): the machine's.
    pub time_zone: jiff::tz::TimeZone,
}

impl Settings {
    /// The profile a task runs with.
    pub fn agent_of(&self, task: &crate::task::Task) -> String {
        task.agent
            .clone()
            .unwrap_or_else(|| self.default_agent.clone())
    }
}

/// What the core needs of an agent profile.
#[derive(Debug, Clone, Default)]
pub struct AgentSettings {
    pub changes: crate::task::AttentionOverride,
    /// The agent CLI's built-in prompts plus the profile's own.
    pub waiting_patterns: Vec<regex::Regex>,
    /// It can resume its own session (the profile has a `resume_command`).
    pub can_resume: bool,
}

/// What happens when a signal flags a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Tell a person and leave the agent alone (a heuristic never kills by default).
    #[default]
    Notify,
    /// Stop the agent and fail the task, keeping the transcript.
    Stop,
    /// Stop the agent and try again, while attempts remain.
    Restart,
}
