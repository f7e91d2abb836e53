//! `bench --store postgres` at smoke size: it starts its own PostgreSQL cluster, runs a fleet
//! of 3 daemons on it next to the folder store, and prints every figure. Nothing about the
//! timings is asserted (figures are for a person); what is asserted is that every task was
//! done and every figure's line is there.

use std::time::Duration;

use crate::harness::{self, Env};

/// The number right after `after` in the first line containing `line_key`.
fn number_after(stdout: &str, line_key: &str, after: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.contains(line_key))
        .unwrap_or_else(|| panic!("no `{line_key}` line:\n{stdout}"));
    harness::number_after(line, after)
}

#[test]
fn bench_store_postgres_drains_every_task_on_a_fleet_and_prints_each_figure() {
    let env = Env::new();
    let args = [
        "bench",
        "--store",
        "postgres",
        "--quick",
        "--tasks",
        "12",
        "--samples",
        "3",
    ];
    let out = env
        .cmd(&args)
        .timeout(Duration::from_secs(300))
        .try_run()
        .expect("bench --store postgres did not finish within 300 s");
    let shown = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.status.success(), "the bench failed\n{shown}");
    let s = &out.stdout;
    assert_eq!(number_after(s, "folder store, 1 host", ":"), 12, "{shown}");
    assert_eq!(number_after(s, "PostgreSQL, 3 hosts", ":"), 12, "{shown}");
    assert!(!s.contains("FAILED"), "{shown}");
    // The fleet's drain names who did what; the shares add up to every task.
    let line = s
        .lines()
        .find(|l| l.contains("PostgreSQL, 3 hosts"))
        .unwrap_or_default();
    let shares: u64 = line
        .rsplit('(')
        .next()
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| {
            p.trim()
                .trim_end_matches(')')
                .split(' ')
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(shares, 12, "{shown}");
    for figure in [
        "ratio fleet / folder:",
        "pickup latency:",
        "idle cost:",
        "beyond renewal (other):",
        "scale: 10000 queued tasks",
        "`nightshift ls`",
        "a single claim",
        "claim (pick one queued row): Index",
    ] {
        assert!(s.contains(figure), "no `{figure}`\n{shown}");
    }
    assert_eq!(
        number_after(s, "pickup latency", "tasks after"),
        3,
        "{shown}"
    );
}
