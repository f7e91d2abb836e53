//! When something is due: deadlines, exit settling, reminders, HEAD checks, grace periods.

use std::time::Duration;

use jiff::Timestamp;

use super::policy::attention_action;
use super::{Phase, Run, State};
use crate::action::Action;
use crate::attention;
use crate::duration::format as format_duration;

/// How often a running task's HEAD is looked at, for the no-commits signal.
pub(crate) const HEAD_CHECK_EVERY: Duration = Duration::from_secs(60);

impl State {
    /// The earliest time at which a [`Event::Tick`] would change something.
    pub fn next_wake(&self) -> Option<Timestamp> {
        let settle = self.settings.exit_settle;
        let runs = self.running.values().flat_map(|r| {
            let t = &r.thresholds;
            let exit = r
                .exited
                .as_ref()
                .filter(|_| r.phase != Phase::Verifying)
                .map(|(at, _, _)| add(*at, settle));
            let head = (t.no_commits.is_some() && r.phase == Phase::Running && !r.not_a_repo)
                .then_some(r.next_head_check);
            // A limited run's time does not run (see `resume_run`).
            let deadline = r.deadline.filter(|_| !r.timed_out && r.limited.is_none());
            // The watch is only ticked for a live, running agent (see `expire`).
            let watch = (r.phase == Phase::Running && r.exited.is_none() && r.limited.is_none())
                .then(|| r.watch.next_wake(t))
                .flatten();
            [deadline, exit, watch, head, self.remind_at(r)]
        });
        let closes = self.closing.values().map(|c| Some(c.close_at));
        // A queued task's `not_before`: dispatch looks again exactly then.
        let starts = self.holds.values().map(|h| match h {
            crate::dispatch::Hold::NotBefore(at) => Some(*at),
            _ => None,
        });
        runs.chain(closes)
            .chain(starts)
            .chain([self.next_limit_wake()])
            .flatten()
            .min()
    }

    /// When a flagged run is due a reminder.
    pub(crate) fn remind_at(&self, run: &Run) -> Option<Timestamp> {
        let every = self.settings.renotify?;
        let noticed = run.noticed_at?;
        (!run.watch.flags().is_empty()).then(|| add(noticed, every))
    }

    /// Timeouts, exits without done, and ended grace periods.
    pub(crate) fn expire(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let settle = self.settings.exit_settle;
        let mut deaths = Vec::new();
        for run in self.running.values_mut() {
            if let Some((at, how, hangup)) = &run.exited
                && add(*at, settle) <= now
                && run.phase != Phase::Verifying
            {
                deaths.push((
                    run.task.id.clone(),
                    run.attempt,
                    format!("{how} without signalling done"),
                    *hangup,
                ));
            } else if let Some(deadline) = run.deadline
                && deadline <= now
                && !run.timed_out
                && run.limited.is_none()
                // Its done signal is being checked: the checks decide.
                && run.phase != Phase::Verifying
            {
                run.timed_out = true;
                let limit = run.time_limit.unwrap_or_default();
                let why = format!("timed out after {}", format_duration(limit));
                let change = run.watch.flag(attention::Signal::Timeout, now, why);
                attention_action(run, change, now, actions);
            }
        }
        for (id, attempt, why, hangup) in deaths {
            if hangup && self.resume(&id, attempt, "its session was closed under it", actions) {
                continue;
            }
            self.died(&id, why, now, actions);
        }
        let renotify = self.settings.renotify;
        for run in self.running.values_mut() {
            if let Some(every) = renotify
                && let Some(noticed) = run.noticed_at
                && add(noticed, every) <= now
            {
                let flags = run.watch.flags();
                if !flags.is_empty() {
                    run.noticed_at = Some(now);
                    actions.push(Action::Remind {
                        id: run.task.id.clone(),
                        attempt: run.attempt,
                        flags,
                    });
                }
            }
        }
        for run in self.running.values_mut() {
            // Not while its checks run (the agent waits for them), nor while it waits out a
            // limit.
            if run.phase != Phase::Running || run.exited.is_some() || run.limited.is_some() {
                continue;
            }
            let t = &run.thresholds;
            if t.no_commits.is_some() && !run.not_a_repo && run.next_head_check <= now {
                run.next_head_check = add(now, HEAD_CHECK_EVERY);
                actions.push(Action::CheckHead {
                    id: run.task.id.clone(),
                    attempt: run.attempt,
                });
            }
            if run.watch.take_screen_due(now, t) {
                actions.push(Action::CaptureScreen {
                    id: run.task.id.clone(),
                    attempt: run.attempt,
                });
            }
            let change = run.watch.on_tick(now, t);
            attention_action(run, change, now, actions);
        }
        let expired: Vec<String> = self
            .closing
            .iter()
            .filter(|(_, c)| c.close_at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for session in expired {
            self.closing.remove(&session);
            actions.push(Action::CloseSession { session });
        }
    }
}

pub(crate) fn add(at: Timestamp, d: Duration) -> Timestamp {
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}
