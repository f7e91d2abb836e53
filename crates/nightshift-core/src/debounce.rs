//! Triggers: which changed paths count, and the debounce that turns a burst of events into
//! one run for the latest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;

/// The debounce of an event for a trigger that is not (or no longer) defined.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);

/// Whether a change under a watched path is one to react to: git's own bookkeeping (a
/// commit, a worktree's index) is not, nor is anything in nightshift's home, which holds
/// the runs' own records.
pub fn is_trigger_change(path: &Path, home_root: &Path) -> bool {
    !path.components().any(|c| c.as_os_str() == ".git") && !path.starts_with(home_root)
}

/// The latest event per trigger, each waiting for its debounce to end.
#[derive(Debug)]
pub struct Debounce<E> {
    pending: BTreeMap<String, (E, Timestamp)>,
}

impl<E> Default for Debounce<E> {
    fn default() -> Self {
        Debounce {
            pending: BTreeMap::new(),
        }
    }
}

impl<E> Debounce<E> {
    /// An event for `trigger` at `now`: it replaces any waiting one, and the wait starts over.
    pub fn push(&mut self, trigger: String, event: E, wait: Duration, now: Timestamp) {
        let wait = jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX);
        let due = now.checked_add(wait).unwrap_or(Timestamp::MAX);
        self.pending.insert(trigger, (event, due));
    }

    /// When the next debounce ends.
    pub fn next_at(&self) -> Option<Timestamp> {
        self.pending.values().map(|(_, at)| *at).min()
    }

    /// Takes the events whose debounce has ended by `now`, by trigger name.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<(String, E)> {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        due.into_iter()
            .filter_map(|name| {
                let (event, _) = self.pending.remove(&name)?;
                Some((name, event))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_becomes_one_event_the_latest_after_the_quiet() {
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let wait = Duration::from_secs(5);
        let mut d = Debounce::default();
        d.push("review".into(), 1, wait, at(0));
        d.push("review".into(), 2, wait, at(3));
        d.push("lint".into(), 9, Duration::from_secs(1), at(3));
        assert_eq!(d.next_at(), Some(at(4)));
        assert_eq!(d.take_due(at(4)), vec![("lint".to_string(), 9)]);
        assert!(
            d.take_due(at(7)).is_empty(),
            "the second event restarted the wait"
        );
        assert_eq!(d.take_due(at(8)), vec![("review".to_string(), 2)]);
        assert_eq!(d.next_at(), None);
    }

    #[test]
    fn git_bookkeeping_and_the_home_are_not_trigger_changes() {
        let home = Path::new("/home/ada/.nightshift");
        assert!(is_trigger_change(Path::new("/src/app/main.rs"), home));
        assert!(!is_trigger_change(Path::new("/src/app/.git/index"), home));
        assert!(!is_trigger_change(
            Path::new("/home/ada/.nightshift/runs/t/1/events.jsonl"),
            home
        ));
    }
}
