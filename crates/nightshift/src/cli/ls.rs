//! `nightshift ls` and `nightshift show`: read the files, ask the daemon if it is up.

use crate::client::{self, daemon_status};
use crate::home::{Home, TaskState};
use crate::local_time::local;
use crate::out::{out, outln};
use crate::status::{self, TaskView};
use crate::tasks::AnyStore;
use crate::term_text::{clean_line, clean_text};
use crate::tmux::Tmux;
use nightshift_core::duration::format as format_duration;

use super::{CliError, exit, load_config, runtime};

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print JSON for scripts
    #[arg(long)]
    pub json: bool,
    /// Only tasks in this state (queued, running, done, failed)
    #[arg(long)]
    pub state: Option<String>,
    /// Show each task's branch and its diffstat against its base
    #[arg(long, short = 'b')]
    pub branches: bool,
    /// Print the list again whenever the daemon reports a change (until Ctrl-C)
    #[arg(long, short = 'w', conflicts_with = "json")]
    pub watch: bool,
    #[command(flatten)]
    pub history: super::history::HistoryArgs,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The task's id (its file name without .md)
    pub id: String,
    /// Print JSON for scripts
    #[arg(long)]
    pub json: bool,
}

pub(super) fn ls(home: &Home, args: LsArgs) -> anyhow::Result<i32> {
    if args.watch {
        return watch(home, &args);
    }
    let store = crate::tasks::open(home);
    print_ls(home, &args, &store, &mut status::ViewCache::default())
}

/// `ls --watch`: the list, again after every change the daemon pushes (no polling).
fn watch(home: &Home, args: &LsArgs) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let socket = home.checked_socket()?;
    let rt = runtime()?;
    let mut conn = rt.block_on(client::subscribe(&socket)).map_err(|e| {
        CliError::new(
            exit::NOT_RUNNING,
            format!(
                "cannot follow the daemon ({e}); start it with `{}`",
                client::hint::command(home, "daemon")
            ),
        )
    })?;
    let clear = std::io::stdout().is_terminal();
    // Kept across redraws: unchanged finished tasks are not read again.
    let store = crate::tasks::open(home);
    let mut cache = status::ViewCache::default();
    loop {
        if clear {
            out!("\x1b[2J\x1b[H")?;
        }
        print_ls(home, args, &store, &mut cache)?;
        // One redraw for a burst of changes.
        let more = rt.block_on(async {
            let changed = conn.changed().await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            changed
        });
        if !more {
            outln!("the daemon stopped")?;
            return Ok(exit::NOT_RUNNING);
        }
    }
}

fn print_ls(
    home: &Home,
    args: &LsArgs,
    store: &AnyStore,
    cache: &mut status::ViewCache,
) -> anyhow::Result<i32> {
    let config_error = home.reload_error();
    // Before the config is read: a broken one ends `ls` below, and this says what the
    // daemon does meanwhile.
    if let (Some(e), false) = (&config_error, args.json) {
        outln!(
            "config.toml: not reloaded, the daemon runs on the last good one: {}",
            clean_line(e, true)
        )?;
    }
    let config = load_config(home)?;
    let history = args.history.history();
    let listing = status::collect_recent(home, store, &config, cache, history)?;
    let (mut tasks, older) = (listing.tasks, listing.older);
    if let Some(state) = &args.state {
        let wanted = TaskState::ALL
            .into_iter()
            .find(|s| s.as_str() == state || crate::home::dir_name(*s) == state)
            .ok_or_else(|| {
                CliError::new(
                    exit::USAGE,
                    format!("unknown state `{state}` (queued, running, done, failed)"),
                )
            })?;
        tasks.retain(|t| t.state == wanted);
    }
    let daemon = daemon_status(home);
    let hosts = fleet_hosts(store)?;
    if args.json {
        let (status, error) = match &daemon {
            Ok(s) => (s.clone(), None),
            Err(e) => (None, Some(e.clone())),
        };
        let head = [
            ("daemon", serde_json::to_value(status)?),
            ("daemon_error", serde_json::to_value(error)?),
            ("hosts", serde_json::to_value(hosts)?),
            (
                "limits",
                serde_json::to_value(crate::limited::read_holds(home))?,
            ),
        ];
        super::history::write_json(&head, older, &tasks)?;
        return Ok(exit::SUCCESS);
    }
    if let Some(hosts) = &hosts {
        outln!("{}", clean_line(&hosts_line(hosts), true))?;
    }
    if let Some(line) = crate::limited::holds_line(&crate::limited::read_holds(home)) {
        outln!("{}", clean_line(&line, true))?;
    }
    let paused = if crate::tasks::call("paused", nightshift_store::Store::paused(store))? {
        format!(" — PAUSED (`{}`)", client::hint::command(home, "resume"))
    } else {
        String::new()
    };
    match &daemon {
        Ok(Some(d)) => {
            let held = match &d.disk_full {
                Some(what) => format!(
                    " — HELD: the home's disk is full ({}); starts resume when space is freed",
                    clean_line(what, true)
                ),
                None => String::new(),
            };
            outln!(
                "daemon: running (pid {}), {}/{} agents, {} queued{paused}{held}",
                d.pid,
                d.slots_used,
                d.max_agents,
                d.queued
            )
        }
        Ok(None) => outln!(
            "daemon: not running (start it with `{}`){paused}",
            client::hint::command(home, "daemon")
        ),
        Err(e) => outln!("daemon: {}", clean_line(e, true)),
    }?;
    if tasks.is_empty() {
        outln!(
            "no tasks; add one with `{}` or drop a .md file into {}",
            client::hint::command(home, "add FILE"),
            home.state_dir(TaskState::Queued).display()
        )?;
        super::history::print_footer(home, older, history)?;
        return Ok(exit::SUCCESS);
    }
    // Ids, agents and titles come from task files: no escape sequence reaches the terminal.
    let rows: Vec<[String; 7]> = tasks
        .iter()
        .map(|t| row(t).map(|cell| clean_line(&cell, true)))
        .collect();
    let header = ["ID", "STATE", "PRI", "AGENT", "HOST", "TRY", "TIME"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7], info: &str| {
        let mut s = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            s.push_str(&format!("{cell:<w$}  "));
        }
        s.push_str(info);
        outln!("{}", s.trim_end())
    };
    line(header, "TITLE")?;
    let rt = runtime()?;
    for (task, r) in tasks.iter().zip(&rows) {
        let mut text = info(task);
        if args.branches
            && let Some(branch) = rt.block_on(branch_of(task))
        {
            text.push_str(&format!("  [{branch}]"));
        }
        line(
            [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]],
            &clean_line(&text, true),
        )?;
    }
    super::history::print_footer(home, older, history)?;
    Ok(exit::SUCCESS)
}

/// `nightshift/x +12 -3 in 2 files`: the task's branch and its change against its base.
async fn branch_of(t: &TaskView) -> Option<String> {
    let last = t.last.as_ref()?;
    let wt = last.spawn.as_ref()?.worktree.as_ref()?;
    let stat = match last.report.as_ref().and_then(|r| r.diffstat) {
        Some(d) => Some(d),
        None if wt.path.is_dir() => crate::worktree::diffstat(&wt.path, &wt.base).await,
        None => None,
    };
    Some(match stat {
        Some(d) => format!(
            "{} +{} -{} in {} files",
            wt.branch, d.insertions, d.deletions, d.files
        ),
        None => wt.branch.clone(),
    })
}

/// The fleet's hosts, for a shared store (`None` for the folder store).
fn fleet_hosts(store: &AnyStore) -> anyhow::Result<Option<Vec<nightshift_postgres::HostView>>> {
    let Some(pg) = store.postgres() else {
        return Ok(None);
    };
    let hosts = crate::tasks::call("hosts", async {
        pg.hosts().await.map_err(nightshift_store::StoreError::from)
    })?;
    Ok(Some(hosts))
}

/// `hosts: a [gpu], b LOST (silent 2m)`: who is in the fleet, and who stopped answering.
fn hosts_line(hosts: &[nightshift_postgres::HostView]) -> String {
    let shown: Vec<String> = hosts
        .iter()
        .map(|h| {
            let mut s = h.name.clone();
            if !h.labels.is_empty() {
                s.push_str(&format!(" [{}]", h.labels.join(",")));
            }
            if h.lost {
                let silent = std::time::Duration::from_secs(h.silent_for.max(0.0) as u64);
                s.push_str(&format!(" LOST (silent {})", format_duration(silent)));
            }
            s
        })
        .collect();
    format!("hosts: {}", shown.join(", "))
}

fn row(t: &TaskView) -> [String; 7] {
    let state = match t.state {
        TaskState::Running if t.limited.is_some() => "limited".to_string(),
        TaskState::Running if !t.attention.is_empty() => "ATTENTION".to_string(),
        TaskState::Queued if t.blocked.is_some() => "blocked".to_string(),
        TaskState::Queued if !t.waiting_for.is_empty() => "waiting".to_string(),
        TaskState::Failed if t.error.is_some() && t.attempts == 0 => "invalid".to_string(),
        // Not a task yet: the daemon sets it aside.
        TaskState::Queued if t.error.is_some() => "invalid".to_string(),
        s => s.as_str().to_string(),
    };
    let time = match t.state {
        TaskState::Running => t
            .started_at()
            .map(|s| format_duration(status::age(s)))
            .unwrap_or_default(),
        TaskState::Done | TaskState::Failed => t
            .modified
            .map(|m| format!("{} ago", short(status::age(m))))
            .unwrap_or_default(),
        TaskState::Queued => String::new(),
    };
    [
        t.id.clone(),
        state,
        t.priority.to_string(),
        t.agent.clone().unwrap_or_default(),
        t.host.clone().unwrap_or_default(),
        if t.attempts > 0 {
            t.attempts.to_string()
        } else {
            String::new()
        },
        time,
    ]
}

fn short(d: std::time::Duration) -> String {
    format_duration(d)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_string()
}

fn info(t: &TaskView) -> String {
    let mut s = truncate(&t.title, 60);
    if let Some(flag) = t.attention.first() {
        s.push_str(&format!(
            "  ⚑ {}: {}",
            signal_name(flag.signal),
            truncate(flag.evidence.lines().next().unwrap_or(""), 80)
        ));
    }
    if let Some(why) = &t.blocked {
        s.push_str(&format!("  — will fail: {why}"));
    } else if !t.waiting_for.is_empty() {
        s.push_str(&format!("  (waits for {})", t.waiting_for.join(", ")));
    }
    if let Some(at) = t.waits_until() {
        s.push_str(&format!("  (waits until {})", crate::local_time::local(at)));
    }
    if let Some(held) = &t.held {
        s.push_str(&format!("  (held: {held})"));
    }
    if let Some(l) = &t.limited {
        s.push_str(&format!(
            "  ⏸ {} until {}: {}",
            l.kind.name(),
            crate::limited::local_time(l.until),
            truncate(&l.evidence, 80)
        ));
    }
    if (t.state == TaskState::Failed || t.error.is_some())
        && let Some(reason) = t.reason()
    {
        s.push_str(&format!(
            "  — {}",
            truncate(reason.lines().next().unwrap_or(""), 80)
        ));
    }
    s
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

pub(super) fn show(home: &Home, args: ShowArgs) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    let Some(t) = status::find(home, &config, &args.id)? else {
        return Err(CliError::not_found(&args.id).into());
    };
    if args.json {
        outln!("{}", crate::term_text::to_json(&t)?)?;
        return Ok(exit::SUCCESS);
    }
    // Every value may come from the task file, the agent or git: cleaned for the terminal.
    let kv = |k: &str, v: &str| outln!("{k:<12} {}", clean_text(v));
    kv("id", &t.id)?;
    kv("title", &t.title)?;
    kv("state", t.state.as_str())?;
    kv("file", &t.path.display().to_string())?;
    kv("priority", &t.priority.to_string())?;
    kv("agent", t.agent.as_deref().unwrap_or(&config.default_agent))?;
    if let Some(r) = &t.repo {
        kv("repo", r)?;
    } else if let Some(w) = t.workdir.as_ref().or(config.workdir.as_ref()) {
        kv("workdir", &w.display().to_string())?;
    }
    if !t.depends_on.is_empty() {
        kv("depends on", &t.depends_on.join(", "))?;
    }
    if let Some(why) = &t.blocked {
        kv("blocked", &format!("will fail: {why}"))?;
    } else if !t.waiting_for.is_empty() {
        kv("waits for", &t.waiting_for.join(", "))?;
    }
    // Filed before any attempt: the reason has no attempt to be shown with.
    if t.last.is_none()
        && t.error.is_none()
        && let Some(why) = &t.filed_reason
    {
        kv("reason", why)?;
    }
    if let Some(at) = t.not_before {
        let waits = if t.waits_until().is_some() {
            "waits until"
        } else {
            "not before"
        };
        kv(waits, &crate::local_time::local(at))?;
    }
    if let Some(host) = &t.host {
        kv("host", host)?;
    }
    if let Some(held) = &t.held {
        kv("held", held)?;
    }
    if let Some(l) = &t.limited {
        kv(
            "limited",
            &format!(
                "{} until {} (agent {}), since {}",
                l.kind.name(),
                local(l.until),
                l.profile,
                local(l.since)
            ),
        )?;
        outln!("{:<12}   {}", "", clean_line(&l.evidence, true))?;
    }
    if let Some(e) = &t.error {
        kv("error", e)?;
    }
    kv("attempts", &t.attempts.to_string())?;
    for flag in &t.attention {
        kv(
            "attention",
            &format!("{} since {}", signal_name(flag.signal), local(flag.since)),
        )?;
        for line in flag.evidence.lines() {
            outln!("{:<12}   {}", "", clean_line(line, true))?;
        }
    }
    if let Some(last) = &t.last {
        outln!()?;
        outln!("attempt {}:", last.attempt)?;
        if let Some(s) = &last.spawn {
            kv("  started", &local(s.claimed_at))?;
            kv("  command", &s.argv.first().cloned().unwrap_or_default())?;
            if t.state == TaskState::Running {
                let tmux = Tmux::new(&config.tmux_socket);
                kv(
                    "  attach",
                    &format!(
                        "{}   (or {} attach -t {})",
                        client::hint::command(home, &format!("attach {}", t.id)),
                        tmux.display_prefix(),
                        s.session
                    ),
                )?;
            }
        }
        if last.git_repo == Some(false) {
            kv("  no-commits", "off: the workdir is not a git repository")?;
        }
        if let Some(wt) = last.spawn.as_ref().and_then(|s| s.worktree.as_ref()) {
            kv(
                "  branch",
                &format!(
                    "{} (from {})",
                    wt.branch,
                    wt.base.get(..10).unwrap_or(&wt.base)
                ),
            )?;
            let kept = if wt.path.is_dir() { "" } else { " (removed)" };
            kv("  worktree", &format!("{}{kept}", wt.path.display()))?;
        }
        if let Some(s) = &last.agent_session {
            kv("  session", &format!("{} (the agent's own)", s.session_id))?;
        }
        if let Some(n) = last.spawn.as_ref().and_then(|s| s.prompt_note.as_ref()) {
            kv("  prompt", n)?;
        }
        if let Some(d) = &last.done {
            let how = match d.source {
                crate::run::DoneSource::Command => "nightshift done",
                crate::run::DoneSource::Marker => "marker",
            };
            let verdict = if d.ok { "ok" } else { "failed" };
            let summary = d
                .summary
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            kv("  done", &format!("{verdict} ({how}){summary}"))?;
        }
        if let Some(e) = &last.exit {
            kv("  exit", &e.describe())?;
        }
        if let Some(r) = &last.report {
            kv("  outcome", &format!("{}: {}", r.outcome, r.reason))?;
            if let Some(p) = &r.push {
                kv("  push", &p.describe())?;
            }
            if let Some(p) = &r.pr {
                kv("  pr", &p.describe())?;
            }
            if let Some(c) = &r.commits {
                kv("  commits", &c.len().to_string())?;
                for commit in c {
                    let line = format!(
                        "{} {}",
                        commit.hash.get(..10).unwrap_or(&commit.hash),
                        commit.subject
                    );
                    outln!("{:<12}   {}", "", clean_line(&line, true))?;
                }
            }
        }
        kv(
            "  transcript",
            &last.dir.join(crate::run::TRANSCRIPT).display().to_string(),
        )?;
    }
    Ok(exit::SUCCESS)
}

/// The name of a signal as config and output spell it.
pub(super) fn signal_name(signal: nightshift_core::attention::Signal) -> String {
    signal.name().to_string()
}
