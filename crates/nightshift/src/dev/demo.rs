//! `nightshift demo`: a complete run in a temporary home, with the scripted test agent in
//! place of a coding agent. Four tasks, two agents at a time: a commit, a failure, a retry
//! and a dependency. It checks its own outcome, so it doubles as a smoke test of a machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::dev::sandbox::{self, FolderWatch, Sandbox, Style};
use crate::exit;
use crate::home::TaskState;
use crate::out::outln;
use crate::status::{self, TaskView};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the temporary home and repository afterwards
    #[arg(long)]
    pub keep: bool,
}

const MAX_AGENTS: usize = 2;

/// Long enough for a slow CI machine; the demo itself takes a few seconds.
const DEADLINE: Duration = Duration::from_secs(60);

struct DemoTask {
    id: &'static str,
    text: &'static str,
    expect: TaskState,
    attempts: u32,
}

/// The `@` lines are the test agent's script; the rest is what a person would write.
const TASKS: [DemoTask; 4] = [
    DemoTask {
        id: "hello",
        text: "---
title: Add a greeting
priority: 2
---
Create greeting.txt and commit it.

@say Reading the repository...
@sleep 1s
@write greeting.txt Hello from nightshift!
@commit Add greeting.txt
@done Added greeting.txt and committed it
",
        expect: TaskState::Done,
        attempts: 1,
    },
    DemoTask {
        id: "flaky",
        text: "---
title: Fix the flaky test
priority: 1
max_attempts: 2
---
The first attempt crashes; the second prints the completion marker.

@say Running the test suite...
@sleep 1s
@exit-on-attempt 1 3
@marker the test passes now
",
        expect: TaskState::Done,
        attempts: 2,
    },
    DemoTask {
        id: "broken",
        text: "---
title: Find a bug that is not there
---
This one fails: the agent gives up without signalling done.

@say Looking for the bug...
@sleep 1s
@error cannot find the bug x3
@exit 1
",
        expect: TaskState::Failed,
        attempts: 1,
    },
    DemoTask {
        id: "follow-up",
        text: "---
title: Extend the greeting
depends_on: hello
---
Builds on hello's work, so it waits for hello to be done.

@say Extending the greeting...
@sleep 1s
@append greeting.txt Extended by task {task}, attempt {attempt}.
@commit Extend greeting.txt
@done Extended greeting.txt
",
        expect: TaskState::Done,
        attempts: 1,
    },
];

pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    sandbox::require_tools("demo")?;
    sandbox::catch_interrupts()?;
    let style = Style::detect();
    let config_text = format!(
        "max_agents = {MAX_AGENTS}\n\
         # Agents here exit right after signalling done; this only bounds a stuck one.\n\
         grace_period = \"2s\"\n"
    );
    let mut sb = Sandbox::create("demo", args.keep, &config_text)?;
    let config = Config::load(&sb.home.config_file())?;

    outln!(
        "{}",
        style.bold(&format!(
            "nightshift demo: {} tasks, {MAX_AGENTS} agents at a time, a scripted stand-in agent (no AI, no network)",
            TASKS.len()
        ))
    )?;
    outln!("  home  {}", sb.home.root().display())?;
    outln!("  repo  {}  (a scratch git repository)", sb.repo.display())?;
    outln!(
        "  tmux  tmux -S {}  (a private tmux server)",
        sb.tmux_socket.display()
    )?;
    outln!("  watch from another terminal: {} ls", sb.command_prefix())?;
    outln!()?;

    sb.start_daemon()?;
    let home = sb.home.clone();
    let mut folders: Vec<(std::path::PathBuf, bool)> = TaskState::ALL
        .into_iter()
        .map(|s| (home.state_dir(s), false))
        .collect();
    // Attempts show up in runs/ before the task file changes folder again.
    folders.push((home.runs_dir(), true));
    let watch = FolderWatch::new(&folders)?;
    for t in &TASKS {
        sb.stage(t.id, t.text)?;
    }
    let t0 = Instant::now();
    for t in &TASKS {
        sb.enqueue(t.id)?;
    }

    let mut progress = Progress::new(style, t0);
    let waited = sandbox::wait_for(&watch, t0 + DEADLINE, "the demo's tasks to finish", |_| {
        sb.check_daemon()?;
        let views = status::collect(&home, &config)?;
        progress.update(&views)?;
        let finished = views
            .iter()
            .filter(|v| matches!(v.state, TaskState::Done | TaskState::Failed))
            .count();
        Ok((finished >= TASKS.len()).then_some(views))
    });
    let views = match waited {
        Ok(v) => v,
        Err(e) => {
            if sandbox::check_interrupted().is_ok() {
                // A stuck demo is worth a look: keep everything and point at the log.
                sb.keep = true;
                eprintln!(
                    "The end of the daemon's log ({}):\n{}Kept {} for inspection.",
                    sb.daemon_log().display(),
                    sb.log_tail(20),
                    sb.root().display()
                );
            }
            return Err(e);
        }
    };
    let elapsed = t0.elapsed();
    sb.stop_daemon();
    let by_id: BTreeMap<&str, &TaskView> = views.iter().map(|v| (v.id.as_str(), v)).collect();

    outln!()?;
    print_table(style, &by_id)?;

    outln!()?;
    outln!(
        "{}",
        style.bold(&format!(
            "Each task worked on its own branch of {} (your checkout stays as it was):",
            sb.repo.display()
        ))
    )?;
    let branches = sb.git(&[
        "branch",
        "--list",
        "nightshift/*",
        "--format=%(refname:short)",
    ])?;
    for branch in branches.lines() {
        outln!("  {branch}")?;
        let log = sb.git(&["log", "--oneline", "--no-decorate", "-3", branch])?;
        for line in log.lines() {
            outln!("    {line}")?;
        }
    }

    if let Some(v) = by_id.get("broken")
        && let Some(last) = &v.last
    {
        let transcript = last.dir.join(crate::run::TRANSCRIPT);
        outln!()?;
        outln!(
            "{}",
            style.bold(&format!(
                "The end of broken's transcript ({}):",
                transcript.display()
            ))
        )?;
        for line in transcript_tail(&transcript, 6) {
            outln!("  {}", style.dim(&line))?;
        }
    }

    let problems = verify(&by_id, progress.busy_max);
    outln!()?;
    let prefix = sb.command_prefix();
    if problems.is_empty() {
        outln!(
            "{}",
            style.green(&format!(
                "demo OK: the outcome is as expected ({} done, {} failed, one retry) in {:.1}s",
                TASKS.iter().filter(|t| t.expect == TaskState::Done).count(),
                TASKS
                    .iter()
                    .filter(|t| t.expect == TaskState::Failed)
                    .count(),
                elapsed.as_secs_f64()
            ))
        )?;
    } else {
        // Leave the evidence in place.
        sb.keep = true;
        eprintln!(
            "{}",
            style.red("demo FAILED: the outcome is not as expected:")
        );
        for p in &problems {
            eprintln!("  - {p}");
        }
        eprintln!(
            "The end of the daemon's log ({}):\n{}",
            sb.daemon_log().display(),
            sb.log_tail(15)
        );
    }
    if sb.keep {
        outln!(
            "Kept the home and repository in {}. Look around:",
            sb.root().display()
        )?;
    } else {
        outln!(
            "The temporary home is removed now; run `{} demo --keep` to keep it, then:",
            Sandbox::command_name()
        )?;
    }
    for cmd in ["ls", "show flaky", "logs broken"] {
        outln!("  {prefix} {cmd}")?;
    }
    if sb.keep {
        outln!(
            "Remove it afterwards with: rm -rf {}",
            sandbox::quote(&sb.root().to_string_lossy())
        )?;
    }
    Ok(if problems.is_empty() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

/// Whether a task's agent is at work: claimed, and neither done nor exited. An attempt
/// that ended stays in running/ until its report is written, but no longer holds a slot.
fn in_progress(v: &TaskView) -> bool {
    v.state == TaskState::Running
        && v.last
            .as_ref()
            .is_some_and(|l| l.report.is_none() && l.done.is_none() && l.exit.is_none())
}

/// Prints a line each time a task changes state, from what the files say.
struct Progress {
    style: Style,
    t0: Instant,
    shown: BTreeMap<String, String>,
    /// The most agents seen running at once.
    busy_max: usize,
}

impl Progress {
    fn new(style: Style, t0: Instant) -> Progress {
        Progress {
            style,
            t0,
            shown: BTreeMap::new(),
            busy_max: 0,
        }
    }

    fn update(&mut self, views: &[TaskView]) -> std::io::Result<()> {
        let busy = views.iter().filter(|v| in_progress(v)).count();
        self.busy_max = self.busy_max.max(busy);
        let mut changes = Vec::new();
        for v in views {
            let Some((rank, key, detail)) = self.describe(v, busy) else {
                continue;
            };
            if self.shown.get(&v.id) != Some(&key) {
                changes.push((rank, v.id.clone(), key, detail));
            }
        }
        // Endings before beginnings: "hello done" reads better before "follow-up running".
        changes.sort_by_key(|c| c.0);
        for (_, id, key, detail) in changes {
            let label = key.trim_end_matches(|c: char| c.is_ascii_digit());
            let padded = format!("{label:<8}");
            let painted = match label {
                "done" => self.style.green(&padded),
                "failed" => self.style.red(&padded),
                "running" | "retry" => self.style.yellow(&padded),
                _ => self.style.dim(&padded),
            };
            outln!(
                "{:>5.1}s  {id:<10} {painted} {detail}",
                self.t0.elapsed().as_secs_f64()
            )?;
            self.shown.insert(id, key);
        }
        Ok(())
    }

    /// `(order, key, detail)`: the key changes exactly when there is something new to say.
    fn describe(&self, v: &TaskView, busy: usize) -> Option<(u8, String, String)> {
        let report = v.last.as_ref().and_then(|l| l.report.as_ref());
        Some(match v.state {
            TaskState::Done | TaskState::Failed => {
                let reason = v.reason().unwrap_or_default();
                let detail = match report.and_then(|r| r.summary.as_deref()) {
                    Some(s) => format!("{s}  ({reason})"),
                    None => reason,
                };
                (0, v.state.as_str().to_string(), detail)
            }
            TaskState::Queued if v.attempts > 0 => {
                // Without the attempt's report this is a task just being claimed, seen
                // half-way (the listing was read before its run folder appeared).
                let reason = &report?.reason;
                let detail = format!("attempt {} failed: {reason}; trying again", v.attempts);
                (1, format!("retry{}", v.attempts), detail)
            }
            TaskState::Queued if !v.waiting_for.is_empty() => (
                2,
                "waiting".into(),
                format!("{}: waits for {}", v.title, v.waiting_for.join(", ")),
            ),
            TaskState::Queued => {
                let detail = match self.shown.get(&v.id).map(String::as_str) {
                    Some("waiting") => "its dependencies are done; waits for a free agent".into(),
                    _ => v.title.clone(),
                };
                (2, "queued".into(), detail)
            }
            TaskState::Running if in_progress(v) => (
                3,
                format!("running{}", v.attempts),
                format!(
                    "attempt {}  ({busy} of {MAX_AGENTS} agents busy)",
                    v.attempts
                ),
            ),
            // Claimed but its run folder is not there yet, or between attempts.
            TaskState::Running => return None,
        })
    }
}

fn print_table(style: Style, by_id: &BTreeMap<&str, &TaskView>) -> std::io::Result<()> {
    let header = ["ID", "STATE", "TRIES", "TIME", "RESULT"];
    let rows: Vec<[String; 5]> = TASKS
        .iter()
        .filter_map(|t| by_id.get(t.id))
        .map(|v| {
            let report = v.last.as_ref().and_then(|l| l.report.as_ref());
            let time = report
                .and_then(|r| r.duration_secs)
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_default();
            let result = report
                .and_then(|r| r.summary.clone())
                .or_else(|| v.reason())
                .unwrap_or_default();
            [
                v.id.clone(),
                v.state.as_str().to_string(),
                v.attempts.to_string(),
                time,
                result,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let cells = |r: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            let padded = format!("{cell:<w$}  ");
            s.push_str(&match (i, *cell) {
                (1, "done") => style.green(&padded),
                (1, "failed") => style.red(&padded),
                _ => padded,
            });
        }
        s.trim_end().to_string()
    };
    outln!("  {}", style.bold(&cells(header)))?;
    for r in &rows {
        outln!("  {}", cells([&r[0], &r[1], &r[2], &r[3], &r[4]]))?;
    }
    Ok(())
}

/// The last non-blank lines of a transcript, without terminal escapes.
fn transcript_tail(path: &std::path::Path, lines: usize) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = strip_ansi_escapes::strip_str(String::from_utf8_lossy(&bytes));
    let all: Vec<String> = text
        .split(['\n', '\r'])
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    all[all.len().saturating_sub(lines)..].to_vec()
}

/// What differs from the expected outcome; empty when all is well.
fn verify(by_id: &BTreeMap<&str, &TaskView>, busy_max: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for t in &TASKS {
        let Some(v) = by_id.get(t.id) else {
            problems.push(format!("task `{}` is missing", t.id));
            continue;
        };
        if v.state != t.expect {
            problems.push(format!(
                "`{}` is {}, expected {} ({})",
                t.id,
                v.state.as_str(),
                t.expect.as_str(),
                v.reason().unwrap_or_default()
            ));
        }
        if v.attempts != t.attempts {
            problems.push(format!(
                "`{}` took {} attempt(s), expected {}",
                t.id, v.attempts, t.attempts
            ));
        }
    }
    let report = |id: &str| {
        by_id
            .get(id)
            .and_then(|v| v.last.as_ref())
            .and_then(|l| l.report.clone())
    };
    for (id, subject) in [
        ("hello", "Add greeting.txt"),
        ("follow-up", "Extend greeting.txt"),
    ] {
        let committed = report(id)
            .and_then(|r| r.commits)
            .is_some_and(|c| c.iter().any(|c| c.subject == subject));
        if !committed {
            problems.push(format!(
                "the report of `{id}` does not list the commit \"{subject}\""
            ));
        }
    }
    // Measured from hello's done signal: the daemon may start follow-up while hello's
    // report is still being written.
    let hello_done = by_id
        .get("hello")
        .and_then(|v| v.last.as_ref())
        .and_then(|l| l.done.as_ref())
        .map(|d| d.at);
    if let (Some(done_at), Some(follow)) = (hello_done, report("follow-up"))
        && follow.started_at.is_some_and(|s| s < done_at)
    {
        problems.push("`follow-up` started before `hello`, which it depends on, finished".into());
    }
    if busy_max > MAX_AGENTS {
        problems.push(format!(
            "{busy_max} agents ran at once; max_agents is {MAX_AGENTS}"
        ));
    }
    problems
}
