//! Usage and rate limits in the state: a run that hits one is `limited`, its profile is
//! held (nothing new of it starts), and when the hold lifts the run is told to continue.

use jiff::Timestamp;

use super::{Run, State};
use crate::action::Action;
use crate::attention::add;
use crate::limits::LimitSeen;

/// How many non-empty lines at the bottom of a screen may report a limit.
const SCREEN_TAIL: usize = 12;

/// A run waiting out a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub since: Timestamp,
    pub until: Timestamp,
    /// The line that said so.
    pub evidence: String,
}

impl State {
    /// Whether new text from run `id` (output lines, or a hook's error) says it hit a
    /// limit; if so the run is limited and its profile held. Lines of the task's own
    /// prompt, echoed by the agent's UI, do not count. Returns whether the run is limited
    /// now.
    pub(crate) fn look_for_limit<'a>(
        &mut self,
        id: &str,
        texts: impl IntoIterator<Item = &'a str>,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) -> bool {
        self.look_for_limit_where(id, texts, |_| true, now, actions)
    }

    /// Like [`State::look_for_limit`], over the screen's last lines. A screen keeps what it
    /// showed: the limit this run last hit, still on it after the agent went on, is old.
    pub(crate) fn look_for_limit_on_screen(
        &mut self,
        id: &str,
        screen: &str,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) -> bool {
        if self.running.get(id).is_some_and(|r| r.limited.is_some()) {
            return true;
        }
        let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(SCREEN_TAIL)..].join("\n");
        let last = self.running.get(id).and_then(|r| r.last_limit.clone());
        // After a hold lifted, the CLI's own countdown may still be drawn for a moment with
        // new digits: a reset already past, on a run that was limited, is that old limit.
        let is_new = |seen: &LimitSeen| {
            last.as_ref() != Some(&seen.evidence)
                && !(last.is_some() && seen.resets_at.is_some_and(|r| r <= now))
        };
        self.look_for_limit_where(id, [tail.as_str()], is_new, now, actions)
    }

    /// The limit the first of `texts` reports that `accept` takes, if any, limits the run.
    fn look_for_limit_where<'a>(
        &mut self,
        id: &str,
        texts: impl IntoIterator<Item = &'a str>,
        accept: impl Fn(&LimitSeen) -> bool,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some(run) = self.running.get(id) else {
            return false;
        };
        let limited = run.limited.is_some();
        if !self.settings.limits.enabled {
            return limited;
        }
        let tz = &self.settings.time_zone;
        let echoed = |l: &str| run.prompt_lines.contains(&crate::completion::normalize(l));
        let seen = texts.into_iter().find_map(|t| {
            let seen = crate::limits::recognise(t, now, tz)?;
            if !t.lines().any(echoed) {
                return accept(&seen).then_some(seen);
            }
            // The prompt's own lines (on a screen, above the countdown) are set aside, so
            // that only the agent's words count.
            let own: Vec<&str> = t.lines().filter(|l| !echoed(l)).collect();
            let seen = crate::limits::recognise(&own.join("\n"), now, tz)?;
            accept(&seen).then_some(seen)
        });
        match seen {
            Some(seen) => {
                self.limit_run(id, &seen, now, actions);
                true
            }
            None => limited,
        }
    }

    fn limit_run(&mut self, id: &str, seen: &LimitSeen, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(task) = self.running.get(id).map(|r| r.task.clone()) else {
            return;
        };
        let profile = self.settings.agent_of(&task);
        let held = self
            .limits
            .limit(&profile, seen, now, &self.settings.limits);
        for run in self.running.values_mut() {
            if self.settings.agent_of(&run.task) != profile {
                continue;
            }
            let newly = run.task.id == id && run.limited.is_none();
            let evidence = match &mut run.limited {
                // Every run of the profile waits until the same time; its record follows,
                // with the run's own evidence.
                Some(l) if held.changed && l.until != held.until => {
                    l.until = held.until;
                    l.evidence.clone()
                }
                Some(_) => continue,
                None if newly => {
                    run.last_limit = Some(seen.evidence.clone());
                    run.limited = Some(Limited {
                        since: now,
                        until: held.until,
                        evidence: seen.evidence.clone(),
                    });
                    seen.evidence.clone()
                }
                None => continue,
            };
            actions.push(Action::Limited {
                id: run.task.id.clone(),
                attempt: run.attempt,
                profile: profile.clone(),
                kind: seen.kind,
                until: held.until,
                evidence,
                notify: newly && held.notify,
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

    /// Each profile's limited runs are told to continue, and its hold is over.
    fn continue_limited(
        &mut self,
        profiles: &[String],
        by_hand: bool,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        for profile in profiles {
            let mut runs = Vec::new();
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
                runs.push((run.task.id.clone(), run.attempt));
            }
            actions.push(Action::LimitLifted {
                profile: profile.clone(),
                by_hand,
                runs,
            });
        }
    }

    /// Run `id` made progress (a commit, a tool ran, it asks a person, done): a limit it
    /// was waiting out is over without being told anything, so is its profile's hold (the
    /// other runs of it are told to continue), and the next limit backs off from the first
    /// wait again.
    pub(crate) fn progressed(&mut self, id: &str, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(run) = self.running.get_mut(id) else {
            return;
        };
        let profile = self.settings.agent_of(&run.task);
        if let Some(limited) = run.limited.take() {
            resume_run(run, &limited, now);
            let attempt = run.attempt;
            self.limits.lift(Some(&profile));
            actions.push(Action::LimitLifted {
                profile: profile.clone(),
                by_hand: false,
                runs: vec![(id.to_string(), attempt)],
            });
            self.continue_limited(std::slice::from_ref(&profile), false, now, actions);
        }
        self.limits.progressed(&profile);
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

    /// A restarted daemon takes up the holds its predecessor recorded. Call it after the
    /// runs were recovered (with [`State::restore_limited`]).
    pub fn restore_holds(
        &mut self,
        holds: std::collections::BTreeMap<String, crate::limits::Hold>,
    ) {
        self.limits.restore(holds);
    }

    /// A recovered run that was waiting out a limit.
    pub fn restore_limited(&mut self, id: &str, limited: Limited) {
        if let Some(run) = self.running.get_mut(id) {
            run.limited = Some(limited);
        }
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
