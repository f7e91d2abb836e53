//! Usage and rate limits in the state: a run that hits one is `limited`, its profile is
//! held (nothing new of it starts), and when the hold lifts the run is told to continue.

use jiff::Timestamp;

use super::{Run, State};
use crate::action::Action;
use crate::attention::add;
use crate::limits::LimitSeen;

/// A run waiting out a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub since: Timestamp,
    pub until: Timestamp,
}

impl State {
    /// Whether `text`, from run `id`'s output, screen or hooks, says it hit a limit; if so
    /// the run is limited and its profile held. Returns whether the run is limited now.
    pub(crate) fn look_for_limit<'a>(
        &mut self,
        id: &str,
        texts: impl IntoIterator<Item = &'a str>,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) -> bool {
        let limited = self.running.get(id).is_some_and(|r| r.limited.is_some());
        if !self.settings.limits.enabled {
            return limited;
        }
        let tz = &self.settings.time_zone;
        let Some(seen) = texts
            .into_iter()
            .find_map(|t| crate::limits::recognise(t, now, tz))
        else {
            return limited;
        };
        self.limit_run(id, &seen, now, actions);
        true
    }

    fn limit_run(&mut self, id: &str, seen: &LimitSeen, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(task) = self.running.get(id).map(|r| r.task.clone()) else {
            return;
        };
        let profile = self.settings.agent_of(&task);
        let held = self
            .limits
            .limit(&profile, seen, now, &self.settings.limits);
        // Every run of the profile waits until the same time.
        let mut newly = Vec::new();
        for run in self.running.values_mut() {
            if self.settings.agent_of(&run.task) != profile {
                continue;
            }
            match &mut run.limited {
                Some(l) => l.until = held.until,
                None if run.task.id == id => {
                    run.limited = Some(Limited {
                        since: now,
                        until: held.until,
                    });
                    newly.push(run.attempt);
                }
                None => {}
            }
        }
        if let Some(attempt) = newly.first() {
            actions.push(Action::Limited {
                id: id.to_string(),
                attempt: *attempt,
                profile,
                kind: seen.kind,
                until: held.until,
                evidence: seen.evidence.clone(),
                notify: held.new,
            });
        }
    }

    /// Holds whose time is up lift, and their limited runs continue (also runs whose
    /// hold was lost to a restart, once their time is up).
    pub(crate) fn lift_due_limits(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let mut due = self.limits.take_due(now);
        for run in self.running.values() {
            let profile = self.settings.agent_of(&run.task);
            if run.limited.as_ref().is_some_and(|l| l.until <= now)
                && self.limits.get(&profile).is_none()
                && !due.contains(&profile)
            {
                due.push(profile);
            }
        }
        self.continue_limited(&due, false, now, actions);
    }

    /// A restarted daemon takes up the holds and limited runs its predecessor recorded.
    pub fn restore_holds(
        &mut self,
        holds: std::collections::BTreeMap<String, crate::limits::Hold>,
    ) {
        self.limits.restore(holds);
    }

    /// See [`State::restore_holds`]: a recovered run that was waiting out a limit.
    pub fn restore_limited(&mut self, id: &str, limited: Limited) {
        if let Some(run) = self.running.get_mut(id) {
            run.limited = Some(limited);
        }
    }

    /// `resume-limited`: lifts one profile's hold, or all, by hand.
    pub(crate) fn resume_limited(
        &mut self,
        profile: Option<&str>,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let mut lifted = self.limits.lift(profile);
        // Runs limited under a hold that is gone already (a restart) go on too.
        for run in self.running.values() {
            let p = self.settings.agent_of(&run.task);
            if run.limited.is_some() && profile.is_none_or(|want| want == p) && !lifted.contains(&p)
            {
                lifted.push(p);
            }
        }
        self.continue_limited(&lifted, true, now, actions);
    }

    fn continue_limited(
        &mut self,
        profiles: &[String],
        by_hand: bool,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        for profile in profiles {
            for run in self.running.values_mut() {
                if self.settings.agent_of(&run.task) != *profile {
                    continue;
                }
                let Some(limited) = run.limited.take() else {
                    continue;
                };
                resume_run(run, &limited, now);
                actions.push(Action::Tell {
                    id: run.task.id.clone(),
                    attempt: run.attempt,
                    text: self.settings.limits.continue_text.clone(),
                });
            }
            actions.push(Action::LimitLifted {
                profile: profile.clone(),
                by_hand,
            });
        }
    }

    /// A run made progress (a commit, done): its profile's next limit backs off from the
    /// first wait again.
    pub(crate) fn progressed(&mut self, id: &str) {
        if let Some(task) = self.running.get(id).map(|r| r.task.clone()) {
            let profile = self.settings.agent_of(&task);
            self.limits.progressed(&profile);
        }
    }

    /// The holds on profiles, for `ls`, `show` and `top`.
    pub fn limit_holds(&self) -> &std::collections::BTreeMap<String, crate::limits::Hold> {
        self.limits.all()
    }

    /// When a hold lifts next.
    pub(crate) fn next_limit_wake(&self) -> Option<Timestamp> {
        let runs = self
            .running
            .values()
            .filter_map(|r| r.limited.as_ref().map(|l| l.until));
        runs.chain(self.limits.next_wake()).min()
    }
}

/// The run goes on: the time it waited does not count against its timeout, and its
/// attention clocks start again (it was quiet and committed nothing for a reason).
fn resume_run(run: &mut Run, limited: &Limited, now: Timestamp) {
    if let Some(deadline) = run.deadline {
        run.deadline = Some(add(deadline, crate::attention::elapsed(limited.since, now)));
    }
    run.watch.resume_after_limit(now);
}
