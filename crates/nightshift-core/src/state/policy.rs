//! What a raised flag does: the run's thresholds and policies, and acting on them.

use std::time::Duration;

use jiff::Timestamp;

use super::{Run, State};
use crate::action::Action;
use crate::attention;
use crate::settings::{AgentSettings, Policy};
use crate::task::Task;

impl State {
    /// Flags raised in this step whose signal's policy is to stop or restart the agent.
    pub(crate) fn apply_policies(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let mut stops = Vec::new();
        for action in actions.iter() {
            let Action::Attention {
                id,
                attempt,
                change,
                ..
            } = action
            else {
                continue;
            };
            for flag in &change.raised {
                let policy = self.running.get(id).map(|r| r.policy(flag.signal));
                if let Some(policy @ (Policy::Stop | Policy::Restart)) = policy {
                    stops.push((id.clone(), *attempt, flag.clone(), policy));
                }
            }
        }
        for (id, attempt, flag, policy) in stops {
            if self.current(&id, attempt).is_none() {
                continue;
            }
            let reason = match (flag.signal, policy) {
                // Their evidence says it all; the policy is what they normally do.
                (attention::Signal::Timeout, Policy::Stop)
                | (attention::Signal::Died, Policy::Restart) => flag.evidence.clone(),
                (signal, Policy::Stop) => {
                    format!("stopped by the {} policy: {}", signal.name(), flag.evidence)
                }
                (signal, _) => {
                    format!(
                        "restarted by the {} policy: {}",
                        signal.name(),
                        flag.evidence
                    )
                }
            };
            self.fail_attempt(&id, reason, policy == Policy::Restart, now, actions);
        }
    }

    pub(crate) fn agent_attention(&self, task: &Task) -> Option<&AgentSettings> {
        let agent = task
            .agent
            .as_deref()
            .unwrap_or(&self.settings.default_agent);
        self.settings.agents.get(agent)
    }

    /// The configured attention thresholds with the agent's, then the task's, changes.
    pub(crate) fn run_thresholds(&self, task: &Task) -> attention::Thresholds {
        let mut t = self.settings.attention.clone();
        if let Some(agent) = self.agent_attention(task) {
            t.waiting_patterns
                .extend(agent.waiting_patterns.iter().cloned());
            apply_changes(&mut t, &agent.changes);
        }
        apply_changes(&mut t, &task.attention);
        t
    }
}

impl Run {
    /// What a raised flag of this signal does for this run.
    pub fn policy(&self, signal: attention::Signal) -> Policy {
        self.policies
            .get(&signal)
            .copied()
            .unwrap_or(signal.default_policy())
    }
}

/// Applies a profile's or a task's attention changes.
pub(crate) fn apply_changes(t: &mut attention::Thresholds, o: &crate::task::AttentionOverride) {
    if let Some(v) = o.no_commits {
        t.no_commits = v;
    }
    if let Some(v) = o.silence {
        t.silence = v;
    }
    if let Some(v) = o.retrying {
        t.retrying = v;
    }
    if let Some(n) = o.repeated_errors {
        let window = t
            .repeated_error
            .map_or(Duration::from_secs(600), |(_, w)| w);
        t.repeated_error = (n > 0).then_some((n, window));
    }
    if let Some(w) = o.waiting {
        t.waiting = w;
    }
    // Checked when the task or the config was read.
    t.waiting_patterns.extend(
        o.waiting_patterns
            .iter()
            .filter_map(|p| regex::Regex::new(p).ok()),
    );
}

/// Records a change of a run's flags.
pub(crate) fn attention_action(
    run: &mut Run,
    change: attention::Change,
    now: Timestamp,
    actions: &mut Vec<Action>,
) {
    if !change.raised.is_empty() {
        run.noticed_at = Some(now);
    }
    if !change.is_empty() {
        actions.push(Action::Attention {
            id: run.task.id.clone(),
            attempt: run.attempt,
            flags: run.watch.flags(),
            change,
        });
    }
}
