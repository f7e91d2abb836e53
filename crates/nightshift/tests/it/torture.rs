//! The kill -9 torture suite at CI size: the real binary's `bench --torture` kills the daemon
//! at random moments (also right after `add`, during `verify` and during start-up) while
//! tasks run in worktrees of a real git repository, and fails on any task whose work did not
//! run exactly once, any leftover session, worktree or check process, or a panic. The long
//! run (hundreds of kills) is the same command with bigger numbers.

use std::time::Duration;

use crate::harness::{self, Env};

const TASKS: u32 = 30;
const KILLS: u32 = 12;

/// The number after `key` in the summary line that starts with it, e.g. `kills:` in
/// "  kills:      12 (4 at a random moment, ...)", or after `key` inside that line.
fn figure(stdout: &str, line_key: &str, after: &str) -> u32 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(line_key))
        .unwrap_or_else(|| panic!("no `{line_key}` line in the summary:\n{stdout}"));
    harness::number_after(line, after) as u32
}

/// The count of a kind of kill, e.g. "3 during verify" in the kills line (0 if absent).
fn kills_of(stdout: &str, kind: &str) -> u32 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("kills:"))
        .unwrap_or_default();
    line.split(['(', ',', ')'])
        .map(str::trim)
        .find_map(|part| part.strip_suffix(kind)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn kill_9_torture_runs_every_task_exactly_once_and_leaves_nothing_behind() {
    torture(&[]);
}

/// The same against the PostgreSQL store: each restart registers the host again, adopts
/// its own claims (with new fencing tokens) and files what finished meanwhile.
#[test]
fn kill_9_torture_on_postgres_runs_every_task_exactly_once() {
    torture(&["--store", "postgres"]);
}

fn torture(store: &[&str]) {
    let env = Env::new();
    let (tasks, kills) = (TASKS.to_string(), KILLS.to_string());
    let mut args = vec!["bench", "--torture", "--tasks", &tasks, "--kills", &kills];
    args.extend(store);
    let out = env
        .cmd(&args)
        // The torture's sandbox goes inside this test's temp dir.
        .env("TMPDIR", &env.root)
        .timeout(Duration::from_secs(240))
        .try_run()
        .expect("bench --torture did not finish within 240 s");
    let shown = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.status.success(), "the torture failed\n{shown}");
    assert!(out.stdout.contains("torture: ok"), "{shown}");

    // Not vacuous: every task was added and done, every kill was made, of every kind.
    let s = &out.stdout;
    assert_eq!(figure(s, "tasks:", "tasks:"), TASKS, "{shown}");
    assert_eq!(figure(s, "tasks:", "("), TASKS, "all done\n{shown}");
    assert_eq!(figure(s, "tasks:", "failed,"), TASKS, "all added\n{shown}");
    assert!(figure(s, "kills:", "kills:") >= KILLS, "{shown}");
    assert!(figure(s, "restarts:", "restarts:") >= KILLS, "{shown}");
    for kind in ["right after add", "during verify", "during start-up"] {
        assert!(kills_of(s, kind) >= 1, "no kill {kind}\n{shown}");
    }
    assert_eq!(figure(s, "agent runs:", "runs:"), TASKS, "started\n{shown}");
    assert_eq!(
        figure(s, "agent runs:", "started,"),
        TASKS,
        "completed\n{shown}"
    );
    assert!(figure(s, "checks:", "checks:") >= 1, "{shown}");
    assert_eq!(figure(s, "violations:", "violations:"), 0, "{shown}");
}
