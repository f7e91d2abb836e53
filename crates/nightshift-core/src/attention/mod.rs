//! Noticing when a running agent needs a person: no commits for a while, the same error over
//! and over, a question on the screen, or silence.
//!
//! Pure, like the rest of `core`: the daemon feeds output lines, screen captures, commits and
//! clock ticks into a [`Watch`] and acts on the returned [`Change`]. A flag is raised once and
//! stays until its evidence goes away or a person acknowledges it, so nobody is nagged twice.

mod detectors;
mod retrying;
mod screen;
mod sieve;
mod signals;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hooks;
#[cfg(test)]
mod tests_sieve;
mod watch;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

pub use detectors::{MAX_FINGERPRINT, agent_waiting_patterns, error_fingerprint, normalize};
pub use sieve::Sifted;
pub use signals::{Change, Flag, Hook, Signal, Thresholds};
pub use watch::Watch;

pub(crate) fn strip_ansi(text: &str) -> std::borrow::Cow<'_, str> {
    crate::completion::strip_ansi(text)
}

pub(crate) fn truncate(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
}

pub(crate) fn add(at: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}

pub(crate) fn sub(at: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    at.checked_sub(d).unwrap_or(Timestamp::MIN)
}

pub(crate) fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}
