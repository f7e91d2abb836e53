//! `nightshift bench`: latency and throughput figures, measured through a real daemon, tmux
//! server and test agent in a temporary home. Figures, not a test: nothing is asserted about
//! timing; the targets are printed next to the figures for a person to judge.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use jiff::Timestamp;

use crate::dev::sandbox::{self, FolderWatch, Sandbox, unix_nanos};
use crate::exit::{self, CliError};
use crate::home::TaskState;
use crate::out::outln;
use crate::report::Report;
use crate::run::{self, DoneRecord, RunDir, StartedRecord};

mod attention;
mod dashboard;
mod drain;
mod fleet;
mod follow;
mod history;
mod torture;

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
/// Tasks run before measuring: the first one also starts the tmux server.
const WARM_UP: u32 = 3;
/// Per sequential task; far above any plausible latency, only there to stop a hang.
const TASK_DEADLINE: Duration = Duration::from_secs(30);
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

    let mut sb = Sandbox::create(
        "bench",
        args.keep,
        &format!("max_agents = {MAX_AGENTS}\ngrace_period = \"0s\"\nsettle = \"1s\"\n"),
    )?;
    print_machine()?;
    outln!(
        "setup: a temporary home, a private tmux server, the scripted test agent, a plain folder \
         as workdir (the daemon's own latency; the cost of a worktree per task is measured \
         last); max_agents {MAX_AGENTS}, grace_period 0s, settle 1s"
    )?;
    if args.keep {
        outln!("home:  {} (kept)", sb.home.root().display())?;
    }
    outln!()?;

    sb.start_daemon()?;
    let done_dir = sb.home.state_dir(TaskState::Done);
    let failed_dir = sb.home.state_dir(TaskState::Failed);
    let watch = FolderWatch::new(&[(done_dir.clone(), false), (failed_dir.clone(), false)])?;
    let stamps = sb.root().join("stamps");
    std::fs::create_dir_all(&stamps)?;

    let result = measure(&mut sb, &watch, &stamps, samples, tasks);
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
    outln!()?;
    follow::run(args.keep, follow_window(args.quick))?;
    if sb.keep {
        outln!(
            "\nKept {} (remove it with `rm -rf {}`).",
            sb.root().display(),
            sandbox::quote(&sb.root().to_string_lossy())
        )?;
    }
    Ok(exit::SUCCESS)
}

fn measure(
    sb: &mut Sandbox,
    watch: &FolderWatch,
    stamps: &Path,
    samples: u32,
    tasks: u32,
) -> anyhow::Result<()> {
    let progress = Progress::new();
    let plain = sb.root().join("plain");
    std::fs::create_dir_all(&plain)?;
    let in_plain = format!("workdir: {}\n", plain.display());
    for i in 0..WARM_UP {
        sequential_task(sb, watch, stamps, &format!("warm-{i}"), &in_plain)?;
    }
    let mut seq = Vec::new();
    for i in 0..samples {
        progress.show(&format!("sequential tasks: {i}/{samples}"));
        seq.push(sequential_task(
            sb,
            watch,
            stamps,
            &format!("seq-{i:04}"),
            &in_plain,
        )?);
    }
    progress.clear();
    report_sequential(sb, &seq)?;

    progress.show(&format!("drain: {tasks} tasks..."));
    let drain = drain::drain(sb, watch, tasks, &in_plain)?;
    progress.clear();
    drain::report(&drain, tasks)?;

    // The same sequential tasks in the git repository: each gets its worktree and branch.
    let n = samples.min(WORKTREE_SAMPLES);
    let mut wt = Vec::new();
    for i in 0..n {
        progress.show(&format!("tasks with a worktree: {i}/{n}"));
        wt.push(sequential_task(
            sb,
            watch,
            stamps,
            &format!("wt-{i:04}"),
            "",
        )?);
    }
    progress.clear();
    let pickup: Vec<f64> = wt.iter().map(|s| ms(s.queued, s.stamped)).collect();
    let done: Vec<f64> = wt.iter().map(|s| ms(s.stamped, s.filed)).collect();
    if let (Some(p), Some(d)) = (Stats::of(&pickup), Stats::of(&done)) {
        outln!(
            "with a worktree per task (the workdir is a git repository), {n} sequential tasks:\n  \
             pickup median {:.1} ms, p99 {:.1} ms (`git worktree add` included); done-detection \
             median {:.1} ms (the uncommitted-work check included)",
            p.median,
            p.p99,
            d.median
        )?;
    }
    if !drain.failed.is_empty() {
        // Not a timing check: a trivial task must never fail, so this is a bug to look at.
        return Err(CliError::new(
            exit::FAILURE,
            format!(
                "{} of the drain's trivial tasks failed (e.g. {}); that is a bug, not slowness",
                drain.failed.len(),
                drain.failed[0]
            ),
        )
        .into());
    }
    Ok(())
}

/// One task through the daemon on its own, with a free slot.
struct Sample {
    id: String,
    /// Just before the rename into queue/.
    queued: i128,
    /// The agent's `@stamp`, its first step.
    stamped: i128,
    /// When the file showed up in done/.
    filed: i128,
    /// The done/ event was missed and the time is from a later look.
    late: bool,
}

fn sequential_task(
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
fn ms(from: i128, to: i128) -> f64 {
    (to - from) as f64 / 1e6
}

fn ts_nanos(t: Timestamp) -> i128 {
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

fn report_sequential(sb: &Sandbox, seq: &[Sample]) -> std::io::Result<()> {
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
            "  target: median <= 15 ms {}, p99 <= 50 ms {}",
            verdict(s.median <= 15.0),
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
        "done-detection latency: agent signals done (`@stamp` then `@done`) -> task file in done/, \
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
    Ok(())
}

/// How long the output-following CPU is counted.
fn follow_window(quick: bool) -> Duration {
    Duration::from_secs(if quick { 5 } else { 15 })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "[ok]" } else { "[MISSED]" }
}

struct Stats {
    n: usize,
    median: f64,
    p99: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Option<Stats> {
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

    fn line(&self) -> String {
        format!(
            "median {:.1} ms   p99 {:.1} ms   min {:.1} ms   max {:.1} ms   n {}",
            self.median, self.p99, self.min, self.max, self.n
        )
    }
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
