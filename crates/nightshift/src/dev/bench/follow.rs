//! `nightshift bench --follow`: what following the agents' output costs the daemon. 16
//! agents print about 100 lines a second each (plain, coloured and redrawn lines, as agent
//! CLIs print them); over a window, the daemon's CPU time (utime + stime from `/proc`, not
//! wall time) is set against the lines the transcripts gained, next to the tmux server's own
//! share. Figures, not a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dev::sandbox::{self, Sandbox};
use crate::out::outln;
use crate::run::RunDir;

use super::dashboard::cpu_time;
use super::verdict;

pub(super) const AGENTS: usize = 16;
/// Lines per agent per second, as `@say` pairs `PAIR_GAP` apart.
const PAIR_GAP: Duration = Duration::from_millis(20);

/// What agents print: plain build output, coloured test results, a spinner redrawn in
/// place, a file name with digits. None is an error, a limit or the marker.
fn line(n: usize) -> String {
    match n % 5 {
        0 => format!("   Compiling serde_derive v1.0.{n}"),
        1 => format!("\x1b[32m\u{2713}\x1b[0m tests::case_{n} ... \x1b[1;32mok\x1b[0m"),
        2 => format!("\x1b[2K\x1b[1G\u{2819} Thinking about the change (step {n})"),
        3 => "Reading crates/store/src/folder.rs and its callers".to_string(),
        _ => format!("\x1b[38;5;246m\u{23fa}\x1b[0m Edited src/lib.rs: {n} lines changed"),
    }
}

/// The script of one agent: `seconds` of output, then it waits.
fn script(seconds: u64) -> String {
    let pairs = (seconds * 1000 / PAIR_GAP.as_millis() as u64) as usize;
    let mut text = String::from("---\ntitle: Chatty\n");
    text.push_str("---\n");
    for i in 0..pairs {
        text.push_str(&format!(
            "@say {}\n@say {}\n@sleep {}ms\n",
            line(2 * i),
            line(2 * i + 1),
            PAIR_GAP.as_millis()
        ));
    }
    text.push_str("@hang\n");
    text
}

/// Lines in a run's transcript so far, over all its segments.
fn transcript_lines(base: &Path) -> u64 {
    let mut paths = vec![base.to_path_buf()];
    paths.extend(
        crate::transcript::segments(base)
            .into_iter()
            .map(|n| crate::transcript::segment(base, n)),
    );
    paths.sort();
    paths.dedup();
    paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .sum()
}

fn tmux_server_pid(sb: &Sandbox) -> Option<u32> {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(&sb.tmux_socket)
        .args(["display-message", "-p", "#{pid}"])
        .env_remove("TMUX")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// What following 16 agents cost the daemon.
pub(super) struct Follow {
    /// Percent of a core.
    pub(super) daemon: f64,
    pub(super) tmux_server: Option<f64>,
    /// The daemon's resident memory with the 16 agents running (kB).
    pub(super) rss_kb: Option<u64>,
}

fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs the agents and prints the figures. `window`: how long the CPU time is counted.
pub(super) fn run(keep: bool, window: Duration) -> anyhow::Result<Option<Follow>> {
    let mut sb = Sandbox::create("bench-follow", keep, &format!("max_agents = {AGENTS}\n"))?;
    let plain = sb.root().join("plain");
    std::fs::create_dir_all(&plain)?;
    sb.start_daemon()?;
    // Output for the warm-up, the window and some slack.
    let body = script(window.as_secs() + 15).replacen(
        "---\n",
        &format!("---\nworkdir: {}\n", plain.display()),
        1,
    );
    let mut transcripts: Vec<PathBuf> = Vec::new();
    for i in 0..AGENTS {
        let id = format!("chatty{i:02}");
        sb.stage(&id, &body)?;
        sb.enqueue(&id)?;
        transcripts.push(RunDir::new(sb.home.run_dir(&id, 1)).transcript());
    }
    // Every agent printing: each transcript has grown past its first lines.
    let start = Instant::now();
    while !transcripts.iter().all(|t| transcript_lines(t) > 50) {
        sandbox::check_interrupted()?;
        sb.check_daemon()?;
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "the {AGENTS} agents did not all start printing within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));

    let daemon = sb.daemon_pid();
    let server = tmux_server_pid(&sb);
    let cpu = |pid: Option<u32>| pid.and_then(cpu_time);
    let lines_before: u64 = transcripts.iter().map(|t| transcript_lines(t)).sum();
    let (daemon_before, server_before) = (cpu(daemon), cpu(server));
    let begun = Instant::now();
    while begun.elapsed() < window {
        sandbox::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let (daemon_after, server_after) = (cpu(daemon), cpu(server));
    let rss = rss_kb(daemon);
    let elapsed = begun.elapsed().as_secs_f64();
    let lines: u64 = transcripts
        .iter()
        .map(|t| transcript_lines(t))
        .sum::<u64>()
        .saturating_sub(lines_before);
    sb.check_daemon()?;
    for i in 0..AGENTS {
        let _ = crate::client::cancel_task(&sb.home, &format!("chatty{i:02}"));
    }
    sb.stop_daemon();

    let share = |b: Option<Duration>, a: Option<Duration>| {
        Some(a?.saturating_sub(b?).as_secs_f64() * 100.0 / elapsed)
    };
    let (Some(daemon_share), Some(d0), Some(d1)) = (
        share(daemon_before, daemon_after),
        daemon_before,
        daemon_after,
    ) else {
        outln!("output following: n/a (needs /proc)")?;
        return Ok(None);
    };
    let daemon_ms = d1.saturating_sub(d0).as_secs_f64() * 1000.0;
    let per_thousand = daemon_ms * 1000.0 / lines.max(1) as f64;
    let rate = lines as f64 / elapsed / AGENTS as f64;
    let server_share = share(server_before, server_after)
        .map_or("n/a".to_string(), |s| format!("{s:.1}% of a core"));
    outln!(
        "output following, {AGENTS} agents printing {rate:.0} lines/s each ({lines} lines in {elapsed:.0} s; \
         CPU is utime + stime from /proc):"
    )?;
    outln!(
        "  daemon CPU: {daemon_share:.1}% of a core, {per_thousand:.1} ms per 1,000 lines; \
         the tmux server beside it: {server_share}   target: <= 3% and below the tmux server {}",
        verdict(
            daemon_share <= 3.0
                && share(server_before, server_after).is_none_or(|s| daemon_share < s)
        )
    )?;
    if let Some(kb) = rss {
        outln!(
            "  daemon resident memory with {AGENTS} agents: {:.1} MB   (unchanged from 22 MB is the target)",
            kb as f64 / 1024.0
        )?;
    }
    Ok(Some(Follow {
        daemon: daemon_share,
        tmux_server: share(server_before, server_after),
        rss_kb: rss,
    }))
}
