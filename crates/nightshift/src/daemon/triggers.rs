//! The daemon's side of triggers: events from `triggers/.events/` (git hooks, `trigger fire`)
//! and changes under a trigger's `watch:` paths start a debounce; when it ends, one run is
//! enqueued for the latest event. An agent's own commit never fires the trigger whose run
//! it is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;

use nightshift_store::Store;

use super::Daemon;
use crate::schedule::file::schedule_of;
use crate::trigger::{self, EventRecord, Trigger};
use nightshift_core::debounce::{self, Debounce};

#[derive(Debug, Default)]
pub(super) struct Triggers {
    /// The latest event per trigger, waiting for its debounce to end.
    pending: Debounce<EventRecord>,
    /// Event files taken into a debounce: removed once their run is decided, so a restart
    /// in between finds them again.
    files: BTreeMap<String, Vec<PathBuf>>,
    seen: std::collections::HashSet<PathBuf>,
    /// The trigger files as last read (again whenever one changes): events look them up
    /// here, not on disk, as a watched folder can report thousands of changes.
    defs: BTreeMap<String, Trigger>,
    /// Watched paths and the triggers that watch them.
    watched: BTreeMap<PathBuf, Vec<String>>,
    pub next_at: Option<Timestamp>,
}

impl<S: Store> Daemon<S> {
    /// Reads the trigger files (again) and watches their paths.
    pub(super) async fn load_triggers(&mut self) {
        let events = trigger::events_dir(&self.home);
        if let Err(e) = std::fs::create_dir_all(&events) {
            tracing::error!("cannot create {}: {e}", events.display());
        }
        for dir in [trigger::triggers_dir(&self.home), events] {
            if let Err(e) = self.watch.add(&dir) {
                tracing::warn!("cannot watch {}: {e}", dir.display());
            }
        }
        let (all, errors) = trigger::read_all(&trigger::triggers_dir(&self.home));
        for (name, e) in errors {
            tracing::error!(trigger = name, "{e} (the trigger is skipped until fixed)");
        }
        // Old watches stay (until a restart): the daemon may watch the same folders for its
        // own reasons, and notify does not count watchers.
        self.triggers.watched.clear();
        self.triggers.defs = all.iter().map(|t| (t.name.clone(), t.clone())).collect();
        for t in &all {
            for path in &t.watch {
                if let Err(e) = self.watch.add_recursive(path) {
                    tracing::warn!(trigger = t.name, "cannot watch {}: {e}", path.display());
                    continue;
                }
                self.triggers
                    .watched
                    .entry(path.clone())
                    .or_default()
                    .push(t.name.clone());
            }
        }
        self.take_trigger_events();
    }

    /// Whether a changed path is under one a trigger watches; if so, its debounce starts.
    pub(super) fn trigger_path_changed(&mut self, path: &std::path::Path) {
        let hit: Vec<String> = self
            .triggers
            .watched
            .iter()
            .filter(|(w, _)| path.starts_with(w))
            .filter(|_| debounce::is_trigger_change(path, self.home.root()))
            .flat_map(|(_, names)| names.clone())
            .collect();
        for name in &hit {
            let event = EventRecord {
                trigger: name.clone(),
                kind: "files".into(),
                repo: None,
                commit: None,
                by_task: None,
                at: Timestamp::now(),
            };
            self.debounce(event);
        }
    }

    /// Takes the recorded events (each file once) into the debounce.
    pub(super) fn take_trigger_events(&mut self) {
        let dir = trigger::events_dir(&self.home);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in paths {
            if !self.triggers.seen.insert(path.clone()) {
                continue;
            }
            let event = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<EventRecord>(&b).ok());
            match event {
                Some(event) if own_run(&event) => {
                    tracing::info!(
                        trigger = event.trigger,
                        "ignoring a commit made by its own run"
                    );
                    let _ = std::fs::remove_file(&path);
                    self.triggers.seen.remove(&path);
                }
                Some(event) => {
                    self.triggers
                        .files
                        .entry(event.trigger.clone())
                        .or_default()
                        .push(path);
                    self.debounce(event);
                }
                None => {
                    tracing::warn!("{}: not a trigger event; removed", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    fn debounce(&mut self, event: EventRecord) {
        let wait = self
            .trigger(&event.trigger)
            .map_or(debounce::DEFAULT_DEBOUNCE, |t| t.debounce);
        let name = event.trigger.clone();
        self.triggers
            .pending
            .push(name, event, wait, Timestamp::now());
        self.triggers.next_at = self.triggers.pending.next_at();
    }

    fn trigger(&self, name: &str) -> Option<Trigger> {
        self.triggers.defs.get(name).cloned()
    }

    /// Enqueues the runs whose debounce has ended.
    pub(super) async fn fire_triggers(&mut self) {
        let now = Timestamp::now();
        for (name, event) in self.triggers.pending.take_due(now) {
            // Decided now (run, or joined to a waiting one): the event files are done with.
            for path in self.triggers.files.remove(&name).unwrap_or_default() {
                self.triggers.seen.remove(&path);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!("cannot remove {}: {e}", path.display());
                }
            }
            let Some(t) = self.trigger(&name) else {
                tracing::warn!(trigger = name, "an event for a trigger that does not exist");
                continue;
            };
            if self.overlaps(&name, t.overlap).await {
                tracing::info!(
                    trigger = name,
                    "a run is already waiting; this event joins it"
                );
                continue;
            }
            match trigger::task_text(&t, &event) {
                Ok(text) => {
                    let id = crate::schedule::file::slot_id(&name, now);
                    self.enqueue_text(&id, &text).await;
                }
                Err(e) => tracing::error!(trigger = name, "cannot build its task: {e}"),
            }
        }
        self.triggers.next_at = self.triggers.pending.next_at();
    }
}

/// The agent of this trigger's own run made the commit: no loop.
fn own_run(event: &EventRecord) -> bool {
    event
        .by_task
        .as_deref()
        .and_then(schedule_of)
        .is_some_and(|owner| owner == event.trigger)
}
