//! Filling free slots from the queue: the state's side of [`crate::dispatch::plan`].

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::State;
use crate::action::Action;
use crate::dispatch::{Hold, plan};
use crate::records::TaskState;

impl State {
    /// Fills free slots from the queue and fails tasks that can never run.
    pub(crate) fn dispatch(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        self.fail_lost_without_budget(actions);
        // Nothing queued, nothing to plan: the common case while agents work, where this
        // runs after every batch of their output.
        if self.queued.is_empty() {
            self.holds.clear();
            return;
        }
        let free = if self.paused || self.disk_full.is_some() {
            0
        } else {
            self.settings.max_agents.saturating_sub(self.slots_used())
        };
        let active: BTreeSet<String> = self.running.keys().cloned().collect();
        let locks: BTreeMap<String, String> = self
            .queued
            .values()
            .filter_map(|q| Some((q.task.id.clone(), q.lock.clone()?)))
            .collect();
        let held: BTreeSet<String> = self
            .running
            .values()
            .filter_map(|r| r.lock.clone())
            .collect();
        // Tasks of a profile held for a limit, and tasks whose start is still ahead
        // (`not_before`), wait without taking a slot.
        let mut limited = Vec::new();
        let tz = &self.settings.time_zone;
        let ready = self.queued.values().map(|q| &q.task).filter(|t| {
            if let Some(at) = crate::task::waits_until(t, now, tz) {
                limited.push((t.id.clone(), Hold::NotBefore(at)));
                return false;
            }
            let profile = self.settings.agent_of(t);
            match self.limits.get(&profile) {
                Some(hold) => {
                    limited.push((
                        t.id.clone(),
                        Hold::Limited {
                            profile,
                            until: hold.until,
                        },
                    ));
                    false
                }
                None => true,
            }
        });
        let plan = plan(
            ready,
            &self.finished,
            &active,
            free,
            &locks,
            &held,
            &self.settings.host,
        );
        for (id, reason) in plan.fail {
            self.queued.remove(&id);
            self.finished.insert(id.clone(), TaskState::Failed);
            actions.push(Action::FailQueued { id, reason });
        }
        let mut replaced = false;
        for id in plan.start {
            let Some(q) = self.queued.remove(&id) else {
                continue;
            };
            let attempt = q.last_attempt + 1;
            // A resume continues the attempt the session vanished from: it does not count.
            let counted = q.counted_attempts + u32::from(!q.resume);
            let resumes = q.resumes + u32::from(q.resume);
            let mut run = self.new_run(q.task, attempt, counted, resumes, now);
            run.lock = q.lock;
            // A new session replaces one still in its grace period under the same name.
            if self.closing.remove(&run.session).is_some() {
                replaced = true;
                actions.push(Action::CloseSession {
                    session: run.session.clone(),
                });
            }
            actions.push(Action::Start {
                task: run.task.clone(),
                attempt,
                claim: true,
            });
            self.running.insert(id, run);
        }
        self.holds = plan.hold.into_iter().chain(limited).collect();
        // Replacing a session in its grace period freed a slot the plan did not count. Each
        // pass removes one such session, so this ends.
        if replaced {
            self.dispatch(now, actions);
        }
    }

    /// A task whose host was lost goes on elsewhere while it has attempts left; one that
    /// has none fails with why.
    fn fail_lost_without_budget(&mut self, actions: &mut Vec<Action>) {
        let spent: Vec<(String, String)> = self
            .queued
            .values()
            .filter_map(|q| {
                let lost = q.lost.as_ref()?;
                let max = q
                    .task
                    .max_attempts
                    .unwrap_or(self.settings.default_max_attempts);
                (q.counted_attempts >= max && !q.resume).then(|| {
                    let reason = format!("{lost}; no attempts left ({max} allowed)");
                    (q.task.id.clone(), reason)
                })
            })
            .collect();
        for (id, reason) in spent {
            self.queued.remove(&id);
            self.finished.insert(id.clone(), TaskState::Failed);
            actions.push(Action::FailQueued { id, reason });
        }
    }
}
