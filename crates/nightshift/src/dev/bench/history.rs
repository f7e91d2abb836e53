//! `nightshift bench --history`: `ls` and `ls --json` over a home with 10,000 and 100,000
//! finished tasks. The homes are generated once (task files written straight into done/
//! and failed/, with their filing times) and kept in the system's temp folder for the next
//! run; each figure is the median of several runs of the release binary's `ls`, with the
//! bytes it read (`rchar` of `/proc/PID/io`) and its CPU time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::home::{Home, TaskState};
use crate::out::outln;

/// The history sizes measured, and the target for `ls` at each.
const SIZES: [(usize, Duration); 2] = [
    (10_000, Duration::from_millis(100)),
    (100_000, Duration::from_millis(150)),
];
/// Runs per figure (the median is printed).
const RUNS: usize = 9;

pub(super) fn run() -> anyhow::Result<i32> {
    measure()?;
    Ok(crate::exit::SUCCESS)
}

/// Prints the figures; returns each size with its `ls` median and target.
pub(super) fn measure() -> anyhow::Result<Vec<(usize, Duration, Duration)>> {
    let mut figures = Vec::new();
    let cache = std::env::temp_dir().join("nightshift-bench-history");
    outln!(
        "history: `ls` over a home of finished tasks; the homes are generated once and kept in {}",
        cache.display()
    )?;
    outln!(
        "each figure: the median of {RUNS} runs of this binary (a shared machine is noisy: \
         compare medians, not single runs), the bytes the process read, and its CPU time"
    )?;
    outln!()?;
    for (size, target) in SIZES {
        let home = generated(&cache, size)?;
        // The first `ls` builds the index of a generated home: not measured.
        run_ls(&home, &["ls"])?;
        outln!("{size} finished tasks:")?;
        let mut cases: Vec<(&str, Vec<&str>)> =
            vec![("ls", vec!["ls"]), ("ls --json", vec!["ls", "--json"])];
        if size <= 10_000 {
            cases.push(("ls --all (every task)", vec!["ls", "--all"]));
        }
        for (name, args) in cases {
            let mut runs = Vec::new();
            for _ in 0..RUNS {
                runs.push(run_ls(&home, &args)?);
            }
            runs.sort_by_key(|r| r.wall);
            let median = &runs[RUNS / 2];
            if name == "ls" {
                figures.push((size, median.wall, target));
            }
            let target = if name == "ls" {
                format!("   (target ≤ {} ms)", target.as_millis())
            } else {
                String::new()
            };
            outln!(
                "  {name:<22} {:>7.1} ms  read {:>9} bytes  cpu {:>4} ms{target}",
                median.wall.as_secs_f64() * 1000.0,
                median.read.map_or("n/a".into(), |b| b.to_string()),
                median
                    .cpu
                    .map_or("n/a".into(), |c| c.as_millis().to_string()),
            )?;
        }
    }
    Ok(figures)
}

/// One `ls`: how long it took, what it read, its CPU time.
struct Sample {
    wall: Duration,
    read: Option<u64>,
    cpu: Option<Duration>,
}

fn run_ls(home: &Path, args: &[&str]) -> anyhow::Result<Sample> {
    let exe = std::env::current_exe().context("the nightshift binary")?;
    let start = Instant::now();
    let mut child = Command::new(exe)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("NIGHTSHIFT_STORE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running ls")?;
    // Waited for without reaping, so its /proc entry can still be read.
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::waitid(
        rustix::process::WaitId::Pid(pid),
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
    )
    .context("waiting for ls")?;
    let wall = start.elapsed();
    let read = std::fs::read_to_string(format!("/proc/{}/io", child.id()))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: ").map(str::to_string))
        })
        .and_then(|n| n.trim().parse().ok());
    let cpu = super::dashboard::cpu_time(child.id());
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "`nightshift {}` failed", args.join(" "));
    Ok(Sample { wall, read, cpu })
}

/// The home with `size` finished tasks, generated unless an earlier run left it whole.
fn generated(cache: &Path, size: usize) -> anyhow::Result<PathBuf> {
    let root = cache.join(format!("finished-{size}"));
    let complete = root.join(".generated");
    if complete.exists() {
        return Ok(root);
    }
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("{}", root.display()))?;
    }
    outln!("generating {size} finished tasks in {} ...", root.display())?;
    let home = Home::at(&root);
    home.ensure_layout()?;
    let now = SystemTime::now();
    for i in 0..size {
        // Every tenth failed; one minute apart, the newest a minute ago.
        let state = if i % 10 == 7 {
            TaskState::Failed
        } else {
            TaskState::Done
        };
        let path = home.task_file(state, &format!("t{i:06}"));
        std::fs::write(&path, task_text(i, state))?;
        let filed = now - Duration::from_secs(60 * (size - i) as u64);
        std::fs::File::options()
            .append(true)
            .open(&path)?
            .set_modified(filed)?;
    }
    std::fs::write(&complete, b"")?;
    Ok(root)
}

/// A finished task as the daemon files it: the task, then its report.
fn task_text(i: usize, state: TaskState) -> String {
    let (outcome, reason) = match state {
        TaskState::Failed => ("failed", "the agent exited with status 1"),
        _ => ("done", "the agent said it is done"),
    };
    format!(
        "---\npriority: {}\n---\n# Task number {i}: a generated title of a usual length\n\n\
         Fix the flaky test in module {i} and explain what was wrong.\n\n\
         <!-- nightshift:report -->\n## Report\n\n- outcome: {outcome}\n- reason: {reason}\n\
         - attempts: 1\n",
        i % 3
    )
}
