//! The holds on agent profiles that hit a limit: when each lifts, and how long to wait
//! when the agent did not say.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::{LimitKind, LimitSeen};
use crate::attention::add;

/// How limits are waited out (`[limits]` in config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// Off: a limit is only an attention flag, as any prompt.
    pub enabled: bool,
    /// Added to a reset time the agent gave: its clock and ours differ, and a limit that
    /// lifts "at 3pm" may lift a little after.
    pub margin: Duration,
    /// The first wait when the agent gave no reset time; it doubles with each limit in a
    /// row, up to `max_wait`.
    pub first_wait: Duration,
    pub max_wait: Duration,
    /// Typed into each limited agent's session when its hold lifts.
    pub continue_text: String,
}

impl Default for LimitSettings {
    fn default() -> LimitSettings {
        LimitSettings {
            enabled: true,
            margin: Duration::from_secs(60),
            first_wait: Duration::from_secs(5 * 60),
            max_wait: Duration::from_secs(60 * 60),
            continue_text: "continue".into(),
        }
    }
}

/// One profile's hold: nothing new of it starts until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Hold {
    pub kind: LimitKind,
    pub since: Timestamp,
    pub until: Timestamp,
    /// Whether `until` came from the agent (a reset time) or from backing off.
    pub from_agent: bool,
    pub evidence: String,
}

/// The holds by profile, each profile's holds in a row (for the backoff), and whether a
/// person was told of the current streak.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    holds: BTreeMap<String, Hold>,
    strikes: BTreeMap<String, u32>,
    told: std::collections::BTreeSet<String>,
}

/// What a limit did to its profile's hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub until: Timestamp,
    /// When the hold ends changed (a new hold, or a later reset): records need writing.
    pub changed: bool,
    /// Tell a person: the first hold of a streak (holds that follow each other until the
    /// agent makes progress or a person lifts one are one streak, told once).
    pub notify: bool,
}

impl Holds {
    /// A run of `profile` hit `seen`: hold the profile until the reset time (plus the
    /// margin), or back off. A hold in place is only ever extended.
    pub fn limit(
        &mut self,
        profile: &str,
        seen: &LimitSeen,
        now: Timestamp,
        s: &LimitSettings,
    ) -> Held {
        if let Some(hold) = self.holds.get_mut(profile) {
            // The agent repeats itself while it retries: only a reset time it gives can
            // move the hold, and only later. Backing off again waits for the next hold.
            let later = seen
                .resets_at
                .map(|at| add(at.max(now), s.margin))
                .filter(|until| *until > hold.until);
            if let Some(until) = later {
                hold.until = until;
                hold.from_agent = true;
            }
            return Held {
                until: hold.until,
                changed: later.is_some(),
                notify: false,
            };
        }
        let (until, from_agent) = match seen.resets_at {
            Some(at) => (add(at.max(now), s.margin), true),
            None => {
                let strikes = self.strikes.entry(profile.to_string()).or_default();
                let wait = backoff(s.first_wait, s.max_wait, *strikes);
                *strikes = strikes.saturating_add(1);
                (add(now, wait), false)
            }
        };
        let notify = self.told.insert(profile.to_string());
        self.holds.insert(
            profile.to_string(),
            Hold {
                kind: seen.kind,
                since: now,
                until,
                from_agent,
                evidence: seen.evidence.clone(),
            },
        );
        Held {
            until,
            changed: true,
            notify,
        }
    }

    /// The profiles whose hold is over at `now`, lifted.
    pub fn take_due(&mut self, now: Timestamp) -> Vec<String> {
        let due: Vec<String> = self
            .holds
            .iter()
            .filter(|(_, h)| h.until <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for profile in &due {
            self.holds.remove(profile);
        }
        due
    }

    /// Lifts holds by hand: one profile's, or all. Returns the profiles lifted.
    pub fn lift(&mut self, profile: Option<&str>) -> Vec<String> {
        let lifted: Vec<String> = self
            .holds
            .keys()
            .filter(|p| profile.is_none_or(|want| want == p.as_str()))
            .cloned()
            .collect();
        for p in &lifted {
            self.holds.remove(p);
            self.strikes.remove(p);
            self.told.remove(p);
        }
        lifted
    }

    /// A run of `profile` made progress after a hold: the next limit starts the backoff
    /// from the first wait again.
    pub fn progressed(&mut self, profile: &str) {
        if !self.holds.contains_key(profile) {
            self.strikes.remove(profile);
            self.told.remove(profile);
        }
    }

    /// Holds recorded by an earlier daemon; they lift at their time as any other.
    pub fn restore(&mut self, holds: BTreeMap<String, Hold>) {
        self.holds.extend(holds);
    }

    pub fn get(&self, profile: &str) -> Option<&Hold> {
        self.holds.get(profile)
    }

    pub fn all(&self) -> &BTreeMap<String, Hold> {
        &self.holds
    }

    /// When the next hold lifts.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.holds.values().map(|h| h.until).min()
    }
}

/// `first`, doubled `strikes` times, at most `max`.
fn backoff(first: Duration, max: Duration, strikes: u32) -> Duration {
    let factor = 2u32.saturating_pow(strikes.min(20));
    first.saturating_mul(factor).min(max.max(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn seen(resets_at: Option<&str>) -> LimitSeen {
        LimitSeen {
            kind: LimitKind::Usage,
            resets_at: resets_at.map(at),
            evidence: "5-hour limit reached".into(),
        }
    }

    #[test]
    fn a_reset_time_holds_until_it_plus_the_margin_and_is_told_once() {
        let s = LimitSettings::default();
        let mut holds = Holds::default();
        let now = at("2026-12-06T12:00:00Z");
        let first = holds.limit("claude", &seen(Some("2026-12-06T15:00:00Z")), now, &s);
        assert_eq!(first.until, at("2026-12-06T15:01:00Z"));
        assert!(first.notify && first.changed);
        // A second run of the same profile hits it too: same hold, not news.
        let second = holds.limit("claude", &seen(Some("2026-12-06T14:00:00Z")), now, &s);
        assert_eq!(second.until, at("2026-12-06T15:01:00Z"));
        assert!(!second.notify && !second.changed);
        // Retrying without a time does not move it; a later reset does.
        assert!(!holds.limit("claude", &seen(None), now, &s).changed);
        let later = holds.limit("claude", &seen(Some("2026-12-06T16:00:00Z")), now, &s);
        assert!(later.changed && !later.notify);
        assert_eq!(later.until, at("2026-12-06T16:01:00Z"));
        holds.limit("claude", &seen(Some("2026-12-06T15:00:00Z")), now, &s);
        assert_eq!(holds.next_wake(), Some(at("2026-12-06T16:01:00Z")));
        assert!(holds.take_due(at("2026-12-06T16:00:59Z")).is_empty());
        assert_eq!(holds.take_due(at("2026-12-06T16:01:00Z")), ["claude"]);
        assert!(holds.get("claude").is_none());
    }

    #[test]
    fn without_a_reset_time_the_wait_doubles_up_to_the_cap_until_progress() {
        let s = LimitSettings {
            first_wait: Duration::from_secs(60),
            max_wait: Duration::from_secs(300),
            ..LimitSettings::default()
        };
        let mut holds = Holds::default();
        let mut now = at("2026-12-06T12:00:00Z");
        let mut waits = Vec::new();
        let mut told = Vec::new();
        // Hours of limits, simulated: each hold runs out and the limit comes right back.
        for _ in 0..6 {
            let held = holds.limit("codex", &seen(None), now, &s);
            // Repeats while held change nothing.
            assert!(!holds.limit("codex", &seen(None), now, &s).changed);
            told.push(held.notify);
            waits.push(held.until.duration_since(now).as_secs());
            now = held.until;
            assert_eq!(holds.take_due(now), ["codex"]);
        }
        assert_eq!(waits, [60, 120, 240, 300, 300, 300]);
        // One streak, one message.
        assert_eq!(told, [true, false, false, false, false, false]);
        holds.progressed("codex");
        let held = holds.limit("codex", &seen(None), now, &s);
        assert_eq!(held.until.duration_since(now).as_secs(), 60);
        assert!(held.notify);
    }

    #[test]
    fn lifting_by_hand_takes_one_profile_or_all() {
        let s = LimitSettings::default();
        let mut holds = Holds::default();
        let now = at("2026-12-06T12:00:00Z");
        holds.limit("claude", &seen(None), now, &s);
        holds.limit("gemini", &seen(None), now, &s);
        assert_eq!(holds.lift(Some("gemini")), ["gemini"]);
        assert!(holds.lift(Some("gemini")).is_empty());
        assert_eq!(holds.lift(None), ["claude"]);
        assert_eq!(holds.next_wake(), None);
    }
}
