//! Scale: a database with many queued tasks (inserted with one statement), then how long
//! `nightshift ls` and a single claim take, and which index serves each hot query.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nightshift_core::records::{Claim, Owner};
use nightshift_postgres::test_cluster::Cluster;
use nightshift_store::Store;

use crate::dev::bench::verdict;
use crate::dev::sandbox::Sandbox;
use crate::out::outln;

use super::{config, literal, migrate, nightshift, percentile, sorted};

const LS_RUNS: usize = 5;
const CLAIMS: usize = 20;

pub(super) struct Scale {
    rows: u32,
    /// `nightshift ls` wall times, ms.
    ls: Vec<f64>,
    /// Single claims, ms.
    claims: Vec<f64>,
    /// (query, the plan's scan lines).
    plans: Vec<(&'static str, Vec<String>)>,
}

/// The daemons' and the CLI's hot queries, as the store sends them (with sample values).
const QUERIES: &[(&str, &str)] = &[
    (
        "claim (pick one queued row)",
        "SELECT id FROM tasks WHERE id = 'scale-050000' AND state = 'queued' FOR UPDATE SKIP LOCKED",
    ),
    (
        "scan (the daemon's queue)",
        "SELECT id, state, CASE WHEN state = 'queued' THEN body END, last_attempt, counted, lost FROM tasks
         WHERE state IN ('queued', 'done', 'failed') ORDER BY id",
    ),
    (
        "list one state",
        "SELECT id FROM tasks WHERE state = 'running' ORDER BY id",
    ),
    (
        "lapsed leases (lost-host check)",
        "SELECT id FROM tasks WHERE state = 'running' AND lease_until < now()",
    ),
];

pub(super) fn scale(cluster: &Cluster, rows: u32, keep: bool) -> anyhow::Result<Scale> {
    let url = cluster.database().map_err(anyhow::Error::msg)?;
    let sql = |q: &str| cluster.query(&url, q).map_err(anyhow::Error::msg);
    // A home for the CLI, with no daemon: `ls` reads the store.
    let sb = Sandbox::create("bench-scale", keep, &config(Some(("scale", &url))))?;
    migrate(&sb)?;
    let body = "---\ntitle: scale task %s\nworkdir: /srv/nowhere\n---\n\
                Rename the helper in module %s and update its callers; keep the tests green.\n";
    sql(&format!(
        "INSERT INTO tasks (id, state, body)
         SELECT 'scale-' || lpad(g::text, 6, '0'), 'queued', format({}, g, g)
         FROM generate_series(1, {rows}) g",
        literal(body)
    ))?;
    sql("VACUUM ANALYZE tasks")?;

    let mut ls = Vec::new();
    for _ in 0..LS_RUNS {
        let start = Instant::now();
        let out = nightshift(&sb, &["ls"])
            .stdout(Stdio::null())
            .output()
            .context("running `nightshift ls`")?;
        ls.push(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            out.status.success(),
            "`nightshift ls` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let store = crate::tasks::open(&sb.home);
    // Connects: the daemon's connections are made once.
    crate::tasks::call("finding a task", store.locate("scale-000001"))?;
    let claim = Claim {
        owner: Owner {
            host: "scale".into(),
            instance: "bench".into(),
        },
        until: jiff::Timestamp::now() + Duration::from_secs(30),
    };
    let mut claims = Vec::new();
    for i in 0..CLAIMS {
        let id = format!("scale-{:06}", rows as usize / 2 + i);
        let start = Instant::now();
        let got = crate::tasks::call("claiming a task", store.claim(&id, &claim))?;
        claims.push(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(got, "the bench could not claim queued task {id}");
    }

    let mut plans = Vec::new();
    for (name, query) in QUERIES {
        let plan = sql(&format!("EXPLAIN {query}"))?;
        let scans = plan
            .lines()
            .filter(|l| l.contains("Scan"))
            .map(|l| l.trim().trim_start_matches("->").trim().to_string())
            .map(|l| l.split("  (cost").next().unwrap_or_default().to_string())
            .collect();
        plans.push((*name, scans));
    }
    Ok(Scale {
        rows,
        ls,
        claims,
        plans,
    })
}

pub(super) fn report(s: &Scale) -> std::io::Result<()> {
    let ls = sorted(s.ls.clone());
    let claims = sorted(s.claims.clone());
    let (ls_median, claim_median) = (percentile(&ls, 0.5), percentile(&claims, 0.5));
    outln!(
        "scale: {} queued tasks (one INSERT ... generate_series)",
        s.rows
    )?;
    outln!(
        "  `nightshift ls` (the whole process): median {ls_median:.0} ms, max {:.0} ms, n {}   target: <= 300 ms {}",
        percentile(&ls, 1.0),
        ls.len(),
        verdict(ls_median <= 300.0)
    )?;
    outln!(
        "  a single claim (the store call): median {claim_median:.2} ms, max {:.2} ms, n {}   target: <= 5 ms {}",
        percentile(&claims, 1.0),
        claims.len(),
        verdict(claim_median <= 5.0)
    )?;
    outln!("  plans (EXPLAIN):")?;
    for (name, scans) in &s.plans {
        outln!("    {name}: {}", scans.join("; "))?;
    }
    Ok(())
}
