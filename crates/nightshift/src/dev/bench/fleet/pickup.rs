//! Pickup latency across hosts: a task added through host A's store, pinned to host B,
//! until B's agent runs its first step. The add is the store call `nightshift add` makes
//! (its process start-up is not the fleet's latency).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use nightshift_store::Store;

use crate::dev::bench::verdict;
use crate::dev::sandbox::unix_nanos;
use crate::home::TaskState;
use crate::out::outln;

use super::{Fleet, percentile, poll, sorted};

/// Tasks run before measuring: the first one also starts host B's tmux server.
const WARM_UP: u32 = 3;

pub(super) struct Pickup {
    /// Added -> agent's first step, ms.
    total: Vec<f64>,
    /// Added -> the claim's transaction (the attempt row's time), ms.
    to_claim: Vec<f64>,
    /// The claim -> agent's first step, ms.
    to_agent: Vec<f64>,
}

pub(super) fn pickup(fleet: &Fleet, samples: u32) -> anyhow::Result<Pickup> {
    let store = crate::tasks::open(&fleet.hosts[0].home);
    let stamps = fleet.hosts[0].root().join("stamps");
    std::fs::create_dir_all(&stamps)?;
    let mut added = HashMap::new();
    let mut stamped = HashMap::new();
    for i in 0..WARM_UP + samples {
        let id = format!("pick-{i:04}");
        let stamp = stamps.join(format!("{id}.ns"));
        let body = format!(
            "---\ntitle: bench {id}\nhost: h1\nworkdir: {}\n---\n@stamp {}\n@done\n",
            fleet.plain.display(),
            stamp.display()
        );
        let at = unix_nanos(SystemTime::now());
        crate::tasks::call("adding a task", store.enqueue(&id, &body))?;
        let limit = Duration::from_secs(30);
        let first_step = poll(
            Some(fleet),
            limit,
            Duration::from_millis(1),
            "the agent's stamp",
            || {
                Ok(std::fs::read_to_string(&stamp)
                    .ok()
                    .and_then(|t| t.trim().parse::<i128>().ok()))
            },
        )
        .with_context(|| format!("task {id}"))?;
        poll(
            Some(fleet),
            limit,
            Duration::from_millis(10),
            "the task to be done",
            || match crate::tasks::call("finding a task", store.locate(&id))? {
                Some(TaskState::Failed) => anyhow::bail!("bench task {id} failed"),
                state => Ok((state == Some(TaskState::Done)).then_some(())),
            },
        )?;
        if i >= WARM_UP {
            added.insert(id.clone(), at);
            stamped.insert(id, first_step);
        }
    }
    // When each claim's transaction ran (the attempt row), on the same machine's clock.
    let claims: HashMap<String, i128> = fleet
        .sql(
            "SELECT task_id, (extract(epoch from started_at) * 1e9)::int8 FROM attempts
             WHERE task_id LIKE 'pick-%'",
        )?
        .lines()
        .filter_map(|l| {
            let (id, ns) = l.split_once('|')?;
            Some((id.to_string(), ns.parse().ok()?))
        })
        .collect();
    let ms = |from: i128, to: i128| (to - from) as f64 / 1e6;
    let mut p = Pickup {
        total: Vec::new(),
        to_claim: Vec::new(),
        to_agent: Vec::new(),
    };
    for (id, at) in &added {
        let first = stamped[id];
        p.total.push(ms(*at, first));
        if let Some(claim) = claims.get(id) {
            p.to_claim.push(ms(*at, *claim));
            p.to_agent.push(ms(*claim, first));
        }
    }
    Ok(p)
}

pub(super) fn report(p: &Pickup) -> std::io::Result<()> {
    let total = sorted(p.total.clone());
    let (median, p90) = (percentile(&total, 0.5), percentile(&total, 0.9));
    outln!(
        "pickup latency: task added on host h0 (its store call) -> agent started on host h1 \
         (its first step), {} sequential tasks after {WARM_UP} warm-up",
        total.len()
    )?;
    outln!(
        "  median {median:.1} ms   p90 {p90:.1} ms   min {:.1} ms   max {:.1} ms",
        percentile(&total, 0.0),
        percentile(&total, 1.0)
    )?;
    outln!("  target: median <= 25 ms {}", verdict(median <= 25.0))?;
    outln!(
        "  split (medians, ms): NOTIFY, wake-up, scan and claim {:.1} | claim -> agent's first step {:.1}",
        percentile(&sorted(p.to_claim.clone()), 0.5),
        percentile(&sorted(p.to_agent.clone()), 0.5)
    )?;
    Ok(())
}
