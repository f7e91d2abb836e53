//! One attempt's life: started, signalled done, checked, resumed, finished or failed.

use jiff::Timestamp;

use super::policy::attention_action;
use super::timers::{HEAD_CHECK_EVERY, add};
use super::{Closing, Phase, Run, State};
use crate::action::Action;
use crate::records::{DoneRecord, DoneSource, TaskState};
use crate::task::Task;
use crate::{attention, completion};

/// Resumes of one task, at most: a session that keeps vanishing needs a person.
const MAX_RESUMES: u32 = 3;

impl State {
    pub(crate) fn current(&mut self, id: &str, attempt: u32) -> Option<&mut Run> {
        self.running.get_mut(id).filter(|r| r.attempt == attempt)
    }

    pub(crate) fn new_run(
        &self,
        task: Task,
        attempt: u32,
        counted: u32,
        resumes: u32,
        started_at: Timestamp,
    ) -> Run {
        let timeout = task.time_limit(self.settings.default_timeout);
        Run {
            max_attempts: task
                .max_attempts
                .unwrap_or(self.settings.default_max_attempts),
            session: crate::session::session_name(&task.id),
            phase: Phase::Starting,
            started_at,
            time_limit: timeout,
            deadline: timeout.map(|t| add(started_at, t)),
            exited: None,
            acknowledged: false,
            pending_done: None,
            failed_rounds: 0,
            agent_session: None,
            resumes,
            lock: None,
            watch: attention::Watch::new(started_at, true),
            thresholds: self.run_thresholds(&task),
            policies: {
                let mut p = self.settings.policies.clone();
                if let Some(agent) = self.agent_attention(&task) {
                    p.extend(agent.changes.policy.clone());
                }
                p.extend(task.attention.policy.clone());
                p
            },
            next_head_check: add(started_at, HEAD_CHECK_EVERY),
            noticed_at: None,
            timed_out: false,
            not_a_repo: false,
            prompt_lines: completion::prompt_lines(&task.prompt),
            limited: None,
            last_limit: None,
            counted_attempts: counted,
            attempt,
            task,
        }
    }

    /// The agent signalled done: its acceptance checks run first (and uncommitted work is
    /// dealt with); a `--fail` is final at once.
    pub(crate) fn signalled_done(
        &mut self,
        id: &str,
        record: DoneRecord,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        if record.ok {
            self.progressed(id, now, actions);
        }
        let Some(run) = self.running.get_mut(id) else {
            return;
        };
        if !record.ok {
            self.finish_done(id, record, now, actions);
            return;
        }
        run.phase = Phase::Verifying;
        run.pending_done = Some(record);
        actions.push(Action::Check {
            id: id.to_string(),
            attempt: run.attempt,
            round: run.failed_rounds + 1,
        });
    }

    /// The acceptance checks of a done signal ran: done, back to the agent, or failed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn checked(
        &mut self,
        id: &str,
        attempt: u32,
        passed: bool,
        summary: String,
        feedback: String,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let rounds = self.settings.verify_rounds;
        let Some(run) = self
            .current(id, attempt)
            .filter(|r| r.phase == Phase::Verifying)
        else {
            return;
        };
        let Some(record) = run.pending_done.take() else {
            return;
        };
        if passed {
            self.finish_done(id, record, now, actions);
            return;
        }
        run.failed_rounds += 1;
        let allowed = run.task.verify_rounds.unwrap_or(rounds);
        if run.failed_rounds <= allowed && run.exited.is_none() {
            run.phase = Phase::Running;
            // The agent works again from now: nothing it did before counts as silence.
            let change = run
                .watch
                .on_hook(attention::Hook::Working, now, &run.thresholds);
            attention_action(run, change, now, actions);
            actions.push(Action::Tell {
                id: id.to_string(),
                attempt,
                text: feedback,
            });
            return;
        }
        let n = run.failed_rounds;
        let reason = if run.exited.is_some() && run.failed_rounds <= allowed {
            format!("the acceptance check failed and the agent has exited: {summary}")
        } else if n == 1 {
            format!("the acceptance check failed: {summary}")
        } else {
            format!("the acceptance check failed {n} times: {summary}")
        };
        self.fail_attempt(id, reason, false, now, actions);
    }

    /// The agent's session went away under it (not the agent's doing): when it can, resume
    /// its own session in a new attempt. Returns whether it does.
    pub(crate) fn resume(
        &mut self,
        id: &str,
        attempt: u32,
        why: &str,
        actions: &mut Vec<Action>,
    ) -> bool {
        let can = |r: &Run| {
            let profile = self.settings.agents.get(self.agent_of(&r.task));
            r.phase == Phase::Running
                && r.agent_session.is_some()
                && r.resumes < MAX_RESUMES
                && r.task.resume.unwrap_or(true)
                && profile.is_some_and(|p| p.can_resume)
        };
        if !self
            .running
            .get(id)
            .is_some_and(|r| r.attempt == attempt && can(r))
        {
            return false;
        }
        let Some(run) = self.running.remove(id) else {
            return false;
        };
        let session = run.agent_session.unwrap_or_default();
        actions.push(Action::CloseSession {
            session: run.session,
        });
        actions.push(Action::Requeue {
            id: id.to_string(),
            attempt,
            reason: format!("{why}; resuming the agent's session {session}"),
            resume: Some(session),
        });
        true
    }

    pub(crate) fn agent_of<'a>(&'a self, task: &'a Task) -> &'a str {
        task.agent
            .as_deref()
            .unwrap_or(&self.settings.default_agent)
    }

    /// The agent said it is done (or failed): file the task at once; the session gets the
    /// grace period unless the agent already left.
    pub(crate) fn finish_done(
        &mut self,
        id: &str,
        record: DoneRecord,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let Some(run) = self.running.remove(id) else {
            return;
        };
        let how = match record.source {
            DoneSource::Command => "the agent ran `nightshift done`",
            DoneSource::Marker => "the agent printed the completion marker",
        };
        let (outcome, reason) = if record.ok {
            (TaskState::Done, how.to_string())
        } else {
            (TaskState::Failed, format!("{how} --fail"))
        };
        actions.push(Action::Finish {
            id: id.to_string(),
            attempt: run.attempt,
            outcome,
            reason,
            attempts: run.counted_attempts,
            summary: record.summary,
        });
        // Not yet in `finished`: dependents start once the file is in done/ (the daemon
        // rescans after filing), so they never overlap with it or with its report.
        if run.exited.is_some() {
            // Before its start is acknowledged, the acknowledgement closes it, once.
            if run.acknowledged {
                actions.push(Action::CloseSession {
                    session: run.session,
                });
            }
        } else {
            self.closing.insert(
                run.session,
                Closing {
                    id: id.to_string(),
                    attempt: run.attempt,
                    close_at: add(now, self.settings.grace_period),
                },
            );
        }
    }

    /// The attempt is over without success: retry if allowed, else fail the task.
    pub(crate) fn fail_attempt(
        &mut self,
        id: &str,
        reason: String,
        retry: bool,
        _now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let Some(run) = self.running.remove(id) else {
            return;
        };
        actions.push(Action::CloseSession {
            session: run.session.clone(),
        });
        if retry && run.counted_attempts < run.max_attempts {
            actions.push(Action::Requeue {
                id: id.to_string(),
                attempt: run.attempt,
                reason,
                resume: None,
            });
        } else {
            let reason = if run.counted_attempts > 1 {
                format!(
                    "{reason} (attempt {} of {})",
                    run.counted_attempts, run.max_attempts
                )
            } else {
                reason
            };
            actions.push(Action::Finish {
                id: id.to_string(),
                attempt: run.attempt,
                outcome: TaskState::Failed,
                reason,
                attempts: run.counted_attempts,
                summary: None,
            });
        }
    }

    /// The agent is gone without having signalled done: a Died flag, whose policy decides.
    pub(crate) fn died(
        &mut self,
        id: &str,
        why: String,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        if let Some(run) = self.running.get_mut(id) {
            let change = run.watch.flag(attention::Signal::Died, now, why.clone());
            if change.is_empty() {
                // Already flagged (and notify is not a policy for it): end it here.
                self.fail_attempt(id, why, true, now, actions);
            } else {
                attention_action(run, change, now, actions);
            }
        }
    }

    /// Holds the queue for a full disk; says so only when the hold begins, however many
    /// writes fail while it lasts.
    pub(crate) fn hold_for_disk(&mut self, what: String, actions: &mut Vec<Action>) {
        if self.disk_full.is_none() {
            actions.push(Action::DiskHold {
                what: what.clone(),
                notify: !self.disk_told,
            });
            self.disk_told = true;
            self.disk_full = Some(what);
        }
    }
}
