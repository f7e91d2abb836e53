//! The drain rate: many trivial tasks renamed into queue/ at once, and how fast they all end.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::dev::sandbox::{self, FolderWatch, Sandbox};
use crate::home::TaskState;
use crate::out::outln;

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
}

pub(super) fn drain(
    sb: &mut Sandbox,
    watch: &FolderWatch,
    tasks: u32,
    front: &str,
) -> anyhow::Result<Drain> {
    let ids: Vec<String> = (0..tasks).map(|i| format!("drain-{i:04}")).collect();
    for id in &ids {
        sb.stage(
            id,
            &format!("---\ntitle: bench {id}\n{front}---\n@marker\n"),
        )?;
    }
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let done_dir = sb.home.state_dir(TaskState::Done);
    let failed_dir = sb.home.state_dir(TaskState::Failed);
    while !watch.next(Duration::ZERO).is_empty() {}

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
    Ok(Drain {
        done: done.len(),
        failed,
        reasons,
        enqueue,
        elapsed: last.duration_since(t0).unwrap_or_default(),
    })
}

pub(super) fn report(d: &Drain, tasks: u32) -> std::io::Result<()> {
    let secs = d.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        d.done as f64 / secs
    } else {
        0.0
    };
    outln!(
        "drain rate: {tasks} trivial tasks (`@marker`) renamed into queue/ at once, max_agents {MAX_AGENTS}"
    )?;
    outln!(
        "  {} done in {secs:.2} s = {rate:.0} tasks/s   (the renames took {:.0} ms)",
        d.done,
        d.enqueue.as_secs_f64() * 1e3
    )?;
    outln!("  target: >= 100 tasks/s {}", verdict(rate >= 100.0))?;
    if !d.failed.is_empty() {
        outln!("  {} tasks FAILED:", d.failed.len())?;
        for (reason, count) in &d.reasons {
            outln!("    {count} x {reason}")?;
        }
    }
    Ok(())
}
