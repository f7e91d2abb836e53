//! Decisions around starting an agent: why a start failed and whether another attempt could
//! help, what the agent is told, and a prompt left to type after a restart.

use std::time::Duration;

use jiff::Timestamp;

use crate::event::Event;

/// Why an agent could not be started, and whether another attempt could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub reason: String,
    /// A passing fault (tmux, a write): the attempt is retried while attempts remain. A
    /// lasting one (no such agent, no workdir, a failed setup) fails the task at once.
    pub retry: bool,
}

impl StartError {
    /// Another attempt would fail the same way: the task fails now.
    pub fn lasting(reason: impl Into<String>) -> StartError {
        StartError {
            reason: reason.into(),
            retry: false,
        }
    }

    /// Another attempt may succeed.
    pub fn passing(reason: impl Into<String>) -> StartError {
        StartError {
            reason: reason.into(),
            retry: true,
        }
    }

    /// The event for the core. A start that failed while the home's disk is full failed
    /// because its records could not be written: not the task's fault, so the queue holds
    /// instead of spending an attempt.
    pub fn into_event(self, id: String, attempt: u32, disk_full: bool) -> Event {
        if disk_full {
            Event::StartHeld {
                id,
                attempt,
                what: self.reason,
            }
        } else {
            Event::StartFailed {
                id,
                attempt,
                reason: self.reason,
                retry: self.retry,
            }
        }
    }
}

/// The event for an agent's recorded exit. An exit that carries an error means the agent
/// never ran (its program could not be executed): retrying will not find it either.
pub fn exit_event(
    id: String,
    attempt: u32,
    error: Option<&str>,
    how: String,
    hangup: bool,
) -> Event {
    match error {
        Some(error) => Event::StartFailed {
            id,
            attempt,
            reason: format!("the agent could not be started: {error}"),
            retry: false,
        },
        None => Event::Exited {
            id,
            attempt,
            how,
            hangup,
        },
    }
}

/// The prompt the agent gets: the configured preamble first, when its profile takes it and
/// there is one.
pub fn prompt_with_preamble(preamble: &str, profile_takes_it: bool, prompt: &str) -> String {
    if profile_takes_it && !preamble.is_empty() {
        format!("{preamble}{prompt}")
    } else {
        prompt.to_string()
    }
}

/// Whether an adopted run still needs its prompt typed: the agent takes it typed, and the
/// last daemon neither finished typing it nor saw the agent done.
pub fn prompt_left_to_type(takes_typed: bool, typed: bool, done: bool) -> bool {
    takes_typed && !typed && !done
}

/// What is left of the profile's typing delay, counted from the claim.
pub fn type_delay_left(delay: Duration, claimed_at: Timestamp, now: Timestamp) -> Duration {
    let since = now.duration_since(claimed_at).unsigned_abs();
    delay.saturating_sub(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_error_says_whether_to_retry_and_a_full_disk_holds_instead() {
        let e = StartError::lasting("no workdir");
        assert_eq!(
            e.clone().into_event("t".into(), 2, false),
            Event::StartFailed {
                id: "t".into(),
                attempt: 2,
                reason: "no workdir".into(),
                retry: false,
            }
        );
        let passing = StartError::passing("tmux went away");
        assert!(matches!(
            passing.into_event("t".into(), 2, false),
            Event::StartFailed { retry: true, .. }
        ));
        assert_eq!(
            e.into_event("t".into(), 2, true),
            Event::StartHeld {
                id: "t".into(),
                attempt: 2,
                what: "no workdir".into(),
            }
        );
    }

    #[test]
    fn an_exit_with_an_error_is_a_start_that_failed_for_good() {
        let failed = exit_event("t".into(), 1, Some("ENOENT"), "exited 127".into(), false);
        assert_eq!(
            failed,
            Event::StartFailed {
                id: "t".into(),
                attempt: 1,
                reason: "the agent could not be started: ENOENT".into(),
                retry: false,
            }
        );
        let exited = exit_event("t".into(), 1, None, "exited 1".into(), true);
        assert_eq!(
            exited,
            Event::Exited {
                id: "t".into(),
                attempt: 1,
                how: "exited 1".into(),
                hangup: true,
            }
        );
    }

    #[test]
    fn the_preamble_comes_first_only_when_the_profile_takes_one() {
        assert_eq!(
            prompt_with_preamble("Be brief.\n", true, "Fix it"),
            "Be brief.\nFix it"
        );
        assert_eq!(
            prompt_with_preamble("Be brief.\n", false, "Fix it"),
            "Fix it"
        );
        assert_eq!(prompt_with_preamble("", true, "Fix it"), "Fix it");
    }

    #[test]
    fn a_prompt_is_typed_after_a_restart_only_when_still_owed_and_waits_what_is_left() {
        assert!(prompt_left_to_type(true, false, false));
        assert!(!prompt_left_to_type(false, false, false));
        assert!(!prompt_left_to_type(true, true, false));
        assert!(!prompt_left_to_type(true, false, true));
        let claimed = Timestamp::from_second(1_800_000_000).unwrap();
        let later = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let delay = Duration::from_secs(5);
        assert_eq!(
            type_delay_left(delay, claimed, later(2)),
            Duration::from_secs(3)
        );
        assert_eq!(type_delay_left(delay, claimed, later(60)), Duration::ZERO);
    }
}
