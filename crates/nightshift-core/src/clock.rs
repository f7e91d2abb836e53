//! The core's time line. The core takes `now` as a [`Timestamp`]; the daemon gives it a
//! *steady* one: a wall reading taken once, advanced by the boot clock (monotonic, counting
//! time asleep). Durations measured on it (timeouts, silence, grace periods) are real
//! elapsed time whatever the wall clock does; a wall-clock step only moves what is shown.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Both clocks, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub wall: Timestamp,
    /// Time since boot, counting suspend (`CLOCK_BOOTTIME`).
    pub boot: Duration,
}

/// Turns readings into the core's steady `now`, and back into wall time for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteadyClock {
    anchor: Reading,
}

impl SteadyClock {
    /// Anchors the time line at a first reading (the daemon's start).
    pub fn new(anchor: Reading) -> SteadyClock {
        SteadyClock { anchor }
    }

    /// The core's `now` for a reading: the anchor's wall time plus the boot time since.
    pub fn steady(&self, now: Reading) -> Timestamp {
        self.at_boot(now.boot)
    }

    /// The steady time of a boot-clock reading of this boot (earlier ones are fine).
    pub fn at_boot(&self, boot: Duration) -> Timestamp {
        let since = signed(boot) - signed(self.anchor.boot);
        self.anchor
            .wall
            .checked_add(since)
            .unwrap_or(self.anchor.wall)
    }

    /// A steady time as the wall clock shows it now, for display.
    pub fn to_wall(&self, t: Timestamp, now: Reading) -> Timestamp {
        let offset = now.wall.duration_since(self.steady(now));
        t.checked_add(offset).unwrap_or(t)
    }

    /// When an attempt started, on the steady line: from the boot time it recorded when the
    /// machine has not rebooted since (`boot`), else from its wall-clock start, which is the
    /// best there is after a reboot, and never later than now.
    pub fn start_of(&self, now: Reading, wall: Timestamp, boot: Option<Duration>) -> Timestamp {
        let steady_now = self.steady(now);
        let start = match boot {
            Some(b) => self.at_boot(b),
            None => {
                let ago = now.wall.duration_since(wall).max(SignedDuration::ZERO);
                steady_now.checked_sub(ago).unwrap_or(steady_now)
            }
        };
        start.min(steady_now)
    }
}

/// How long the daemon may sleep: until the nearest deadline, at most `cap`. Deadlines on
/// the steady line (`steady`, core timeouts) are measured from `steady_now`; those on the
/// wall clock (`wall`: schedules, triggers, worktree removals) from `wall_now`. Each against
/// its own clock: once a wall-clock step has parted the two, a wall deadline measured on the
/// steady line comes out hours late, or already past, which wakes the loop at once, over and
/// over, until the wall clock catches up.
pub fn sleep_until(
    cap: Duration,
    steady_now: Timestamp,
    steady: impl IntoIterator<Item = Timestamp>,
    wall_now: Timestamp,
    wall: impl IntoIterator<Item = Timestamp>,
) -> Duration {
    let until = |now: Timestamp| {
        move |at: Timestamp| Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
    };
    steady
        .into_iter()
        .map(until(steady_now))
        .chain(wall.into_iter().map(until(wall_now)))
        .fold(cap, Duration::min)
}

/// Whether the wall clock jumped while the loop slept `slept` (monotonic): it moved more than
/// 5 s further (the machine slept, or the clock was set forward), or went back (`passed` is
/// `None`). Schedules are then looked at again.
pub fn wall_jumped(slept: Duration, passed: Option<Duration>) -> bool {
    passed.is_none_or(|p| p > slept + Duration::from_secs(5))
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(wall: i64, boot: u64) -> Reading {
        Reading {
            wall: Timestamp::from_second(wall).unwrap(),
            boot: Duration::from_secs(boot),
        }
    }

    #[test]
    fn a_wall_clock_jump_is_more_than_5s_ahead_of_the_sleep_or_any_step_back() {
        let s = Duration::from_secs;
        assert!(!wall_jumped(s(30), Some(s(30))));
        assert!(!wall_jumped(s(30), Some(s(35))));
        assert!(wall_jumped(s(30), Some(s(36))));
        assert!(wall_jumped(s(30), None));
    }

    #[test]
    fn a_wall_clock_step_moves_display_not_steady_time() {
        let clock = SteadyClock::new(reading(1_800_000_000, 100));
        let later = reading(1_800_000_000 + 7200, 108);
        let steady = clock.steady(later);
        assert_eq!(steady, Timestamp::from_second(1_800_000_008).unwrap());
        // Shown on the wall clock as it reads now.
        assert_eq!(clock.to_wall(steady, later), later.wall);
    }

    #[test]
    fn each_deadline_is_measured_on_its_own_clock() {
        let cap = Duration::from_secs(30);
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        // The wall clock was set back an hour: steady time is an hour ahead of it.
        let (steady_now, wall_now) = (at(1_800_003_600), at(1_800_000_000));
        // A worktree removal due in 10 s of wall time waits 10 s, not 0 s again and again.
        let wall_due = [at(1_800_000_010)];
        let d = sleep_until(cap, steady_now, [], wall_now, wall_due);
        assert_eq!(d, Duration::from_secs(10));
        // A core timeout 5 s ahead on the steady line comes first.
        let d = sleep_until(cap, steady_now, [at(1_800_003_605)], wall_now, wall_due);
        assert_eq!(d, Duration::from_secs(5));
        // Past deadlines wake at once; nothing due sleeps the cap.
        assert_eq!(
            sleep_until(cap, steady_now, [], wall_now, [at(1)]),
            Duration::ZERO
        );
        assert_eq!(sleep_until(cap, steady_now, [], wall_now, []), cap);
    }

    #[test]
    fn an_attempt_start_comes_from_its_boot_time_in_the_same_boot() {
        let clock = SteadyClock::new(reading(1_800_000_000, 1000));
        // The wall clock jumped an hour; the attempt started 60 s of boot time ago.
        let now = reading(1_800_003_700, 1100);
        let wall_start = Timestamp::from_second(1_800_000_000 - 20).unwrap();
        let boot_start = Some(Duration::from_secs(1040));
        let start = clock.start_of(now, wall_start, boot_start);
        assert_eq!(clock.steady(now).duration_since(start).as_secs(), 60);
        // After a reboot, the wall clock is all there is.
        let start = clock.start_of(now, wall_start, None);
        assert_eq!(clock.steady(now).duration_since(start).as_secs(), 3700 + 20);
    }
}
