//! The fleet's drain rate: many trivial tasks queued at once (one INSERT), drained by all
//! the hosts, next to the folder store's drain on one host measured in the same run.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dev::bench::{MAX_AGENTS, drain::Drain as FolderDrain, verdict};
use crate::out::outln;

use super::{Fleet, HOSTS, literal, poll};

pub(super) struct Drain {
    done: usize,
    failed: usize,
    /// The insert's transaction to the last task filed, on the database's clock.
    elapsed: f64,
    /// Tasks done by each host.
    per_host: BTreeMap<String, usize>,
}

pub(super) fn drain(fleet: &Fleet, tasks: u32) -> anyhow::Result<Drain> {
    let body = format!(
        "---\ntitle: bench drain %s\nworkdir: {}\n---\n@marker\n",
        fleet.plain.display()
    );
    // One statement: every task shows up at once, as the folder bench's renames nearly do.
    fleet.sql(&format!(
        "INSERT INTO tasks (id, state, body)
         SELECT 'drain-' || lpad(g::text, 5, '0'), 'queued', format({}, g)
         FROM generate_series(1, {tasks}) g",
        literal(&body)
    ))?;
    let counts = "SELECT count(*) FILTER (WHERE state = 'done'),
                         count(*) FILTER (WHERE state = 'failed')
                  FROM tasks WHERE id LIKE 'drain-%'";
    let limit = Duration::from_secs(60) + Duration::from_secs(tasks.into());
    let (done, failed) = poll(
        Some(fleet),
        limit,
        Duration::from_millis(100),
        &format!("{tasks} tasks to finish"),
        || {
            let out = fleet.sql(counts)?;
            let mut n = out
                .trim()
                .split('|')
                .map(|x| x.parse::<usize>().unwrap_or(0));
            let (done, failed) = (n.next().unwrap_or(0), n.next().unwrap_or(0));
            Ok((done + failed >= tasks as usize).then_some((done, failed)))
        },
    )?;
    let elapsed: f64 = fleet
        .sql(
            "SELECT extract(epoch from max(modified_at) - min(created_at)) FROM tasks
             WHERE id LIKE 'drain-%'",
        )?
        .trim()
        .parse()
        .unwrap_or(f64::NAN);
    let per_host = fleet
        .sql(
            "SELECT coalesce(host, '?'), count(*) FROM tasks
             WHERE id LIKE 'drain-%' AND state = 'done' GROUP BY 1 ORDER BY 1",
        )?
        .lines()
        .filter_map(|l| {
            let (h, n) = l.split_once('|')?;
            Some((h.to_string(), n.parse().ok()?))
        })
        .collect();
    Ok(Drain {
        done,
        failed,
        elapsed,
        per_host,
    })
}

fn rate(done: usize, secs: f64) -> f64 {
    if secs > 0.0 { done as f64 / secs } else { 0.0 }
}

pub(super) fn report(d: &Drain, folder: &FolderDrain, tasks: u32) -> std::io::Result<()> {
    let folder_secs = folder.elapsed.as_secs_f64();
    let folder_rate = rate(folder.done, folder_secs);
    let fleet_rate = rate(d.done, d.elapsed);
    outln!("claim throughput: {tasks} trivial tasks (`@marker`) queued at once, drained to done")?;
    outln!(
        "  folder store, 1 host (max_agents {MAX_AGENTS}):       {} done in {folder_secs:.2} s = {folder_rate:.0} tasks/s",
        folder.done
    )?;
    let shares: Vec<String> = d.per_host.iter().map(|(h, n)| format!("{h} {n}")).collect();
    outln!(
        "  PostgreSQL, {HOSTS} hosts (max_agents {MAX_AGENTS} each): {} done in {:.2} s = {fleet_rate:.0} tasks/s   ({})",
        d.done,
        d.elapsed,
        shares.join(", ")
    )?;
    let ratio = if folder_rate > 0.0 {
        fleet_rate / folder_rate
    } else {
        0.0
    };
    outln!(
        "  ratio fleet / folder: {ratio:.2}   target: >= 1.00 {}",
        verdict(ratio >= 1.0)
    )?;
    if d.failed > 0 || !folder.failed.is_empty() {
        outln!(
            "  FAILED: {} on the fleet, {} on the folder store (trivial tasks must not fail)",
            d.failed,
            folder.failed.len()
        )?;
    }
    Ok(())
}
