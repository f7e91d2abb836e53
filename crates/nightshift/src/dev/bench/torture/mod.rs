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

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::dev::sandbox::{self, Sandbox};
use crate::exit;
use crate::home::TaskState;
use crate::out::outln;

mod ledger;
mod leftovers;

use ledger::{Findings, Violation, check_ledger, running_check};

/// What `bench --torture` was asked for.
pub(super) struct TortureArgs {
    pub tasks: u32,
    pub kills: u32,
    pub seed: Option<u64>,
    pub max_agents: u32,
    pub keep: bool,
    /// On a private PostgreSQL cluster instead of the folder store.
    pub postgres: bool,
}

/// The daemon's wait before removing a finished task's worktree: the grace period (0 s
/// here) plus 8 s (see `tidy_worktree`). The clean-up check waits this, plus a margin.
const WORKTREE_DELAY: Duration = Duration::from_secs(8);
const CLEANUP_MARGIN: Duration = Duration::from_secs(10);
/// How long a kill "during verify" waits for a check to be running.
const CHECK_WAIT: Duration = Duration::from_secs(3);
const READY_LIMIT: Duration = Duration::from_secs(30);

pub(super) fn run(args: TortureArgs) -> anyhow::Result<i32> {
    sandbox::require_tools("bench --torture")?;
    sandbox::catch_interrupts()?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let plans: Vec<TaskPlan> = (1..=args.tasks)
        .map(|i| TaskPlan::draw(&mut rng, i))
        .collect();
    let mut config = format!("max_agents = {}\ngrace_period = \"0s\"\n", args.max_agents);
    // Kept for the whole run: the store the killed daemons share.
    let cluster = match args.postgres {
        true => Some(postgres_store(&mut config)?),
        false => None,
    };
    let sb = Sandbox::create("torture", args.keep, &config)?;
    let root = sb.root().to_string_lossy().into_owned();
    if root.contains(char::is_whitespace) {
        // The test agent's `@append PATH TEXT` takes the path up to the first space.
        anyhow::bail!("the temporary directory {root:?} has a space in it; set TMPDIR to another");
    }
    outln!(
        "nightshift bench --torture: {} tasks, {} kills, max_agents {}, seed {seed}",
        args.tasks,
        args.kills,
        args.max_agents
    )?;
    outln!(
        "reproduce with: {} bench --torture --tasks {} --kills {} --max-agents {} --seed {seed}{}",
        Sandbox::command_name(),
        args.tasks,
        args.kills,
        args.max_agents,
        if args.postgres {
            " --store postgres"
        } else {
            ""
        }
    )?;
    outln!("home: {}/home, ledger: {root}/ledger", sb.root().display())?;
    if cluster.is_some() {
        outln!("store: a private PostgreSQL cluster (initdb in a temp dir, a Unix socket only)")?;
    }
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
    t.summary(&findings, elapsed)?;
    if t.violations.is_empty() {
        outln!("torture: ok")?;
        return Ok(exit::SUCCESS);
    }
    t.sb.keep = true;
    outln!("torture: FAILED, {} violations:", t.violations.len())?;
    for v in &t.violations {
        outln!("  - {}", v.text)?;
    }
    outln!(
        "kept {} for inspection (daemon stderr: {})",
        t.sb.root().display(),
        t.sb.daemon_log().display()
    )?;
    Ok(exit::FAILURE)
}

/// Starts a private PostgreSQL cluster with nightshift's schema and points `config` at it.
fn postgres_store(
    config: &mut String,
) -> anyhow::Result<nightshift_postgres::test_cluster::Cluster> {
    let cluster = nightshift_postgres::test_cluster::Cluster::start()
        .map_err(|e| anyhow::anyhow!("cannot start a private PostgreSQL cluster: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let options = runtime
        .block_on(cluster.migrated(Duration::from_secs(30)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = toml::Value::String(options.url);
    config.push_str(&format!("[store]\nurl = {url}\n"));
    Ok(cluster)
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
            front.push_str(&format!(
                "verify: {}\n",
                nightshift_core::task::yaml_string(&command)
            ));
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
            outln!(
                "{:6.1} s  kill {}/{k} {}: {what}; restarted",
                self.start.elapsed().as_secs_f64(),
                i + 1,
                kind.label()
            )?;
        }
        self.wait_ready()?;
        self.add_up_to(n)?;
        outln!(
            "{:6.1} s  all {n} tasks added, {k} kills done; waiting for the tasks to finish",
            self.start.elapsed().as_secs_f64()
        )?;
        self.wait_finished()?;
        outln!(
            "{:6.1} s  all tasks finished; waiting up to {} s for sessions, worktrees and checks to go",
            self.start.elapsed().as_secs_f64(),
            (WORKTREE_DELAY + CLEANUP_MARGIN).as_secs()
        )?;
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
                outln!("tasks still unfinished after {} s", limit.as_secs())?;
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
                    crate::tasks::locate(&self.sb.home, &p.id).ok().flatten(),
                    Some(TaskState::Done | TaskState::Failed)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_files_carry_the_ledger_steps_and_the_check() {
        let plan = TaskPlan {
            id: "t-0001".into(),
            work: Duration::from_millis(250),
            commit: true,
            check: Some(Duration::from_millis(500)),
        };
        let text = plan.text(Path::new("/tmp/x/ledger"));
        let task =
            nightshift_core::task::parse("t-0001", Path::new("t-0001.md"), &text, None).unwrap();
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
