//! A schedule's runs: which due slots are skipped, and pausing after failures in a row.

use crate::records::TaskState;

/// Why a due slot of a schedule is skipped (the note in its history), or `None` to run it.
pub fn slot_skipped(enabled: bool, paused: bool, in_the_way: bool) -> Option<&'static str> {
    if !enabled || paused {
        Some("skipped: paused")
    } else if in_the_way {
        Some("skipped: overlap")
    } else {
        None
    }
}

/// Failures in a row after a run of the schedule finished with `outcome`.
pub fn failures_in_a_row(before: u32, outcome: TaskState) -> u32 {
    if outcome == TaskState::Failed {
        before + 1
    } else {
        0
    }
}

/// Whether the schedule pauses itself now, and why: `max_failures` failed runs in a row
/// (`0`: never), unless it is paused already.
pub fn auto_pause(failures: u32, max_failures: u32, paused: bool) -> Option<String> {
    (max_failures > 0 && failures >= max_failures && !paused)
        .then(|| format!("paused after {failures} failed runs in a row"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_or_disabled_schedule_skips_before_an_overlap_does() {
        assert_eq!(slot_skipped(true, false, false), None);
        assert_eq!(slot_skipped(false, false, true), Some("skipped: paused"));
        assert_eq!(slot_skipped(true, true, true), Some("skipped: paused"));
        assert_eq!(slot_skipped(true, false, true), Some("skipped: overlap"));
    }

    #[test]
    fn a_schedule_pauses_at_max_failures_in_a_row_once() {
        let mut failures = 0;
        for _ in 0..2 {
            failures = failures_in_a_row(failures, TaskState::Failed);
        }
        assert_eq!(auto_pause(failures, 3, false), None);
        failures = failures_in_a_row(failures, TaskState::Failed);
        assert_eq!(
            auto_pause(failures, 3, false).as_deref(),
            Some("paused after 3 failed runs in a row")
        );
        assert_eq!(auto_pause(failures, 3, true), None, "paused already");
        assert_eq!(auto_pause(failures, 0, false), None, "0 never pauses");
        assert_eq!(failures_in_a_row(failures, TaskState::Done), 0);
    }
}
