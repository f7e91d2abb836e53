//! The daemon's side of schedules: reads `schedules/`, asks [`crate::schedule::plan::decide`]
//! what is due, records the decision (synced) and enqueues the slots' tasks. It runs at start,
//! when a schedule file changes, when the next slot is due, and after a wake-up or a clock
//! jump. Timers are wall-clock targets re-checked at least every rescan interval, because
//! monotonic timers stop while the machine sleeps.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::Timestamp;

use nightshift_store::{EnqueueError, Store, within};

use super::{Daemon, STORE_TIMEOUT};
use crate::home::TaskState;
use crate::schedule::file::{self, Schedule};
use crate::schedule::plan::{self, Overlap};
use crate::schedule::state::{self, State};
use nightshift_core::schedule_runs;

/// The schedules as last read, and when one is next due.
#[derive(Debug, Default)]
pub(super) struct Schedules {
    pub next_at: Option<Timestamp>,
    /// Files that do not parse, with their error (logged once per change).
    errors: BTreeMap<String, String>,
}

/// Reads every schedule file; bad ones are reported, not fatal.
pub fn read_all(dir: &Path) -> (Vec<Schedule>, BTreeMap<String, String>) {
    crate::templates::read_dir(dir, file::parse)
}

impl<S: Store> Daemon<S> {
    /// Fires what is due now.
    pub(super) async fn run_schedules(&mut self) {
        let dir = self.home.schedules_dir();
        let (all, errors) = read_all(&dir);
        for (name, e) in &errors {
            if self.schedules.errors.get(name) != Some(e) {
                tracing::error!(schedule = name, "{e} (the schedule is skipped until fixed)");
            }
        }
        // A schedule whose file is gone forgets its state: created again, it starts afresh.
        if let Ok(entries) = std::fs::read_dir(state::state_dir(&dir)) {
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                else {
                    continue;
                };
                let known =
                    all.iter().any(|s| s.name == name) || self.schedules.errors.contains_key(name);
                if !known && !dir.join(format!("{name}.md")).exists() {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let now = Timestamp::now();
        let mut next_at: Option<Timestamp> = None;
        for s in &all {
            let mut st = match state::load(&dir, &s.name) {
                Some(st) if st.rule_key == s.rule_key => st,
                // New, or its rule was edited: it starts from now and never backfills.
                Some(_) | None => State::new(&s.rule_key, now),
            };
            let decision = plan::decide(&s.rule, st.cursor, now);
            next_at = [next_at, decision.next_at].into_iter().flatten().min();
            if decision.cursor == st.cursor && decision.fire.is_empty() {
                if state::load(&dir, &s.name).is_none_or(|old| old.rule_key != s.rule_key) {
                    self.save_schedule(&dir, &s.name, &st);
                }
                continue;
            }
            for (slot, why) in &decision.skipped {
                let why = serde_json::to_value(why).unwrap_or_default();
                st.note(
                    *slot,
                    format!("skipped: {}", why.as_str().unwrap_or("")),
                    now,
                );
            }
            st.cursor = decision.cursor;
            let paused = state::paused(&dir, &s.name);
            let mut enqueue = Vec::new();
            for slot in decision.fire {
                // Slots of this same decision count as runs in the way too.
                let in_the_way = match s.overlap {
                    Overlap::Allow => false,
                    _ => !enqueue.is_empty() || self.overlaps(&s.name, s.overlap).await,
                };
                match schedule_runs::slot_skipped(s.enabled, paused.is_some(), in_the_way) {
                    Some(why) => st.note(slot, why, now),
                    None => enqueue.push(slot),
                }
            }
            // Recorded (and synced) before the tasks exist: a crash in between loses a run
            // rather than doubling one, and the slot ids make a second try harmless anyway.
            for slot in &enqueue {
                st.last_run = Some(state::LastRun {
                    slot: *slot,
                    task_id: file::slot_id(&s.name, *slot),
                    outcome: None,
                });
                st.note(*slot, "enqueued", now);
            }
            if !self.save_schedule(&dir, &s.name, &st) {
                // Not recorded, not run: once per slot matters more than this run.
                continue;
            }
            let mut lost_races = false;
            for slot in enqueue {
                // Taken in the store only now, after the decision is saved: a slot is never
                // marked fired without its run (a crash in between loses the run, as above).
                if self.claim_slot(&s.name, slot).await {
                    self.enqueue_slot(s, slot).await;
                } else {
                    // Another daemon of the fleet fired it: this history says so.
                    st.note(slot, "fired by another host", now);
                    lost_races = true;
                }
            }
            if lost_races {
                self.save_schedule(&dir, &s.name, &st);
            }
        }
        self.schedules.next_at = next_at;
    }

    fn save_schedule(&self, dir: &Path, name: &str, st: &State) -> bool {
        match state::save(dir, name, st) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(schedule = name, "cannot save its state (not firing): {e}");
                false
            }
        }
    }

    /// Takes the slot in the store, so the daemons that share a store fire it once. When the
    /// store's answer is lost, the slot is fired anyway: its task id is the slot's, so the
    /// store refuses a second task for it, and a slot never goes unfired because an answer
    /// did not arrive.
    async fn claim_slot(&self, name: &str, slot: Timestamp) -> bool {
        let claim = self.store.claim_slot(name, slot);
        match within("claim_slot", STORE_TIMEOUT, claim).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::info!(schedule = name, %slot, "another daemon fired this slot");
                false
            }
            Err(e) => {
                tracing::warn!(
                    schedule = name,
                    "cannot record the slot ({e}); firing it under its own id, which the store takes once"
                );
                true
            }
        }
    }

    /// The ids of this schedule's (or trigger's) tasks in a state.
    async fn runs_of(&self, name: &str, state: TaskState) -> Vec<String> {
        let listed = within("list", STORE_TIMEOUT, self.store.list(state)).await;
        listed
            .unwrap_or_default()
            .into_iter()
            .filter(|id| file::schedule_of(id) == Some(name))
            .collect()
    }

    /// Whether a run of the schedule (or trigger) is in the way of a new one.
    pub(super) async fn overlaps(&self, name: &str, overlap: Overlap) -> bool {
        if overlap == Overlap::Allow {
            return false;
        }
        let queued = self.runs_of(name, TaskState::Queued).await.len();
        let running = self.runs_of(name, TaskState::Running).await.len();
        overlap.in_the_way(queued, running)
    }

    /// Puts the slot's task in the queue, unless a task of that slot exists anywhere.
    async fn enqueue_slot(&mut self, s: &Schedule, slot: Timestamp) {
        let text = self.after_running(&s.name, s.overlap, &s.template).await;
        self.enqueue_text(&file::slot_id(&s.name, slot), &text)
            .await;
    }

    /// With `queue-one`, a new run waits for the one still running (a dependency on it),
    /// instead of starting beside it in a free slot.
    pub(super) async fn after_running(
        &self,
        name: &str,
        overlap: Overlap,
        template: &str,
    ) -> String {
        if overlap != Overlap::QueueOne {
            return template.to_string();
        }
        let running = self.runs_of(name, TaskState::Running).await;
        if running.is_empty() {
            return template.to_string();
        }
        nightshift_core::task::add_dependencies(template, &running).unwrap_or_else(|e| {
            tracing::warn!(schedule = name, "cannot make the run wait: {e}");
            template.to_string()
        })
    }

    /// Puts a task in the store's queue, unless the id exists in any state.
    pub(super) async fn enqueue_text(&mut self, id: &str, text: &str) {
        match within("enqueue", STORE_TIMEOUT, self.store.enqueue(id, text)).await {
            Ok(_) => tracing::info!(task = id, "enqueued"),
            Err(EnqueueError::Exists { .. }) => {
                tracing::info!(task = id, "already enqueued once; not again");
            }
            Err(e) => tracing::error!(task = id, "cannot enqueue: {e}"),
        }
        self.queue_dirty = true;
    }

    /// A schedule's task finished: count failures in a row, and pause after too many.
    pub(super) fn schedule_run_finished(&mut self, id: &str, outcome: TaskState) {
        let Some(name) = file::schedule_of(id) else {
            return;
        };
        let dir = self.home.schedules_dir();
        let Some(mut st) = state::load(&dir, name) else {
            return;
        };
        let now = Timestamp::now();
        if let Some(last) = st.last_run.as_mut().filter(|l| l.task_id == id) {
            last.outcome = Some(outcome.as_str().to_string());
        }
        let slot = st.last_run.as_ref().map_or(now, |l| l.slot);
        st.note(slot, outcome.as_str(), now);
        st.consecutive_failures =
            schedule_runs::failures_in_a_row(st.consecutive_failures, outcome);
        let max = read_all(&dir)
            .0
            .into_iter()
            .find(|s| s.name == name)
            .map_or(3, |s| s.max_failures);
        let paused = state::paused(&dir, name).is_some();
        if let Some(why) = schedule_runs::auto_pause(st.consecutive_failures, max, paused) {
            if let Err(e) = state::pause(&dir, name, &why) {
                tracing::error!(schedule = name, "cannot pause: {e}");
            }
            tracing::warn!(
                schedule = name,
                "{why}; `nightshift schedule resume {name}` to go on"
            );
            self.notify(
                crate::notify::EventKind::Failed,
                id,
                format!("nightshift: schedule {name} paused"),
                format!("{why} (the last: {id}). Resume with `nightshift schedule resume {name}`."),
            );
        }
        self.save_schedule(&dir, name, &st);
    }
}
