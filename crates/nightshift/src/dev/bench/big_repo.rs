//! Task start in a big repository: 100,000 small files, generated once with `git
//! fast-import` and cached outside the tree (`$XDG_CACHE_HOME/nightshift-bench/repo-100k`,
//! else `~/.cache/...`). Each run clones it without a checkout (objects hard-linked, so
//! nothing is copied) and measures, with the default settings, queued -> the agent's first
//! step, against a plain `git worktree add` of the same repository timed beside it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::dev::sandbox::{self, FolderWatch, Sandbox, git_in};
use crate::home::TaskState;
use crate::out::outln;

use super::latency::{Stats, ms, sequential_task};
use super::{MAX_AGENTS, verdict};

pub(super) const FILES: usize = 100_000;
/// Target for the median task start, in ms.
pub(super) const TARGET_MS: f64 = 500.0;
const DONE_MARK: &str = "nightshift-bench-complete";

pub(super) struct BigRepo {
    pub(super) start: Stats,
    pub(super) plain_add: Stats,
    /// The longest wait before a measured task, and its bound.
    pub(super) paused: Duration,
    pub(super) pause_cap: Duration,
}

fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: nowhere to keep the big repository")?;
    Ok(base.join("nightshift-bench").join("repo-100k"))
}

/// The cached bare repository, generated when missing or incomplete.
fn cached() -> anyhow::Result<PathBuf> {
    let repo = cache_dir()?;
    let mark = repo.join(DONE_MARK);
    if let Ok(commit) = std::fs::read_to_string(&mark) {
        let head = git_in(&repo, &["rev-parse", "--verify", "-q", "refs/heads/main"]);
        if head.is_ok_and(|h| h.trim() == commit.trim()) {
            return Ok(repo);
        }
    }
    if repo.exists() {
        std::fs::remove_dir_all(&repo).with_context(|| format!("removing {}", repo.display()))?;
    }
    outln!(
        "generating a repository of {FILES} files in {} (once) ...",
        repo.display()
    )?;
    std::fs::create_dir_all(&repo)?;
    git_in(&repo, &["init", "-q", "--bare"])?;
    git_in(&repo, &["symbolic-ref", "HEAD", "refs/heads/main"])?;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running git fast-import")?;
    {
        let stdin = child.stdin.take().context("git fast-import's stdin")?;
        let mut w = std::io::BufWriter::new(stdin);
        let message = "100,000 small files for nightshift's bench\n";
        write!(
            w,
            "commit refs/heads/main\ncommitter bench <bench@nightshift.invalid> 1700000000 +0000\n\
             data {}\n{message}",
            message.len()
        )?;
        for i in 0..FILES {
            let body = format!("file {i}\nsome content of a small source file\n");
            write!(
                w,
                "M 100644 inline src/d{:03}/f{i:06}.txt\ndata {}\n{body}",
                i / 1000,
                body.len()
            )?;
        }
        w.flush()?;
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "git fast-import failed ({status})");
    let head = git_in(&repo, &["rev-parse", "refs/heads/main"])?;
    std::fs::write(&mark, head.trim())?;
    Ok(repo)
}

/// Seconds of `git worktree add` (new branch, full checkout), each removed afterwards.
fn plain_adds(repo: &Path, scratch: &Path, runs: u32) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for i in 0..runs {
        sandbox::check_interrupted()?;
        let path = scratch.join(format!("plain-wt-{i}"));
        let path_str = path.to_string_lossy().into_owned();
        let branch = format!("bench/plain-{i}");
        let start = Instant::now();
        git_in(
            repo,
            &["worktree", "add", "-q", "-b", &branch, &path_str, "HEAD"],
        )?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        git_in(repo, &["worktree", "remove", "--force", &path_str])?;
    }
    Ok(times)
}

/// `samples` task starts, each after a pause long enough for a warm pool to refill.
pub(super) fn run(keep: bool, samples: u32) -> anyhow::Result<BigRepo> {
    let cache = cached()?;
    let mut sb = Sandbox::create("bench-big", keep, &format!("max_agents = {MAX_AGENTS}\n"))?;
    let big = sb.root().join("big");
    let big_str = big.to_string_lossy().into_owned();
    let cache_str = cache.to_string_lossy().into_owned();
    git_in(
        sb.root(),
        &[
            "clone",
            "-q",
            "--no-checkout",
            "--local",
            &cache_str,
            &big_str,
        ],
    )?;
    for args in [
        ["config", "user.name", "nightshift bench"],
        ["config", "user.email", "bench@nightshift.invalid"],
        ["config", "commit.gpgsign", "false"],
    ] {
        git_in(&big, &args)?;
    }
    let plain = Stats::of(&plain_adds(&big, sb.root(), samples.clamp(1, 3))?)
        .context("no plain worktree add")?;
    // Long enough for a pool to check out a few worktrees in the background.
    let cap = Duration::from_secs_f64((3.0 * plain.median / 1e3).max(2.0) + 2.0);

    sb.start_daemon()?;
    let done = sb.home.state_dir(TaskState::Done);
    let failed = sb.home.state_dir(TaskState::Failed);
    let watch = FolderWatch::new(&[(done, false), (failed, false)])?;
    let stamps = sb.root().join("stamps");
    std::fs::create_dir_all(&stamps)?;
    let front = format!("workdir: {big_str}\n");
    // The first task makes the daemon meet the repository (and a pool, if any, fill).
    sequential_task(&mut sb, &watch, &stamps, "big-first", &front)?;
    let mut starts = Vec::new();
    let mut paused = Duration::ZERO;
    for i in 0..samples {
        paused = paused.max(wait_quiet(sb.daemon_pid(), cap)?);
        let s = sequential_task(&mut sb, &watch, &stamps, &format!("big-{i}"), &front)?;
        starts.push(ms(s.queued, s.stamped));
    }
    Ok(BigRepo {
        start: Stats::of(&starts).context("no task start in the big repository")?,
        plain_add: plain,
        paused,
        pause_cap: cap,
    })
}

/// The daemon's child processes now (its background git work), or `None` without /proc's
/// `children` files.
fn children(pid: u32) -> Option<usize> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let list = std::fs::read_to_string(task.ok()?.path().join("children")).ok()?;
        n += list.split_whitespace().count();
    }
    Some(n)
}

/// Waits until the daemon has run no child process (a pool's checkout, a removal) for a
/// second, at least 2 s and at most `cap`; returns how long it waited.
fn wait_quiet(daemon: Option<u32>, cap: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut quiet_since = start;
    while start.elapsed() < cap {
        sandbox::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(100));
        match daemon.and_then(children) {
            Some(0) => {}
            Some(_) => quiet_since = Instant::now(),
            // Nothing to watch: the whole bound.
            None => continue,
        }
        if start.elapsed() >= Duration::from_secs(2)
            && quiet_since.elapsed() >= Duration::from_secs(1)
        {
            break;
        }
    }
    Ok(start.elapsed())
}

pub(super) fn report(b: &BigRepo) -> std::io::Result<()> {
    outln!(
        "task start in a {FILES}-file repository (cached; a clone without checkout per run), \
         default settings: queued -> the agent's first step, {} tasks, after a first task; \
         before each, a pause until the daemon's background git work (a warm pool filling) \
         had stopped for 1 s: at most {:.0} s (bound {:.0} s)",
        b.start.n,
        b.paused.as_secs_f64(),
        b.pause_cap.as_secs_f64()
    )?;
    outln!("  {}", b.start.line())?;
    outln!(
        "  plain `git worktree add -b` of the same repository beside it: median {:.1} ms (n {})",
        b.plain_add.median,
        b.plain_add.n
    )?;
    outln!(
        "  target: median <= {TARGET_MS:.0} ms {}",
        verdict(b.start.median <= TARGET_MS)
    )?;
    Ok(())
}
