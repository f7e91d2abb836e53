//! The drain rate: many trivial tasks renamed into queue/ at once, and how fast they all end.
//! Each agent signals done the way real ones are told to, by running `nightshift done`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::dev::sandbox::{self, FolderWatch, Sandbox};
use crate::home::TaskState;
use crate::out::outln;
use crate::run::{self, DoneRecord, ExitRecord, RunDir};

use super::{MAX_AGENTS, verdict};

pub(super) struct Drain {
    pub(super) done: usize,
    pub(super) failed: Vec<String>,
    /// Why tasks failed, with how many failed so.
    pub(super) reasons: BTreeMap<String, usize>,
    /// How long the renames into queue/ took.
    pub(super) enqueue: Duration,
    /// First rename to the last file in done/ or failed/.
    pub(super) elapsed: Duration,
    /// Processes created on the whole machine in that window (the kernel's pid counter).
    pub(super) processes: Option<u64>,
    /// Median of the agent's `nightshift done` -> its exit recorded by the wrapper (ms):
    /// with a grace period, the slot stays taken until that exit is seen.
    pub(super) done_to_exit: Option<f64>,
}

impl Drain {
    pub(super) fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }

    pub(super) fn per_task(&self) -> Option<f64> {
        Some(self.processes? as f64 / (self.done + self.failed.len()).max(1) as f64)
    }
}

/// The last pid the kernel handed out (in the bench's pid namespace), or `None` off Linux.
pub(super) fn last_pid() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Pids handed out between two readings, allowing for one wrap past `pid_max`.
pub(super) fn pids_between(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    let (before, after) = (before?, after?);
    if after >= before {
        return Some(after - before);
    }
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Pids below 300 are reserved after a wrap.
    Some(max - before + after.saturating_sub(300))
}

pub(super) fn drain(
    sb: &mut Sandbox,
    watch: &FolderWatch,
    tasks: u32,
    front: &str,
) -> anyhow::Result<Drain> {
    drain_named(sb, watch, "drain", tasks, front)
}

/// A drain of tasks named `<prefix>-NNNN` (one sandbox may run several).
pub(super) fn drain_named(
    sb: &mut Sandbox,
    watch: &FolderWatch,
    prefix: &str,
    tasks: u32,
    front: &str,
) -> anyhow::Result<Drain> {
    let ids: Vec<String> = (0..tasks).map(|i| format!("{prefix}-{i:04}")).collect();
    for id in &ids {
        sb.stage(id, &format!("---\ntitle: bench {id}\n{front}---\n@done\n"))?;
    }
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let done_dir = sb.home.state_dir(TaskState::Done);
    let failed_dir = sb.home.state_dir(TaskState::Failed);
    while !watch.next(Duration::ZERO).is_empty() {}

    let pid_before = last_pid();
    let t0 = SystemTime::now();
    let start = Instant::now();
    for id in &ids {
        sb.enqueue(id)?;
    }
    let enqueue = start.elapsed();

    let mut done: HashSet<String> = HashSet::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut last = t0;
    // Generous: a slow machine must still finish, a hung daemon must not hang the bench.
    let deadline = start + Duration::from_secs(60) + Duration::from_secs(tasks.into());
    let what = format!("{tasks} tasks to finish");
    sandbox::wait_for(watch, deadline, &what, |events| {
        sb.check_daemon()?;
        let id_in = |p: &Path, dir: &Path| -> Option<String> {
            (p.parent() == Some(dir))
                .then(|| nightshift_store::folder::task_id_of(p))
                .flatten()
                .filter(|id| wanted.contains(id))
                .map(str::to_string)
        };
        for (t, e) in events {
            if e.kind.is_remove() || e.kind.is_access() {
                continue;
            }
            for p in &e.paths {
                let new = if let Some(id) = id_in(p, &done_dir) {
                    done.insert(id)
                } else if let Some(id) = id_in(p, &failed_dir) {
                    failed.insert(id)
                } else {
                    false
                };
                if new {
                    last = last.max(*t);
                }
            }
        }
        if events.is_empty() {
            // A quiet 100 ms: count from the folders in case an event was lost.
            for (state, set) in [
                (TaskState::Done, &mut done),
                (TaskState::Failed, &mut failed),
            ] {
                let store = crate::tasks::open(&sb.home);
                for id in crate::tasks::call("list", nightshift_store::Store::list(&store, state))?
                {
                    if wanted.contains(id.as_str()) && set.insert(id) {
                        last = SystemTime::now();
                    }
                }
            }
        }
        Ok((done.len() + failed.len() >= ids.len()).then_some(()))
    })?;
    let processes = pids_between(pid_before, last_pid());
    let mut reasons = BTreeMap::new();
    for id in &failed {
        let reason = crate::status::find(&sb.home, &crate::config::Config::default(), id)
            .ok()
            .flatten()
            .and_then(|v| v.reason())
            .unwrap_or_else(|| "no reason recorded".into());
        *reasons.entry(reason).or_insert(0) += 1;
    }
    let mut failed: Vec<String> = failed.into_iter().collect();
    failed.sort();
    let done_to_exit = done_to_exit(sb, &ids);
    Ok(Drain {
        done: done.len(),
        failed,
        reasons,
        enqueue,
        elapsed: last.duration_since(t0).unwrap_or_default(),
        processes,
        done_to_exit,
    })
}

/// The median time from each agent's `nightshift done` to its exit as the wrapper recorded
/// it. An exit can be recorded a little after the drain ends: a short wait for the last.
fn done_to_exit(sb: &Sandbox, ids: &[String]) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut gaps = Vec::new();
    for id in ids {
        let dir = RunDir::new(sb.home.run_dir(id, 1));
        let done = dir.read::<DoneRecord>(run::DONE).ok().flatten();
        let mut exit = dir.read::<ExitRecord>(run::EXIT).ok().flatten();
        while exit.is_none() && done.is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            exit = dir.read::<ExitRecord>(run::EXIT).ok().flatten();
        }
        if let (Some(d), Some(e)) = (done, exit) {
            gaps.push((e.at.as_nanosecond() - d.at.as_nanosecond()) as f64 / 1e6);
        }
    }
    super::latency::Stats::of(&gaps).map(|s| s.median)
}

/// Prints one drain's figures. `what` says which drain (fresh daemon, worktrees, ...).
pub(super) fn report(
    d: &Drain,
    tasks: u32,
    what: &str,
    target: Option<(f64, &str)>,
) -> std::io::Result<()> {
    let secs = d.elapsed.as_secs_f64();
    let rate = d.rate();
    outln!(
        "drain, {what}: {tasks} trivial tasks (`@done`: the agent runs `nightshift done`) \
         renamed into queue/ at once, max_agents {MAX_AGENTS}"
    )?;
    outln!(
        "  {} done in {secs:.2} s = {rate:.1} tasks/s   (the renames took {:.0} ms)",
        d.done,
        d.enqueue.as_secs_f64() * 1e3
    )?;
    if let Some(per) = d.per_task() {
        outln!(
            "  processes created per task: {per:.1} (the kernel's pid counter over the drain: \
             every process on the machine in that window counts)"
        )?;
    }
    if let Some(gap) = d.done_to_exit {
        outln!(
            "  after `nightshift done` the slot stays taken until the agent's exit is seen \
             (grace period): done -> exit recorded, median {gap:.1} ms"
        )?;
    }
    if let Some((min, text)) = target {
        outln!("  target: {text} {}", verdict(rate >= min))?;
    }
    if !d.failed.is_empty() {
        outln!("  {} tasks FAILED:", d.failed.len())?;
        for (reason, count) in &d.reasons {
            outln!("    {count} x {reason}")?;
        }
    }
    Ok(())
}
