//! When the screen is due for a look: after output went quiet, while a tool waits, and for a
//! limit line (asked for by output, or by a turn's hooks falling silent).

use std::time::Duration;

use jiff::Timestamp;

use super::super::add;
use super::super::signals::{Signal, Thresholds};
use super::Watch;

/// A pending tool's screen is looked at every `tool_window` for its first [`FAST_LOOKS`],
/// then twice as far apart each time, up to [`MAX_LOOK_GAP`]: a tool that runs for long
/// costs a capture every two seconds.
const FAST_LOOKS: Duration = Duration::from_secs(2);
const MAX_LOOK_GAP: Duration = Duration::from_secs(2);

/// How long a turn may go without a hook (and no tool pending) before the screen is read
/// for a limit or retry line, and then how often while the silence lasts.
const HOOK_SILENCE_LOOK: Duration = Duration::from_secs(10);

impl Watch {
    /// When a pending tool's screen is next due for a look at, if one is.
    pub(super) fn tool_look(&self, t: &Thresholds) -> Option<Timestamp> {
        let pending = self.tool_pending.as_ref()?;
        let looking =
            t.waiting && !self.waiting_acked && !self.flags.contains_key(&Signal::Waiting);
        looking.then_some(pending.next_look)
    }

    /// When a turn whose hooks fell silent is next due for a look for a limit line: every
    /// [`HOOK_SILENCE_LOOK`] from its last hook or the last such look. Not while a tool is
    /// pending (its own looks cover it).
    pub(super) fn silence_look(&self) -> Option<Timestamp> {
        let last_hook = self.turn_hook.filter(|_| self.tool_pending.is_none())?;
        let from = self.last_limit_look.map_or(last_hook, |l| l.max(last_hook));
        Some(add(from, HOOK_SILENCE_LOOK))
    }

    /// Whether a screen capture is due now: quiet for `input_debounce`, not yet read.
    /// Or a tool is pending and its next look is due, or a limit look is.
    pub fn screen_due(&self, now: Timestamp, t: &Thresholds) -> bool {
        let quiet = !self.screen_checked && add(self.last_output, t.input_debounce) <= now;
        let tool = self.tool_look(t).is_some_and(|at| at <= now);
        let limit = [self.limit_look, self.silence_look()]
            .into_iter()
            .flatten()
            .any(|at| at <= now);
        t.waiting && (quiet || tool) || limit
    }

    /// Like `screen_due`, and counts the capture as made, so it is asked for once per quiet
    /// period (new output makes the next one due).
    pub fn take_screen_due(&mut self, now: Timestamp, t: &Thresholds) -> bool {
        let due = self.screen_due(now, t);
        if due {
            if self.limit_look.is_some_and(|at| at <= now)
                || self.silence_look().is_some_and(|at| at <= now)
            {
                self.limit_look = None;
                self.last_limit_look = Some(now);
            }
            if add(self.last_output, t.input_debounce) <= now {
                self.screen_checked = true;
            }
            if let Some(pending) = &mut self.tool_pending
                && pending.next_look <= now
            {
                // Every window at first (the dialog may be slow to draw), then further apart.
                if add(pending.since, FAST_LOOKS) <= now {
                    pending.gap = (pending.gap * 2).min(MAX_LOOK_GAP);
                }
                pending.next_look = add(now, pending.gap);
            }
        }
        due
    }
}
