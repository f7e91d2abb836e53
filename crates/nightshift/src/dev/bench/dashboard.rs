//! `nightshift bench --dashboard`: how soon `nightshift top` shows a change, and what it
//! costs while it waits. Measured from outside, as a person sees it: the dashboard runs in a
//! tmux pane of its own server, and the bench reads that pane. Figures, not a test.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client;
use crate::dev::sandbox::{self, Sandbox};
use crate::exit;
use crate::out::outln;
use crate::tmux::session_name;

const SAMPLES: usize = 30;
const DEADLINE: Duration = Duration::from_secs(30);
/// Long enough for the 10 ms accounting ticks of `/proc` to mean something.
const CPU_WINDOW: Duration = Duration::from_secs(10);
/// Agents printing a line every 100 ms, for the busy CPU figure.
const BUSY_AGENTS: usize = 4;
const GAP: Duration = Duration::from_millis(300);

/// The dashboard in a pane of a private tmux server.
struct Pane {
    socket: PathBuf,
}

impl Pane {
    fn start(sb: &Sandbox) -> anyhow::Result<Pane> {
        let pane = Pane {
            socket: sb.root().join("top.sock"),
        };
        let exe = std::env::current_exe().context("finding the nightshift binary")?;
        let out = pane
            .tmux()
            .args(["new-session", "-d", "-x", "120", "-y", "40", "--"])
            .arg(exe)
            .arg("--home")
            .arg(sb.home.root())
            .arg("top")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "cannot start the dashboard in tmux: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(pane)
    }

    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(&self.socket)
            .env_remove("TMUX")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        cmd
    }

    fn screen(&self) -> String {
        self.tmux()
            .args(["capture-pane", "-p"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        let out = self
            .tmux()
            .args(["list-panes", "-F", "#{pane_pid}"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Reads the pane until `cond` holds; returns when it first did.
    fn wait(&self, what: &str, cond: impl Fn(&str) -> bool) -> anyhow::Result<Instant> {
        let start = Instant::now();
        loop {
            sandbox::check_interrupted()?;
            if cond(&self.screen()) {
                return Ok(Instant::now());
            }
            anyhow::ensure!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; the dashboard shows:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

/// User plus system CPU time of a process so far (Linux `/proc`).
pub(super) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = rustix::param::clock_ticks_per_second();
    Some(Duration::from_millis(ticks * 1000 / per_second.max(1)))
}

fn cpu_over(pid: Option<u32>, window: Duration) -> anyhow::Result<String> {
    let Some(pid) = pid else {
        return Ok("n/a (no pane pid)".into());
    };
    let Some(before) = cpu_time(pid) else {
        return Ok("n/a (needs /proc)".into());
    };
    let start = Instant::now();
    while start.elapsed() < window {
        sandbox::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = cpu_time(pid).unwrap_or(before).saturating_sub(before);
    Ok(format!(
        "{} ms of CPU in {} s ({:.2} %)",
        used.as_millis(),
        window.as_secs(),
        used.as_secs_f64() * 100.0 / window.as_secs_f64()
    ))
}

fn stats(mut ms: Vec<f64>) -> String {
    if ms.is_empty() {
        return "no samples".into();
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.1} ms, p90 {:.1} ms, max {:.1} ms (n {})",
        at(0.5),
        at(0.9),
        at(1.0),
        ms.len()
    )
}

fn agent_tmux(sb: &Sandbox) -> Command {
    let mut cmd = Command::new("tmux");
    cmd.arg("-S")
        .arg(&sb.tmux_socket)
        .env_remove("TMUX")
        .stdin(Stdio::null());
    cmd
}

pub(super) fn run(keep: bool) -> anyhow::Result<i32> {
    sandbox::require_tools("bench")?;
    sandbox::catch_interrupts()?;
    let mut sb = Sandbox::create(
        "bench-dashboard",
        keep,
        &format!("max_agents = {BUSY_AGENTS}\ngrace_period = \"0s\"\n"),
    )?;
    outln!(
        "setup: a temporary home, a daemon, the scripted test agent; `nightshift top` in a \
         120x40 tmux pane, read with capture-pane (the bench polls the pane, the dashboard does not poll)"
    )?;
    if keep {
        outln!("home:  {} (kept)", sb.home.root().display())?;
    }
    sb.start_daemon()?;
    let pane = Pane::start(&sb)?;
    pane.wait("the empty dashboard", |s| s.contains("No tasks yet"))?;
    let pid = pane.pid();

    outln!(
        "idle, nothing queued:            {}",
        cpu_over(pid, CPU_WINDOW)?
    )?;

    // Output → preview: type into an agent that waits for answers; its pane echoes them.
    let script: String = (0..SAMPLES + 5).map(|_| "@ask next?\n").collect();
    sb.stage("echo", &format!("---\ntitle: Echo\n---\n{script}"))?;
    sb.enqueue("echo")?;
    pane.wait("the agent's screen in the preview", |s| {
        s.contains("running script") && s.contains("next?")
    })?;
    let session = session_name("echo");
    let mut output = Vec::new();
    for i in 0..SAMPLES {
        // Apart by more than the dashboard's 100 ms throttle: each change is a first one.
        std::thread::sleep(GAP);
        let word = format!("mark{i:03}x");
        let start = Instant::now();
        let sent = agent_tmux(&sb)
            .args(["send-keys", "-t", &session, "-l", &word])
            .status()?;
        anyhow::ensure!(sent.success(), "cannot type into {session}");
        let seen = pane.wait("typed text in the preview", |s| s.contains(&word))?;
        output.push(seen.duration_since(start).as_secs_f64() * 1000.0);
        agent_tmux(&sb)
            .args(["send-keys", "-t", &session, "Enter"])
            .status()?;
    }
    outln!("agent output → preview:          {}", stats(output))?;
    outln!(
        "idle, one agent waiting:         {}",
        cpu_over(pid, CPU_WINDOW)?
    )?;

    // Queue → row: a paused queue keeps the tasks queued; each comes first (priority).
    client::set_paused(&sb.home, true)?;
    pane.wait("PAUSED", |s| {
        s.lines().next().is_some_and(|l| l.contains("PAUSED"))
    })?;
    let mut queued = Vec::new();
    for i in 0..SAMPLES {
        std::thread::sleep(GAP);
        let id = format!("q{i:03}");
        sb.stage(&id, &format!("---\npriority: {i}\n---\n@done\n"))?;
        let start = Instant::now();
        sb.enqueue(&id)?;
        let seen = pane.wait("the queued task's row", |s| {
            s.lines().any(|l| l.split_whitespace().any(|w| w == id))
        })?;
        queued.push(seen.duration_since(start).as_secs_f64() * 1000.0);
    }
    outln!("task file queued → row shown:    {}", stats(queued))?;

    // Busy: agents printing a line every 100 ms, the dashboard following them.
    client::cancel_task(&sb.home, "echo")?;
    for i in 0..SAMPLES {
        let _ = client::cancel_task(&sb.home, &format!("q{i:03}"));
    }
    let chatter: String = (0..200).map(|_| "@say tick\n@sleep 100ms\n").collect();
    for i in 0..BUSY_AGENTS {
        let id = format!("busy{i}");
        sb.stage(&id, &format!("---\ntitle: Busy\n---\n{chatter}@done\n"))?;
        sb.enqueue(&id)?;
    }
    client::set_paused(&sb.home, false)?;
    let all_running = |s: &str| s.contains(&format!("RUNNING ({BUSY_AGENTS})"));
    pane.wait("the busy agents", all_running)?;
    outln!(
        "{BUSY_AGENTS} agents printing 10 lines/s each: {}",
        cpu_over(pid, CPU_WINDOW)?
    )?;
    sb.stop_daemon();
    Ok(exit::SUCCESS)
}
