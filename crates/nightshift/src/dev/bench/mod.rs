//! `nightshift bench`: latency and throughput figures, measured through a real daemon, tmux
//! server and test agent in a temporary home. Figures, not a test: nothing is asserted about
//! timing; the targets are printed next to the figures for a person to judge.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::dev::sandbox::{self, FolderWatch, Sandbox};
use crate::exit::{self, CliError};
use crate::home::TaskState;
use crate::out::outln;

mod attention;
mod big_repo;
mod dashboard;
mod drain;
mod fleet;
mod follow;
mod history;
mod latency;
mod pueue;
mod summary;
mod tmux_loop;
mod torture;

use summary::Summary;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Tasks for the drain-rate run [default: 500, or 40 with --quick]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub tasks: Option<u32>,
    /// Sequential tasks for the pickup and done-detection latencies [default: 200, or 20
    /// with --quick]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub samples: Option<u32>,
    /// Small numbers, for a smoke run
    #[arg(long)]
    pub quick: bool,
    /// Keep the temporary home afterwards (runs/ holds every attempt's records)
    #[arg(long)]
    pub keep: bool,
    /// Measure the attention flags instead: precision, recall and question latency
    #[arg(long)]
    pub attention: bool,
    /// Measure `nightshift top` instead: how soon it shows changes, and its CPU use
    #[arg(long, conflicts_with = "attention")]
    pub dashboard: bool,
    /// Measure `ls` over 10,000 and 100,000 finished tasks instead (generated once, kept
    /// in the temp folder)
    #[arg(long, conflicts_with_all = ["attention", "dashboard", "torture"])]
    pub history: bool,
    /// Measure only the task start in a 100,000-file repository (generated once, cached in
    /// ~/.cache/nightshift-bench), against a plain `git worktree add`. Slow; part of the
    /// full run, left out of `--quick`
    #[arg(long, conflicts_with_all = ["attention", "dashboard", "torture", "history", "follow"])]
    pub big_repo: bool,
    /// Measure only what following the agents' output costs the daemon: 16 agents
    /// printing 100 lines/s each, its CPU per 1,000 lines and the tmux server's beside it
    #[arg(long, conflicts_with_all = ["attention", "dashboard", "torture", "history"])]
    pub follow: bool,
    /// Run the kill -9 torture instead: `--tasks` tasks [default: 30], the daemon killed
    /// `--kills` times and restarted at once; fails on any task run twice, lost or failed,
    /// any leftover session, worktree or check, or a panic
    #[arg(long, conflicts_with_all = ["attention", "dashboard", "quick", "samples"])]
    pub torture: bool,
    /// Kills of the daemon in the torture run
    #[arg(long, value_name = "K", default_value_t = 12, requires = "torture")]
    pub kills: u32,
    /// Seed of the torture run's random choices [default: from the clock, printed]
    #[arg(long, value_name = "S", requires = "torture")]
    pub seed: Option<u64>,
    /// max_agents for the torture run
    #[arg(long, value_name = "N", default_value_t = 4, requires = "torture",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_agents: u32,
    /// The store to measure: `postgres` starts a private PostgreSQL cluster (initdb in a
    /// temp dir) and measures a fleet of 3 daemons on it next to the folder store
    /// (with `--torture`: the torture run on a private cluster, one daemon killed at random)
    #[arg(long, value_enum, default_value_t = BenchStore::Folder,
          conflicts_with_all = ["attention", "dashboard"])]
    pub store: BenchStore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchStore {
    Folder,
    Postgres,
}

const MAX_AGENTS: usize = 4;
/// Tasks run before measuring the latencies.
const WARM_UP: u32 = 3;
/// Sequential tasks measured with a worktree each.
const WORKTREE_SAMPLES: u32 = 50;

pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    if args.attention {
        return attention::run(args.keep);
    }
    if args.dashboard {
        return dashboard::run(args.keep);
    }
    if args.history {
        return history::run();
    }
    if args.follow {
        sandbox::require_tools("bench")?;
        sandbox::catch_interrupts()?;
        follow::run(args.keep, follow_window(args.quick))?;
        return Ok(exit::SUCCESS);
    }
    if args.big_repo {
        sandbox::require_tools("bench")?;
        sandbox::catch_interrupts()?;
        print_machine()?;
        let b = big_repo::run(args.keep, big_repo_samples(args.quick))?;
        big_repo::report(&b)?;
        return Ok(exit::SUCCESS);
    }
    if args.store == BenchStore::Postgres && !args.torture {
        return fleet::run(fleet::FleetArgs {
            tasks: args.tasks.unwrap_or(if args.quick { 30 } else { 300 }),
            samples: args.samples.unwrap_or(if args.quick { 10 } else { 30 }),
            quick: args.quick,
            keep: args.keep,
        });
    }
    if args.torture {
        return torture::run(torture::TortureArgs {
            tasks: args.tasks.unwrap_or(30),
            kills: args.kills,
            seed: args.seed,
            max_agents: args.max_agents,
            keep: args.keep,
            postgres: args.store == BenchStore::Postgres,
        });
    }
    let samples = args.samples.unwrap_or(if args.quick { 20 } else { 200 });
    let tasks = args.tasks.unwrap_or(if args.quick { 40 } else { 500 });
    sandbox::require_tools("bench")?;
    sandbox::catch_interrupts()?;

    // The defaults, grace period and all: only the slots are set, as in the table.
    let mut sb = Sandbox::create("bench", args.keep, &format!("max_agents = {MAX_AGENTS}\n"))?;
    print_machine()?;
    outln!(
        "setup: a temporary home, a private tmux server, the scripted test agent, which signals \
         done by running `nightshift done`; the default settings (grace_period 10s, settle 1s, \
         a worktree per task in a git repository) with max_agents {MAX_AGENTS}"
    )?;
    if args.keep {
        outln!("home:  {} (kept)", sb.home.root().display())?;
    }
    outln!()?;

    sb.start_daemon()?;
    let mut summary = Summary::default();
    let result = measure(&mut sb, samples, tasks, &mut summary);
    if result.is_err() && sandbox::check_interrupted().is_ok() {
        // Something went wrong (not the user's Ctrl-C): keep the evidence. The error itself
        // is printed last, by main.
        sb.keep = true;
        eprintln!(
            "\nThe end of the daemon's log ({}):\n{}Kept {} for inspection (runs/ holds each attempt's records).",
            sb.daemon_log().display(),
            sb.log_tail(10),
            sb.root().display()
        );
    }
    result?;
    sb.stop_daemon();
    outln!()?;
    let follow = follow::run(args.keep, follow_window(args.quick))?;
    add_follow(&mut summary, follow.as_ref());
    outln!()?;
    if args.quick {
        outln!("`ls` over 10k/100k finished tasks: left out of --quick (`bench --history`)")?;
        for (size, target) in [("10k", "<= 100 ms"), ("100k", "<= 150 ms")] {
            summary.skipped(
                &format!("`ls`, {size} finished tasks"),
                "not run (`bench --history`)",
                target,
            );
        }
        summary.skipped(
            "task start, 100k-file repository, median",
            "not run (`bench --big-repo`)",
            "<= 500 ms",
        );
    } else {
        for (size, median, target) in history::measure()? {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            summary.add(
                &format!("`ls`, {}k finished tasks", size / 1000),
                format!("{:.0} ms", ms(median)),
                &format!("<= {:.0} ms", ms(target)),
                Some(median <= target),
            );
        }
        outln!()?;
        let b = big_repo::run(args.keep, big_repo_samples(false))?;
        big_repo::report(&b)?;
        summary.add(
            "task start, 100k-file repository, median",
            format!(
                "{:.0} ms (plain `git worktree add`: {:.0} ms)",
                b.start.median, b.plain_add.median
            ),
            "<= 500 ms",
            Some(b.start.median <= big_repo::TARGET_MS),
        );
    }
    outln!()?;
    summary.print()?;
    if sb.keep {
        outln!(
            "\nKept {} (remove it with `rm -rf {}`).",
            sb.root().display(),
            sandbox::quote(&sb.root().to_string_lossy())
        )?;
    }
    Ok(exit::SUCCESS)
}

fn big_repo_samples(quick: bool) -> u32 {
    if quick { 2 } else { 3 }
}

fn add_follow(summary: &mut Summary, follow: Option<&follow::Follow>) {
    let name = "daemon CPU, 16 agents x 100 lines/s";
    let Some(f) = follow else {
        summary.skipped(
            name,
            "n/a (needs /proc)",
            "<= 3% of a core, below the tmux server",
        );
        return;
    };
    let server = f.tmux_server.map_or("n/a".into(), |s| format!("{s:.1}%"));
    summary.add(
        name,
        format!("{:.1}% (tmux server {server})", f.daemon),
        "<= 3% of a core, below the tmux server",
        Some(f.daemon <= 3.0 && f.tmux_server.is_none_or(|s| f.daemon < s)),
    );
    if let Some(kb) = f.rss_kb {
        summary.add(
            "daemon RSS with 16 agents",
            format!("{:.1} MB", kb as f64 / 1024.0),
            "unchanged (22 MB)",
            None,
        );
    }
}

fn watch_done(sb: &Sandbox) -> anyhow::Result<FolderWatch> {
    let done_dir = sb.home.state_dir(TaskState::Done);
    let failed_dir = sb.home.state_dir(TaskState::Failed);
    FolderWatch::new(&[(done_dir, false), (failed_dir, false)])
}

/// Every drain's failures are a bug, not slowness: stop with them.
fn no_failures(d: &drain::Drain) -> anyhow::Result<()> {
    if d.failed.is_empty() {
        return Ok(());
    }
    Err(CliError::new(
        exit::FAILURE,
        format!(
            "{} of the drain's trivial tasks failed (e.g. {}); that is a bug, not slowness",
            d.failed.len(),
            d.failed[0]
        ),
    )
    .into())
}

fn measure(
    sb: &mut Sandbox,
    samples: u32,
    tasks: u32,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let watch = watch_done(sb)?;
    let progress = Progress::new();
    let stamps = sb.root().join("stamps");
    std::fs::create_dir_all(&stamps)?;
    let plain = sb.root().join("plain");
    std::fs::create_dir_all(&plain)?;
    let in_plain = format!("workdir: {}\n", plain.display());

    // First, from the daemon as it started: no tmux server yet, nothing warm.
    progress.show(&format!("drain from a fresh daemon: {tasks} tasks..."));
    let cold = drain::drain_named(sb, &watch, "cold", tasks, &in_plain)?;
    progress.clear();
    drain::report(
        &cold,
        tasks,
        "plain folder, from a freshly started daemon (the headline figure)",
        None,
    )?;
    no_failures(&cold)?;
    progress.show(&format!("drain, warm: {tasks} tasks..."));
    let warm = drain::drain_named(sb, &watch, "warm", tasks, &in_plain)?;
    progress.clear();
    drain::report(
        &warm,
        tasks,
        "plain folder, again on the now warm daemon",
        None,
    )?;
    no_failures(&warm)?;
    outln!()?;

    progress.show("bare tmux loop...");
    let bare = tmux_loop::run(sb.root(), tasks)?;
    progress.clear();
    tmux_loop::report(&bare)?;
    outln!()?;
    let pueue = match pueue::find() {
        Some(found) => {
            progress.show(&format!("pueue: {tasks} tasks..."));
            let p = pueue::run(sb.root(), tasks, &found)?;
            progress.clear();
            pueue::report(&p)?;
            Some(p)
        }
        None => {
            pueue::report_absent()?;
            None
        }
    };
    report_plain(&cold, &bare, pueue.as_ref(), summary)?;
    outln!()?;

    for i in 0..WARM_UP {
        latency::sequential_task(sb, &watch, &stamps, &format!("warm-{i}"), &in_plain)?;
    }
    let mut seq = Vec::new();
    for i in 0..samples {
        progress.show(&format!("sequential tasks: {i}/{samples}"));
        seq.push(latency::sequential_task(
            sb,
            &watch,
            &stamps,
            &format!("seq-{i:04}"),
            &in_plain,
        )?);
    }
    progress.clear();
    let pickup = latency::report_sequential(sb, &seq)?;
    if let Some(p) = pickup {
        summary.add(
            "pickup median, plain folder",
            format!("{p:.1} ms"),
            "<= 8 ms",
            Some(p <= 8.0),
        );
    }
    let idle = idle_cpu(sb, idle_window(samples))?;
    summary.add("idle CPU", idle.clone(), "0 (unchanged)", None);
    outln!()?;

    // In the git repository, the default: each task gets its worktree and branch.
    progress.show(&format!("drain with a worktree per task: {tasks} tasks..."));
    let wt = drain::drain_named(sb, &watch, "wt", tasks, "")?;
    progress.clear();
    drain::report(
        &wt,
        tasks,
        "a worktree per task (the workdir is a git repository)",
        Some((60.0, ">= 60 tasks/s")),
    )?;
    no_failures(&wt)?;
    summary.add(
        "drain with a worktree per task",
        format!("{:.1}/s{}", wt.rate(), per_task(&wt)),
        ">= 60/s",
        Some(wt.rate() >= 60.0),
    );
    let n = samples.min(WORKTREE_SAMPLES);
    let mut wt = Vec::new();
    for i in 0..n {
        progress.show(&format!("tasks with a worktree: {i}/{n}"));
        wt.push(latency::sequential_task(
            sb,
            &watch,
            &stamps,
            &format!("wt1-{i:04}"),
            "",
        )?);
    }
    progress.clear();
    let pickup: Vec<f64> = wt
        .iter()
        .map(|s| latency::ms(s.queued, s.stamped))
        .collect();
    let done: Vec<f64> = wt.iter().map(|s| latency::ms(s.stamped, s.filed)).collect();
    if let (Some(p), Some(d)) = (latency::Stats::of(&pickup), latency::Stats::of(&done)) {
        outln!(
            "with a worktree per task, {n} sequential tasks:\n  \
             pickup median {:.1} ms, p99 {:.1} ms (`git worktree add` included); done-detection \
             median {:.1} ms (the uncommitted-work check included)",
            p.median,
            p.p99,
            d.median
        )?;
    }
    Ok(())
}

fn per_task(d: &drain::Drain) -> String {
    d.per_task()
        .map_or(String::new(), |p| format!(", {p:.1} processes per task"))
}

/// The plain drain against its floor and against pueue, as the first row.
fn report_plain(
    cold: &drain::Drain,
    bare: &tmux_loop::Loop,
    pueue: Option<&pueue::Pueue>,
    summary: &mut Summary,
) -> std::io::Result<()> {
    let share = cold.rate() * 100.0 / bare.rate().max(1e-9);
    outln!(
        "plain drain (fresh daemon) against its floor: {share:.0}% of the bare tmux loop \
         (target >= 50% {})",
        verdict(share >= 50.0)
    )?;
    let ratio = pueue.map(|p| cold.rate() / p.rate().max(1e-9));
    match (ratio, pueue) {
        (Some(r), Some(p)) => outln!(
            "plain drain against pueue in the same run: {:.1}/s vs {:.1}/s = {r:.1}x pueue \
             (target >= 10x {})",
            cold.rate(),
            p.rate(),
            verdict(r >= 10.0)
        )?,
        _ => outln!("plain drain against pueue: n/a (pueue not installed)")?,
    }
    let value = format!(
        "{:.1}/s{}; {share:.0}% of a bare tmux loop ({:.0}/s); {}",
        cold.rate(),
        per_task(cold),
        bare.rate(),
        ratio.map_or("pueue not installed".to_string(), |r| format!(
            "{r:.1}x pueue"
        )),
    );
    summary.add(
        "drain, plain folder, 4 slots",
        value,
        ">= 10x pueue, >= 50% of a bare tmux loop",
        Some(share >= 50.0 && ratio.is_some_and(|r| r >= 10.0)),
    );
    Ok(())
}

fn idle_window(samples: u32) -> Duration {
    Duration::from_secs(if samples < 50 { 2 } else { 5 })
}

/// The daemon's CPU with nothing to do (its last agents already gone).
fn idle_cpu(sb: &Sandbox, window: Duration) -> anyhow::Result<String> {
    let Some(pid) = sb.daemon_pid() else {
        return Ok("n/a".into());
    };
    // The last sequential task's session is closed right after its exit.
    std::thread::sleep(Duration::from_millis(500));
    let Some(before) = dashboard::cpu_time(pid) else {
        return Ok("n/a (needs /proc)".into());
    };
    let start = std::time::Instant::now();
    while start.elapsed() < window {
        sandbox::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = dashboard::cpu_time(pid)
        .unwrap_or(before)
        .saturating_sub(before);
    let text = format!(
        "{} ms of CPU in {:.0} s",
        used.as_millis(),
        start.elapsed().as_secs_f64()
    );
    outln!("idle daemon (nothing queued): {text} (target: 0, unchanged)")?;
    Ok(text)
}

/// How long the output-following CPU is counted.
fn follow_window(quick: bool) -> Duration {
    Duration::from_secs(if quick { 5 } else { 15 })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "[ok]" } else { "[MISSED]" }
}

fn print_machine() -> std::io::Result<()> {
    let build = if cfg!(debug_assertions) {
        "debug build: expect slower figures than users get; use `cargo run --release -- bench`"
    } else {
        "release build"
    };
    outln!("nightshift bench ({build})")?;
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let os = sandbox::tool_version("uname", "-srm").unwrap_or_else(|| "unknown OS".into());
    let tmux = sandbox::tool_version("tmux", "-V").unwrap_or_default();
    let git = sandbox::tool_version("git", "--version").unwrap_or_default();
    outln!("machine: {cpus} CPUs, {os}, {tmux}, {git}")?;
    Ok(())
}

/// A one-line progress counter on stderr, for terminals only.
struct Progress {
    on: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, text: &str) {
        if self.on {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
        }
    }

    fn clear(&self) {
        self.show("");
    }
}
