//! Idle cost: the statements idle daemons send, from the server's statement log over a
//! window, by kind. The lease's renewal (and the lost-host check that rides on it) is
//! expected; anything else is a poll the notifications should have made unnecessary.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dev::bench::verdict;
use crate::out::outln;

use super::{Fleet, HOSTS};

pub(super) struct Idle {
    window: Duration,
    /// Statements by kind.
    kinds: BTreeMap<&'static str, usize>,
    /// The other statements, by their first words.
    others: BTreeMap<String, usize>,
}

const RENEWAL: &str = "lease renewal (hosts)";
const CLAIMS: &str = "lease renewal (claims)";
const RESCUE: &str = "lost-host check";
const RESCAN: &str = "safety rescan";
const OTHER: &str = "other";

fn kind(statement: &str) -> &'static str {
    if statement.contains("UPDATE hosts SET heartbeat_at") {
        RENEWAL
    } else if statement.contains("UPDATE tasks t SET lease_until") {
        CLAIMS
    } else if statement.contains("SET lost_at") || statement.contains("WITH lapsed") {
        RESCUE
    } else if statement.contains("SELECT id, state, CASE") {
        RESCAN
    } else {
        OTHER
    }
}

pub(super) fn idle(fleet: &Fleet, window: Duration) -> anyhow::Result<Idle> {
    // Settle: the last tasks' clean-up and their notifications.
    std::thread::sleep(Duration::from_secs(2));
    fleet.sql("ALTER SYSTEM SET log_statement = 'all'")?;
    fleet.sql("SELECT pg_reload_conf()")?;
    std::thread::sleep(Duration::from_millis(500));
    let from = fleet.cluster.log().len();
    std::thread::sleep(window);
    let log = fleet.cluster.log();
    fleet.sql("ALTER SYSTEM RESET log_statement")?;
    fleet.sql("SELECT pg_reload_conf()")?;
    let mut idle = Idle {
        window,
        kinds: BTreeMap::new(),
        others: BTreeMap::new(),
    };
    for line in log.get(from..).unwrap_or_default().lines() {
        let Some((_, statement)) = line
            .split_once("LOG:  statement: ")
            .or_else(|| line.split_once("LOG:  execute "))
        else {
            continue;
        };
        let k = kind(statement);
        *idle.kinds.entry(k).or_insert(0) += 1;
        if k == OTHER {
            let words: String = statement.chars().take(60).collect();
            *idle.others.entry(words).or_insert(0) += 1;
        }
    }
    Ok(idle)
}

pub(super) fn report(i: &Idle) -> std::io::Result<()> {
    let secs = i.window.as_secs_f64();
    let per = |n: usize| n as f64 / secs / HOSTS as f64;
    outln!(
        "idle cost: statements the server ran for {HOSTS} idle daemons over {secs:.0} s \
         (log_statement = all), per daemon per second"
    )?;
    let shown: Vec<String> = [RENEWAL, CLAIMS, RESCUE, RESCAN, OTHER]
        .iter()
        .map(|k| format!("{k} {:.2}", per(i.kinds.get(k).copied().unwrap_or(0))))
        .collect();
    outln!("  {}", shown.join(" | "))?;
    outln!(
        "  expected from the lease alone: 3 statements per beat, a beat every lease/3 (10 s \
         at the default 30 s lease) = 0.30/s; the safety rescan adds 1 per rescan_interval"
    )?;
    let other = per(i.kinds.get(OTHER).copied().unwrap_or(0));
    outln!(
        "  beyond renewal (other): {other:.2}/s   target: 0 {}",
        verdict(other == 0.0)
    )?;
    for (statement, n) in &i.others {
        outln!("    {n} x {statement}")?;
    }
    Ok(())
}
