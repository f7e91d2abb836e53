//! What a torture run leaves behind, judged at the end: sessions, worktrees, processes,
//! panics, and the ledger; and the summary it prints.

use super::*;
use crate::out::outln;

impl Torture {
    /// Checks everything at the end and records each violation; returns the figures.
    pub(super) fn inspect(&mut self) -> Findings {
        let ids: Vec<String> = self.plans.iter().map(|p| p.id.clone()).collect();
        let mut f = Findings::default();
        for id in &ids {
            match crate::tasks::locate(&self.sb.home, id).ok().flatten() {
                Some(TaskState::Done) => f.done += 1,
                Some(TaskState::Failed) => {
                    f.failed += 1;
                    let reason =
                        crate::status::find(&self.sb.home, &crate::config::Config::default(), id)
                            .ok()
                            .flatten()
                            .and_then(|v| v.reason())
                            .unwrap_or_else(|| "no reason recorded".into());
                    self.violate("task failed", format!("{id} failed: {reason}"));
                }
                Some(state) if self.added_id(id) => {
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

    pub(super) fn violate(&mut self, kind: &'static str, text: String) {
        self.violations.push(Violation::new(kind, text));
    }

    fn added_id(&self, id: &str) -> bool {
        self.plans[..self.added].iter().any(|p| p.id == id)
    }

    pub(super) fn sessions(&self) -> Vec<String> {
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
    pub(super) fn worktrees(&self) -> BTreeMap<String, BTreeSet<&'static str>> {
        let mut found: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        let repo = self.sb.repo.to_string_lossy().into_owned();
        if let Ok(list) = self.sb.git(&["worktree", "list", "--porcelain"]) {
            for path in list.lines().filter_map(|l| l.strip_prefix("worktree ")) {
                // The warm pool's worktrees are kept on purpose.
                let pooled = Path::new(path)
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == nightshift_core::worktree_pool::POOL_DIR);
                if path != repo && !pooled {
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
                if name == nightshift_core::worktree_pool::POOL_DIR {
                    continue;
                }
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
    pub(super) fn processes(&self) -> Result<Vec<String>, String> {
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

    pub(super) fn summary(&self, f: &Findings, elapsed: Duration) -> std::io::Result<()> {
        let kills: u32 = self.kills.values().sum();
        let kinds: Vec<String> = self
            .kills
            .iter()
            .map(|(kind, n)| format!("{n} {}", kind.label()))
            .collect();
        let l = &f.ledger;
        outln!()?;
        outln!("summary:")?;
        outln!(
            "  tasks:      {} ({} done, {} failed, {} added)",
            self.plans.len(),
            f.done,
            f.failed,
            self.added
        )?;
        outln!("  kills:      {kills}{}", in_parens(&kinds))?;
        outln!("  restarts:   {}", self.restarts)?;
        outln!(
            "  agent runs: {} started, {} completed, {} retried attempts, at most {} at once",
            l.starts,
            l.ends,
            f.retried,
            l.max_running
        )?;
        outln!(
            "  checks:     {} started, {} cut short",
            l.checks,
            l.checks_cut
        )?;
        outln!("  time:       {:.1} s", elapsed.as_secs_f64())?;
        let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &self.violations {
            *tally.entry(v.kind).or_default() += 1;
        }
        let tally: Vec<String> = tally.iter().map(|(k, n)| format!("{n} {k}")).collect();
        outln!(
            "  violations: {}{}",
            self.violations.len(),
            in_parens(&tally)
        )
    }
}

/// " (a, b)", or nothing for an empty list.
fn in_parens(items: &[String]) -> String {
    match items {
        [] => String::new(),
        _ => format!(" ({})", items.join(", ")),
    }
}
