//! Latency of one task at a time: pickup (queued -> the agent's first step) and done
//! detection (the agent's `nightshift done` -> the file in done/), with their splits from the
//! run records.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use jiff::Timestamp;

use crate::dev::sandbox::{self, FolderWatch, Sandbox, unix_nanos};
use crate::home::TaskState;
use crate::out::outln;
use crate::report::Report;
use crate::run::{self, DoneRecord, RunDir, StartedRecord};

use super::{WARM_UP, verdict};

/// Per sequential task; far above any plausible latency, only there to stop a hang.
const TASK_DEADLINE: Duration = Duration::from_secs(120);

/// One task through the daemon on its own, with a free slot.
pub(super) struct Sample {
    id: String,
    /// Just before the rename into queue/.
    pub(super) queued: i128,
    /// The agent's `@stamp`, its first step.
    pub(super) stamped: i128,
    /// When the file showed up in done/.
    pub(super) filed: i128,
    /// The done/ event was missed and the time is from a later look.
    late: bool,
}

pub(super) fn sequential_task(
    sb: &mut Sandbox,
    watch: &FolderWatch,
    stamps: &Path,
    id: &str,
    front: &str,
) -> anyhow::Result<Sample> {
    let stamp = stamps.join(format!("{id}.ns"));
    sb.stage(
        id,
        &format!(
            "---\ntitle: bench {id}\n{front}---\n@stamp {}\n@done\n",
            stamp.display()
        ),
    )?;
    let target = sb.home.task_file(TaskState::Done, id);
    let failed = sb.home.task_file(TaskState::Failed, id);
    // Events from earlier tasks are of no interest.
    while !watch.next(Duration::ZERO).is_empty() {}
    let queued = unix_nanos(SystemTime::now());
    sb.enqueue(id)?;
    let what = format!("task {id} to reach done/");
    let (filed, late) =
        sandbox::wait_for(watch, Instant::now() + TASK_DEADLINE, &what, |events| {
            sb.check_daemon()?;
            if let Some((t, _)) = events.iter().find(|(_, e)| {
                !e.kind.is_remove() && !e.kind.is_access() && e.paths.contains(&target)
            }) {
                return Ok(Some((unix_nanos(*t), false)));
            }
            if failed.exists() {
                let reason = crate::status::find(&sb.home, &crate::config::Config::default(), id)
                    .ok()
                    .flatten()
                    .and_then(|v| v.reason())
                    .unwrap_or_default();
                anyhow::bail!("bench task {id} failed: {reason}");
            }
            // Woken by the timer with the file already there: its event was lost.
            if events.is_empty() && target.exists() {
                return Ok(Some((unix_nanos(SystemTime::now()), true)));
            }
            Ok(None)
        })?;
    let text = std::fs::read_to_string(&stamp)
        .with_context(|| format!("reading the agent's stamp {}", stamp.display()))?;
    let stamped: i128 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: not a time stamp: {text:?}", stamp.display()))?;
    Ok(Sample {
        id: id.to_string(),
        queued,
        stamped,
        filed,
        late,
    })
}

/// Milliseconds between two nanosecond times.
pub(super) fn ms(from: i128, to: i128) -> f64 {
    (to - from) as f64 / 1e6
}

pub(super) fn ts_nanos(t: Timestamp) -> i128 {
    t.as_nanosecond()
}

/// The records an attempt left, as nanosecond times, for the breakdown.
#[derive(Default)]
struct Records {
    claimed: Option<i128>,
    spawned: Option<i128>,
    started: Option<i128>,
    done: Option<i128>,
    reported: Option<i128>,
}

fn records(sb: &Sandbox, id: &str) -> Records {
    let dir = RunDir::new(sb.home.run_dir(id, 1));
    let mut r = Records {
        started: dir
            .read::<StartedRecord>(run::STARTED)
            .ok()
            .flatten()
            .map(|s| ts_nanos(s.at)),
        done: dir
            .read::<DoneRecord>(run::DONE)
            .ok()
            .flatten()
            .map(|d| ts_nanos(d.at)),
        reported: dir
            .read::<Report>(run::REPORT)
            .ok()
            .flatten()
            .map(|r| ts_nanos(r.finished_at)),
        ..Records::default()
    };
    let events = std::fs::read_to_string(dir.file(run::EVENTS)).unwrap_or_default();
    for line in events.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let at = v
            .get("at")
            .and_then(|a| a.as_str())
            .and_then(|a| a.parse::<Timestamp>().ok())
            .map(ts_nanos);
        match v.get("event").and_then(|e| e.as_str()) {
            Some("claimed") => r.claimed = r.claimed.or(at),
            Some("spawned") => r.spawned = r.spawned.or(at),
            _ => {}
        }
    }
    r
}

/// Prints the figures; returns the pickup median (ms).
pub(super) fn report_sequential(sb: &Sandbox, seq: &[Sample]) -> std::io::Result<Option<f64>> {
    let recs: Vec<Records> = seq.iter().map(|s| records(sb, &s.id)).collect();
    let pickup: Vec<f64> = seq.iter().map(|s| ms(s.queued, s.stamped)).collect();
    let done: Vec<f64> = seq.iter().map(|s| ms(s.stamped, s.filed)).collect();
    let split = |f: &dyn Fn(&Sample, &Records) -> Option<f64>| {
        let v: Vec<f64> = seq.iter().zip(&recs).filter_map(|(s, r)| f(s, r)).collect();
        Stats::of(&v).map_or("?".to_string(), |s| format!("{:.1}", s.median))
    };

    outln!(
        "pickup latency: task renamed into queue/ -> agent process running (its first step), \
         {} sequential tasks after {WARM_UP} warm-up",
        seq.len()
    )?;
    if let Some(s) = Stats::of(&pickup) {
        outln!("  {}", s.line())?;
        outln!(
            "  target: median <= 8 ms {}, p99 <= 50 ms {}",
            verdict(s.median <= 8.0),
            verdict(s.p99 <= 50.0)
        )?;
    }
    outln!(
        "  split (medians, ms): daemon notices and claims {} | claim -> tmux new-session returns {} \
         | claim -> wrapper has started the agent {} | agent start-up to first step {}",
        split(&|s, r| Some(ms(s.queued, r.claimed?))),
        split(&|_, r| Some(ms(r.claimed?, r.spawned?))),
        split(&|_, r| Some(ms(r.claimed?, r.started?))),
        split(&|s, r| Some(ms(r.started?, s.stamped))),
    )?;

    outln!()?;
    outln!(
        "done-detection latency: agent signals done (`@stamp`, then `@done` runs `nightshift done`) -> task file in done/, \
         same {} tasks",
        seq.len()
    )?;
    if let Some(s) = Stats::of(&done) {
        outln!("  {}", s.line())?;
        outln!("  target: median <= 50 ms {}", verdict(s.median <= 50.0))?;
    }
    outln!(
        "  split (medians, ms): `nightshift done` runs {} | daemon notices {} \
         | report (git) written, task file rewritten, synced and moved {}",
        split(&|s, r| Some(ms(s.stamped, r.done?))),
        split(&|_, r| Some(ms(r.done?, r.reported?))),
        split(&|s, r| Some(ms(r.reported?, s.filed))),
    )?;
    let late = seq.iter().filter(|s| s.late).count();
    if late > 0 {
        outln!("  ({late} done/ events were missed; those times are from a later look)")?;
    }
    outln!()?;
    Ok(Stats::of(&pickup).map(|s| s.median))
}

pub(super) struct Stats {
    pub(super) n: usize,
    pub(super) median: f64,
    pub(super) p99: f64,
    min: f64,
    max: f64,
}

impl Stats {
    pub(super) fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        // Nearest rank: the smallest value with at least 99% of the samples at or below it.
        let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
        Some(Stats {
            n,
            median,
            p99: v[rank - 1],
            min: v[0],
            max: v[n - 1],
        })
    }

    pub(super) fn line(&self) -> String {
        format!(
            "median {:.1} ms   p99 {:.1} ms   min {:.1} ms   max {:.1} ms   n {}",
            self.median, self.p99, self.min, self.max, self.n
        )
    }
}
