//! The clocks the daemon reads. Wall time is for display, calendars and records; durations
//! (timeouts, silence, grace periods) run on `CLOCK_BOOTTIME`, which is monotonic and counts
//! the time the machine was asleep, so an NTP step or `date -s` cannot end an agent early.

use std::time::Duration;

use jiff::Timestamp;

use nightshift_core::clock::Reading;

/// Test hook: a file holding a number of seconds added to the wall clock, read at every
/// reading, so a test can step the daemon's wall clock without touching the machine's.
pub const WALL_SKEW_ENV: &str = "NIGHTSHIFT_TEST_WALL_SKEW_FILE";

/// Both clocks, read now.
pub fn read() -> Reading {
    Reading {
        wall: wall_now(),
        boot: boot_now(),
    }
}

/// The clock that counts time asleep: `CLOCK_BOOTTIME` on Linux. macOS has none by that
/// name, and its `CLOCK_MONOTONIC` is the one that goes on during sleep.
#[cfg(any(target_os = "linux", target_os = "android"))]
const BOOT_CLOCK: rustix::time::ClockId = rustix::time::ClockId::Boottime;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const BOOT_CLOCK: rustix::time::ClockId = rustix::time::ClockId::Monotonic;

/// Time since boot, counting suspend.
pub fn boot_now() -> Duration {
    let ts = rustix::time::clock_gettime(BOOT_CLOCK);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// This boot's id: boot times from another boot cannot be compared with ours.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The boot clock as recorded in a run's records.
pub fn boot_stamp() -> Option<crate::run::BootStamp> {
    Some(crate::run::BootStamp {
        boot_id: boot_id()?,
        boottime_ms: u64::try_from(boot_now().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The boot time of a record, when it was taken in this boot.
pub fn boot_of(stamp: Option<&crate::run::BootStamp>) -> Option<Duration> {
    let stamp = stamp?;
    (boot_id().as_deref() == Some(stamp.boot_id.as_str()))
        .then(|| Duration::from_millis(stamp.boottime_ms))
}

/// The wall clock (with the test skew, if one is set).
pub fn wall_now() -> Timestamp {
    static SKEW_FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let now = Timestamp::now();
    let Some(file) = SKEW_FILE.get_or_init(|| std::env::var_os(WALL_SKEW_ENV).map(Into::into))
    else {
        return now;
    };
    let skew: i64 = std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    now.checked_add(jiff::SignedDuration::from_secs(skew))
        .unwrap_or(now)
}
