//! `nightshift bench --torture`: `kill -9` the daemon at random moments while tasks run
//! (also right after an `add`, during a `verify` check and during start-up), restart it at
//! once, and check afterwards that every task's work was done exactly once and that nothing
//! was left behind. Not a timing figure: any violation fails the run.
//!
//! "Exactly once" is judged from a ledger outside the home that the agents and the checks
//! append to: `<task> <attempt> <pid> start|end|check-start|check-end`. A killed daemon
//! leaves its agents running in tmux and the next daemon adopts them, so one run per task
//! is the rule: a task's work must end exactly once, no run may start while another run of
//! the same task is still going, nothing kills an agent (so every start has its end), and
//! no two checks of one task may overlap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::exit;
use super::sandbox::{self, Sandbox};
use crate::home::TaskState;

/// What `bench --torture` was asked for.
pub struct TortureArgs {
    pub tasks: u32,
    pub kills: u32,
    pub seed: Option<u64>,
    pub max_agents: u32,
    pub keep: bool,
}

/// The daemon's wait before removing a finished task's worktree: the grace period (0 s
/// here) plus 8 s (see `tidy_worktree`). The clean-up check waits this, plus a margin.
const WORKTREE_DELAY: Duration = Duration::from_secs(8);
const CLEANUP_MARGIN: Duration = Duration::from_secs(10);
/// How long a kill "during verify" waits for a check to be running.
const CHECK_WAIT: Duration = Duration::from_secs(3);
const READY_LIMIT: Duration = Duration::from_secs(30);

pub fn run(args: TortureArgs) -> anyhow::Result<i32> {
    sandbox::require_tools("bench --torture")?;
    sandbox::catch_interrupts()?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let plans: Vec<TaskPlan> = (1..=args.tasks)
        .map(|i| TaskPlan::draw(&mut rng, i))
        .collect();
    let config = format!("max_agents = {}\ngrace_period = \"0s\"\n", args.max_agents);
    let sb = Sandbox::create("torture", args.keep, &config)?;
    let root = sb.root().to_string_lossy().into_owned();
    if root.contains(char::is_whitespace) {
        // The test agent's `@append PATH TEXT` takes the path up to the first space.
        anyhow::bail!("the temporary directory {root:?} has a space in it; set TMPDIR to another");
    }
    println!(
        "nightshift bench --torture: {} tasks, {} kills, max_agents {}, seed {seed}",
        args.tasks, args.kills, args.max_agents
    );
    println!(
        "reproduce with: {} bench --torture --tasks {} --kills {} --max-agents {} --seed {seed}",
        Sandbox::command_name(),
        args.tasks,
        args.kills,
        args.max_agents
    );
    println!("home: {}/home, ledger: {root}/ledger", sb.root().display());
    let mut t = Torture {
        ledger: sb.root().join("ledger"),
        staged: sb.root().join("tasks"),
        sb,
        rng,
        plans,
        kills_wanted: args.kills,
        max_agents: args.max_agents as usize,
        added: 0,
        kills: BTreeMap::new(),
        next_kinds: Vec::new(),
        restarts: 0,
        ledger_at_spawn: 0,
        violations: Vec::new(),
        start: Instant::now(),
    };
    fs::create_dir_all(&t.staged)?;
    fs::write(&t.ledger, "")?;
    let result = t.torture();
    let elapsed = t.start.elapsed();
    if let Err(e) = result {
        // The run could not go on (e.g. a daemon that never came up): a violation too.
        let text = format!("the run stopped early: {e:#}");
        t.violations.push(Violation::new("run stopped early", text));
        sandbox::check_interrupted()?;
    }
    let findings = t.inspect();
    t.summary(&findings, elapsed);
    if t.violations.is_empty() {
        println!("torture: ok");
        return Ok(exit::SUCCESS);
    }
    t.sb.keep = true;
    println!("torture: FAILED, {} violations:", t.violations.len());
    for v in &t.violations {
        println!("  - {}", v.text);
    }
    println!(
        "kept {} for inspection (daemon stderr: {})",
        t.sb.root().display(),
        t.sb.daemon_log().display()
    );
    Ok(exit::FAILURE)
}

fn clock_seed() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

/// One task: how long its agent works, whether it commits, and how long its check takes.
struct TaskPlan {
    id: String,
    work: Duration,
    commit: bool,
    check: Option<Duration>,
}

impl TaskPlan {
    fn draw(rng: &mut fastrand::Rng, n: u32) -> TaskPlan {
        // Mostly short agents, one in ten long enough to live through several kills.
        let work = match rng.u8(0..10) {
            0 => rng.u64(2000..4000),
            _ => rng.u64(50..1500),
        };
        TaskPlan {
            id: format!("t-{n:04}"),
            work: Duration::from_millis(work),
            commit: rng.bool(),
            check: rng
                .bool()
                .then(|| Duration::from_millis(rng.u64(300..1200))),
        }
    }

    /// The task file: the agent records its start and end in the ledger around its work;
    /// the check records its own start and end.
    fn text(&self, ledger: &Path) -> String {
        let ledger = ledger.display();
        let mut front = format!("title: torture {}\n", self.id);
        if let Some(check) = self.check {
            let line = |event: &str| {
                format!(
                    "echo \"$NIGHTSHIFT_TASK_ID $NIGHTSHIFT_ATTEMPT $$ {event}\" >> {}",
                    sandbox::quote(&ledger.to_string())
                )
            };
            let command = format!(
                "{} && sleep {:.3} && {}",
                line("check-start"),
                check.as_secs_f64(),
                line("check-end")
            );
            front.push_str(&format!("verify: {}\n", crate::task::yaml_string(&command)));
        }
        let commit = match self.commit {
            true => format!("@commit torture {}\n", self.id),
            false => String::new(),
        };
        format!(
            "---\n{front}---\nA torture task: the daemon is killed while it runs.\n\n\
             @append {ledger} {{task}} {{attempt}} {{pid}} start\n\
             @sleep {}ms\n\
             {commit}\
             @append {ledger} {{task}} {{attempt}} {{pid}} end\n\
             @done\n",
            self.work.as_millis()
        )
    }

    /// The mean time a slot is busy with this task, for pacing the kills.
    fn busy(&self) -> Duration {
        // Start-up, worktree and filing cost about this much on a debug build.
        self.work + self.check.unwrap_or_default() + Duration::from_millis(400)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillKind {
    Random,
    AfterAdd,
    DuringCheck,
    DuringStartup,
}

impl KillKind {
    fn label(self) -> &'static str {
        match self {
            KillKind::Random => "at a random moment",
            KillKind::AfterAdd => "right after add",
            KillKind::DuringCheck => "during verify",
            KillKind::DuringStartup => "during start-up",
        }
    }
}

struct Torture {
    sb: Sandbox,
    rng: fastrand::Rng,
    plans: Vec<TaskPlan>,
    ledger: PathBuf,
    /// Task files before `nightshift add`.
    staged: PathBuf,
    kills_wanted: u32,
    max_agents: usize,
    /// How many of `plans` were added.
    added: usize,
    kills: BTreeMap<KillKind, u32>,
    /// Kinds of the next kills, last first: each kind once at the start, and a kill during
    /// verify again after one that found no check running.
    next_kinds: Vec<KillKind>,
    restarts: u32,
    /// The ledger's length when the current daemon was started: checks begun since then are
    /// the current daemon's.
    ledger_at_spawn: usize,
    violations: Vec<Violation>,
    start: Instant,
}

impl Torture {
    fn torture(&mut self) -> anyhow::Result<()> {
        let n = self.plans.len();
        let k = self.kills_wanted as usize;
        let busy: Duration = self.plans.iter().map(TaskPlan::busy).sum();
        // Kills spread over the expected run: uniform in 0..2 intervals, one interval apart
        // on average.
        let interval = busy / (self.max_agents as u32).max(1) / (k as u32 + 1);
        self.spawn()?;
        for i in 0..k {
            sandbox::check_interrupted()?;
            let kind = self.pick_kind(i);
            if kind != KillKind::DuringStartup {
                self.wait_ready()?;
            }
            // The queue is fed in step with the kills, so that tasks run through all of them.
            let floor = (2 * self.max_agents).min(n);
            self.add_up_to(floor.max((n * (i + 1)).div_ceil(k + 1)))?;
            let (kind, what) = match kind {
                KillKind::Random => {
                    let ms = self.rng.u64(0..=2 * interval.as_millis() as u64);
                    std::thread::sleep(Duration::from_millis(ms));
                    (kind, format!("{ms} ms after the last step"))
                }
                KillKind::AfterAdd if self.added < n => {
                    self.add_up_to(self.added + 1)?;
                    (
                        kind,
                        format!("right after adding {}", self.plans[self.added - 1].id),
                    )
                }
                KillKind::AfterAdd => (KillKind::Random, "all tasks added already".into()),
                KillKind::DuringCheck => match self.wait_check()? {
                    Some(task) => (kind, format!("during the check of {task}")),
                    None => {
                        // The next kill tries again.
                        self.next_kinds.push(KillKind::DuringCheck);
                        (KillKind::Random, "no check ran within 3 s".into())
                    }
                },
                KillKind::DuringStartup => {
                    let ms = self.rng.u64(0..=150);
                    std::thread::sleep(Duration::from_millis(ms));
                    (
                        kind,
                        format!("{ms} ms after its start, maybe before it answered"),
                    )
                }
            };
            self.kill(&format!("kill {}", i + 1));
            *self.kills.entry(kind).or_default() += 1;
            self.spawn()?;
            self.restarts += 1;
            println!(
                "{:6.1} s  kill {}/{k} {}: {what}; restarted",
                self.start.elapsed().as_secs_f64(),
                i + 1,
                kind.label()
            );
        }
        self.wait_ready()?;
        self.add_up_to(n)?;
        println!(
            "{:6.1} s  all {n} tasks added, {k} kills done; waiting for the tasks to finish",
            self.start.elapsed().as_secs_f64()
        );
        self.wait_finished()?;
        println!(
            "{:6.1} s  all tasks finished; waiting up to {} s for sessions, worktrees and checks to go",
            self.start.elapsed().as_secs_f64(),
            (WORKTREE_DELAY + CLEANUP_MARGIN).as_secs()
        );
        self.wait_clean();
        Ok(())
    }

    /// The first kills go through every kind (in a random order), so even a short run has
    /// each; then random, two in five at a random moment.
    fn pick_kind(&mut self, i: usize) -> KillKind {
        if i == 0 {
            self.next_kinds = vec![
                KillKind::Random,
                KillKind::AfterAdd,
                KillKind::DuringCheck,
                KillKind::DuringStartup,
            ];
            self.rng.shuffle(&mut self.next_kinds);
        }
        if let Some(kind) = self.next_kinds.pop() {
            return kind;
        }
        match self.rng.u8(0..20) {
            0..8 => KillKind::Random,
            8..12 => KillKind::AfterAdd,
            12..17 => KillKind::DuringCheck,
            _ => KillKind::DuringStartup,
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.ledger_at_spawn = fs::read(&self.ledger).map_or(0, |b| b.len());
        self.sb.spawn_daemon()
    }

    /// Waits for the daemon to answer. One that exits by itself is a violation; it is
    /// started again once.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        if let Err(e) = self.sb.wait_daemon_ready(READY_LIMIT) {
            sandbox::check_interrupted()?;
            self.violate(
                "daemon exited by itself",
                format!("a daemon did not come up: {e:#}"),
            );
            self.sb.kill9_daemon().ok();
            self.spawn()?;
            self.restarts += 1;
            self.sb.wait_daemon_ready(READY_LIMIT)?;
        }
        Ok(())
    }

    /// `kill -9` of the daemon; one that had already exited by itself is a violation.
    fn kill(&mut self, what: &str) {
        if let Err(e) = self.sb.kill9_daemon() {
            self.violate(
                "daemon exited by itself",
                format!("{what}: the daemon had exited by itself: {e:#}"),
            );
        }
    }

    /// Adds tasks with `nightshift add`, the way a user does, until `count` are added.
    fn add_up_to(&mut self, count: usize) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding the nightshift binary")?;
        while self.added < count.min(self.plans.len()) {
            let plan = &self.plans[self.added];
            let file = self.staged.join(format!("{}.md", plan.id));
            fs::write(&file, plan.text(&self.ledger))?;
            let out = Command::new(&exe)
                .arg("--home")
                .arg(self.sb.home.root())
                .arg("add")
                .arg(&file)
                .arg("--workdir")
                .arg(&self.sb.repo)
                .stdin(Stdio::null())
                .output()
                .context("running nightshift add")?;
            if !out.status.success() {
                anyhow::bail!(
                    "nightshift add {} failed: {}",
                    plan.id,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            self.added += 1;
        }
        Ok(())
    }

    /// Waits up to [`CHECK_WAIT`] for a check that the current daemon started to be
    /// running; returns its task.
    fn wait_check(&mut self) -> anyhow::Result<Option<String>> {
        let until = Instant::now() + CHECK_WAIT;
        while Instant::now() < until {
            sandbox::check_interrupted()?;
            let text = fs::read(&self.ledger).unwrap_or_default();
            let recent = String::from_utf8_lossy(text.get(self.ledger_at_spawn..).unwrap_or(&[]));
            if let Some(task) = running_check(&recent) {
                return Ok(Some(task));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// Waits until every task is in done/ or failed/ (a daemon that exits by itself is
    /// a violation and is started again).
    fn wait_finished(&mut self) -> anyhow::Result<()> {
        let limit = Duration::from_secs(30) + Duration::from_secs(self.plans.len() as u64);
        let until = Instant::now() + limit;
        loop {
            sandbox::check_interrupted()?;
            if self.sb.check_daemon().is_err() {
                self.violate(
                    "daemon exited by itself",
                    "the daemon exited by itself while the tasks finished".into(),
                );
                self.spawn()?;
                self.restarts += 1;
                self.wait_ready()?;
            }
            if self.unfinished().is_empty() {
                return Ok(());
            }
            if Instant::now() > until {
                // Reported task by task by the final inspection.
                println!("tasks still unfinished after {} s", limit.as_secs());
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn unfinished(&self) -> Vec<String> {
        self.plans
            .iter()
            .filter(|p| {
                !matches!(
                    crate::queue::locate(&self.sb.home, &p.id),
                    Some((TaskState::Done | TaskState::Failed, _))
                )
            })
            .map(|p| p.id.clone())
            .collect()
    }

    /// Waits for the finished tasks' sessions, worktrees and checks to go, within the
    /// daemon's worktree delay plus a margin.
    fn wait_clean(&mut self) {
        let until = Instant::now() + WORKTREE_DELAY + CLEANUP_MARGIN;
        while Instant::now() < until && sandbox::check_interrupted().is_ok() {
            if self.sessions().is_empty()
                && self.worktrees().is_empty()
                && self.processes().is_ok_and(|p| p.is_empty())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Checks everything at the end and records each violation; returns the figures.
    fn inspect(&mut self) -> Findings {
        let ids: Vec<String> = self.plans.iter().map(|p| p.id.clone()).collect();
        let mut f = Findings::default();
        for id in &ids {
            match crate::queue::locate(&self.sb.home, id) {
                Some((TaskState::Done, _)) => f.done += 1,
                Some((TaskState::Failed, _)) => {
                    f.failed += 1;
                    let reason = crate::status::find(&self.sb.home, id)
                        .and_then(|v| v.reason())
                        .unwrap_or_else(|| "no reason recorded".into());
                    self.violate("task failed", format!("{id} failed: {reason}"));
                }
                Some((state, _)) if self.added_id(id) => {
                    self.violate(
                        "task unfinished",
                        format!("{id} is still {} at the end", state.as_str()),
                    );
                }
                Some(_) => {}
                None if self.added_id(id) => self.violate("task lost", format!("{id} was lost")),
                None => {}
            }
            let attempts = fs::read_dir(self.sb.home.task_runs(id))
                .map(|d| d.filter_map(Result::ok).count())
                .unwrap_or(0);
            f.retried += attempts.saturating_sub(1);
        }
        let text = fs::read_to_string(&self.ledger).unwrap_or_default();
        let added: Vec<String> = ids.into_iter().take(self.added).collect();
        f.ledger = check_ledger(&text, &added, self.max_agents);
        self.violations.extend(f.ledger.violations.iter().cloned());
        for s in self.sessions() {
            self.violate(
                "session left over",
                format!("tmux session {s} is left over (orphan)"),
            );
        }
        for (task, what) in self.worktrees() {
            let what: Vec<&str> = what.into_iter().collect();
            self.violate(
                "worktree left over",
                format!(
                    "the worktree of {task} is left over {} s after the tasks finished ({})",
                    (WORKTREE_DELAY + CLEANUP_MARGIN).as_secs(),
                    what.join(", ")
                ),
            );
        }
        match self.processes() {
            Ok(left) => {
                for p in left {
                    self.violate("process left over", format!("process left over: {p}"));
                }
            }
            Err(e) => self.violate("process left over", format!("cannot look for them: {e}")),
        }
        self.sb.stop_daemon();
        for p in self.panics() {
            self.violate("panic", format!("panic in the daemon's log: {p}"));
        }
        f
    }

    fn violate(&mut self, kind: &'static str, text: String) {
        self.violations.push(Violation::new(kind, text));
    }

    fn added_id(&self, id: &str) -> bool {
        self.plans[..self.added].iter().any(|p| p.id == id)
    }

    fn sessions(&self) -> Vec<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.sb.tmux_socket)
            .args(["list-sessions", "-F", "#{session_name}"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        // No server or no sessions: nothing left.
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
    }

    /// What is left of tasks' worktrees, by task: the folder in the home's worktrees/, the
    /// note of its base commit, its registration in git.
    fn worktrees(&self) -> BTreeMap<String, BTreeSet<&'static str>> {
        let mut found: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        let repo = self.sb.repo.to_string_lossy().into_owned();
        if let Ok(list) = self.sb.git(&["worktree", "list", "--porcelain"]) {
            for path in list.lines().filter_map(|l| l.strip_prefix("worktree ")) {
                if path != repo {
                    let name = Path::new(path).file_name().map(|n| n.to_string_lossy());
                    let name = name.unwrap_or_default().into_owned();
                    found.entry(name).or_default().insert("registered in git");
                }
            }
        }
        let dirs = fs::read_dir(self.sb.home.worktrees_dir())
            .into_iter()
            .flatten();
        for repo_dir in dirs.filter_map(Result::ok) {
            for entry in fs::read_dir(repo_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                let (task, what) =
                    match name.strip_prefix('.').and_then(|n| n.strip_suffix(".base")) {
                        Some(task) => (task.to_string(), "base note"),
                        None => (name, "folder"),
                    };
                found.entry(task).or_default().insert(what);
            }
        }
        found
    }

    /// Processes that mention the sandbox (checks, agents, wrappers), other than the daemon
    /// and the tmux server: seen twice, half a second apart, so a passing `git` is not one.
    fn processes(&self) -> Result<Vec<String>, String> {
        let root = self.sb.root().to_string_lossy().into_owned();
        let own = [Some(std::process::id()), self.sb.daemon_pid()];
        let look = || -> Result<BTreeSet<(u32, String)>, String> {
            let out = Command::new("ps")
                .args(["-eo", "pid=,args="])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run ps: {e}"))?;
            if !out.status.success() {
                return Err(format!("ps failed ({})", out.status));
            }
            Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let (pid, args) = l.trim_start().split_once(' ')?;
                    Some((pid.parse().ok()?, args.trim().to_string()))
                })
                .filter(|(pid, args)| {
                    args.contains(&root) && !args.starts_with("tmux") && !own.contains(&Some(*pid))
                })
                .collect())
        };
        let first = look()?;
        if first.is_empty() {
            return Ok(Vec::new());
        }
        std::thread::sleep(Duration::from_millis(500));
        let second = look()?;
        Ok(first
            .intersection(&second)
            .map(|(pid, args)| format!("pid {pid}: {args}"))
            .collect())
    }

    /// Panic lines in the daemons' stderr and in the home's logs.
    fn panics(&self) -> Vec<String> {
        let mut files = vec![self.sb.daemon_log()];
        if let Ok(dir) = fs::read_dir(self.sb.home.logs_dir()) {
            files.extend(dir.filter_map(Result::ok).map(|e| e.path()));
        }
        let mut found = Vec::new();
        for file in files {
            let text = fs::read(&file).unwrap_or_default();
            for line in String::from_utf8_lossy(&text).lines() {
                if line.contains("panicked") {
                    found.push(format!("{}: {}", file.display(), line.trim()));
                }
            }
        }
        found
    }

    fn summary(&self, f: &Findings, elapsed: Duration) {
        let kills: u32 = self.kills.values().sum();
        let kinds: Vec<String> = self
            .kills
            .iter()
            .map(|(kind, n)| format!("{n} {}", kind.label()))
            .collect();
        let l = &f.ledger;
        println!();
        println!("summary:");
        println!(
            "  tasks:      {} ({} done, {} failed, {} added)",
            self.plans.len(),
            f.done,
            f.failed,
            self.added
        );
        println!("  kills:      {kills}{}", in_parens(&kinds));
        println!("  restarts:   {}", self.restarts);
        println!(
            "  agent runs: {} started, {} completed, {} retried attempts, at most {} at once",
            l.starts, l.ends, f.retried, l.max_running
        );
        println!(
            "  checks:     {} started, {} cut short",
            l.checks, l.checks_cut
        );
        println!("  time:       {:.1} s", elapsed.as_secs_f64());
        let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &self.violations {
            *tally.entry(v.kind).or_default() += 1;
        }
        let tally: Vec<String> = tally.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "  violations: {}{}",
            self.violations.len(),
            in_parens(&tally)
        );
    }
}

/// " (a, b)", or nothing for an empty list.
fn in_parens(items: &[String]) -> String {
    match items {
        [] => String::new(),
        _ => format!(" ({})", items.join(", ")),
    }
}

#[derive(Default)]
struct Findings {
    done: usize,
    failed: usize,
    retried: usize,
    ledger: LedgerFindings,
}

/// What the ledger shows.
#[derive(Debug, Default, PartialEq)]
struct LedgerFindings {
    starts: usize,
    ends: usize,
    checks: usize,
    /// Checks that never wrote their end: killed with their daemon.
    checks_cut: usize,
    /// The most agents between their start and end at one time.
    max_running: usize,
    violations: Vec<Violation>,
}

/// A broken rule: its kind, for the tally, and what happened.
#[derive(Debug, Clone, PartialEq)]
struct Violation {
    kind: &'static str,
    text: String,
}

impl Violation {
    fn new(kind: &'static str, text: String) -> Violation {
        Violation { kind, text }
    }
}

/// The task of a check that started and has not ended, in ledger text.
fn running_check(text: &str) -> Option<String> {
    let mut open: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        if let [task, _, pid, event] = words[..] {
            match event {
                "check-start" => open.push((task.to_string(), pid.to_string())),
                "check-end" => open.retain(|(_, p)| p != pid),
                _ => {}
            }
        }
    }
    open.pop().map(|(task, _)| task)
}

/// Judges the ledger of `tasks` (see the module's comment for the rules).
fn check_ledger(text: &str, tasks: &[String], max_agents: usize) -> LedgerFindings {
    #[derive(Default)]
    struct PerTask {
        /// Agent runs started and not ended: (attempt, pid).
        running: Vec<(String, String)>,
        ends: usize,
        /// Checks started and not ended, by pid.
        checks: Vec<String>,
        /// A check's pid, and the pids of checks that started while it was running.
        overlapped_by: HashMap<String, Vec<String>>,
    }
    let mut f = LedgerFindings::default();
    let mut per: BTreeMap<&str, PerTask> = tasks
        .iter()
        .map(|t| (t.as_str(), PerTask::default()))
        .collect();
    let mut running = 0usize;
    let mut violations = Vec::new();
    let mut bad = |kind, text| violations.push(Violation::new(kind, text));
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split(' ').collect();
        let [task, attempt, pid, event] = words[..] else {
            bad(
                "ledger malformed",
                format!("ledger line {} is malformed: {line:?}", n + 1),
            );
            continue;
        };
        let Some(t) = per.get_mut(task) else {
            bad(
                "ledger malformed",
                format!("ledger line {} names an unknown task: {line:?}", n + 1),
            );
            continue;
        };
        let (attempt, pid) = (attempt.to_string(), pid.to_string());
        match event {
            "start" => {
                if let Some((a, p)) = t.running.first() {
                    bad(
                        "work started twice at once",
                        format!(
                            "{task}: attempt {attempt} (pid {pid}) started while attempt {a} \
                         (pid {p}) was still running"
                        ),
                    );
                }
                t.running.push((attempt, pid));
                f.starts += 1;
                running += 1;
                f.max_running = f.max_running.max(running);
            }
            "end" => {
                let Some(i) = t.running.iter().position(|r| r.1 == pid) else {
                    bad(
                        "work ended without a start",
                        format!("{task}: pid {pid} ended work it never started"),
                    );
                    continue;
                };
                t.running.remove(i);
                running -= 1;
                t.ends += 1;
                f.ends += 1;
            }
            "check-start" => {
                for other in &t.checks {
                    t.overlapped_by
                        .entry(other.clone())
                        .or_default()
                        .push(pid.clone());
                }
                t.checks.push(pid);
                f.checks += 1;
            }
            "check-end" => {
                t.checks.retain(|p| *p != pid);
                // A check that ends after another started: both ran at once. (One whose
                // daemon was killed, and which was killed with it, never ends.)
                if let Some(later) = t.overlapped_by.remove(&pid) {
                    bad(
                        "checks ran at once",
                        format!(
                            "{task}: checks ran at once: pid {pid} was still running when pid {} \
                         started",
                            later.join(", pid ")
                        ),
                    );
                }
            }
            _ => bad(
                "ledger malformed",
                format!("ledger line {} is malformed: {line:?}", n + 1),
            ),
        }
    }
    if f.max_running > max_agents {
        bad(
            "more agents than max_agents",
            format!(
                "{} agents ran at once, more than max_agents {max_agents}",
                f.max_running
            ),
        );
    }
    for (task, t) in &per {
        match t.ends {
            1 => {}
            0 => bad(
                "work never completed",
                format!("{task}: its work never completed"),
            ),
            n => bad(
                "work completed more than once",
                format!("{task}: its work completed {n} times"),
            ),
        }
        for (attempt, pid) in &t.running {
            bad(
                "agent stopped mid-work",
                format!(
                    "{task}: attempt {attempt} (pid {pid}) started its work and never finished it \
                 (its agent was stopped)"
                ),
            );
        }
        f.checks_cut += t.checks.len();
    }
    f.violations = violations;
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(f: &LedgerFindings) -> Vec<String> {
        f.violations.iter().map(|v| v.text.clone()).collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn a_clean_ledger_has_no_violations() {
        let text = "t1 1 10 start\nt2 1 20 start\nt1 1 10 end\nt1 1 30 check-start\n\
                    t2 1 20 end\nt1 1 30 check-end\n";
        let f = check_ledger(text, &ids(2), 4);
        assert_eq!(texts(&f), Vec::<String>::new());
        assert_eq!((f.starts, f.ends, f.checks, f.max_running), (2, 2, 1, 2));
    }

    #[test]
    fn work_done_twice_or_never_is_a_violation() {
        let text = "t1 1 10 start\nt1 1 10 end\nt1 2 11 start\nt1 2 11 end\n";
        let f = check_ledger(text, &ids(2), 4);
        assert_eq!(
            texts(&f),
            vec![
                "t1: its work completed 2 times",
                "t2: its work never completed"
            ]
        );
    }

    #[test]
    fn a_second_run_while_the_first_runs_is_a_violation() {
        let text = "t1 1 10 start\nt1 2 11 start\nt1 2 11 end\n";
        let f = check_ledger(text, &ids(1), 4);
        assert_eq!(
            texts(&f),
            vec![
                "t1: attempt 2 (pid 11) started while attempt 1 (pid 10) was still running",
                "t1: attempt 1 (pid 10) started its work and never finished it (its agent was \
                 stopped)"
            ]
        );
    }

    #[test]
    fn overlapping_checks_are_a_violation_but_a_killed_check_is_not() {
        // 30 was killed with its daemon (no end), 31 ran alone, then 32 and 33 overlapped.
        let text = "t1 1 10 start\nt1 1 10 end\nt1 1 30 check-start\nt1 1 31 check-start\n\
                    t1 1 31 check-end\nt1 1 32 check-start\nt1 1 33 check-start\n\
                    t1 1 32 check-end\nt1 1 33 check-end\n";
        let f = check_ledger(text, &ids(1), 4);
        assert_eq!(
            texts(&f),
            vec!["t1: checks ran at once: pid 32 was still running when pid 33 started"]
        );
        assert_eq!((f.checks, f.checks_cut), (4, 1));
        assert_eq!(f.violations[0].kind, "checks ran at once");
    }

    #[test]
    fn more_agents_than_max_agents_is_a_violation() {
        let text = "t1 1 1 start\nt2 1 2 start\nt3 1 3 start\nt1 1 1 end\nt2 1 2 end\nt3 1 3 end\n";
        let f = check_ledger(text, &ids(3), 2);
        assert_eq!(
            texts(&f),
            vec!["3 agents ran at once, more than max_agents 2"]
        );
    }

    #[test]
    fn malformed_and_unknown_lines_are_violations() {
        let text = "t1 1 1 start\ngarbage\nt9 1 1 start\nt1 1 1 end\n";
        let f = check_ledger(text, &ids(1), 4);
        assert_eq!(
            texts(&f),
            vec![
                "ledger line 2 is malformed: \"garbage\"",
                "ledger line 3 names an unknown task: \"t9 1 1 start\""
            ]
        );
    }

    #[test]
    fn the_running_check_is_the_last_one_without_an_end() {
        assert_eq!(
            running_check("t1 1 5 check-start\nt1 1 5 check-end\n"),
            None
        );
        let text = "t1 1 5 check-start\nt2 1 6 check-start\nt2 1 6 check-end\n";
        assert_eq!(running_check(text), Some("t1".into()));
    }

    #[test]
    fn task_files_carry_the_ledger_steps_and_the_check() {
        let plan = TaskPlan {
            id: "t-0001".into(),
            work: Duration::from_millis(250),
            commit: true,
            check: Some(Duration::from_millis(500)),
        };
        let text = plan.text(Path::new("/tmp/x/ledger"));
        let task = crate::task::parse("t-0001", Path::new("t-0001.md"), &text).unwrap();
        assert_eq!(
            task.verify,
            vec![
                "echo \"$NIGHTSHIFT_TASK_ID $NIGHTSHIFT_ATTEMPT $$ check-start\" >> /tmp/x/ledger \
                 && sleep 0.500 && echo \"$NIGHTSHIFT_TASK_ID $NIGHTSHIFT_ATTEMPT $$ check-end\" \
                 >> /tmp/x/ledger"
            ]
        );
        assert!(text.contains("@append /tmp/x/ledger {task} {attempt} {pid} start\n@sleep 250ms\n@commit torture t-0001\n@append /tmp/x/ledger {task} {attempt} {pid} end\n@done\n"));
    }
}
