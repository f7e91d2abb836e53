//! What the files say about each task, for `ls`, `show` and scripts. Reads only files, so
//! it works while the daemon is down.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use jiff::Timestamp;
use serde::Serialize;

use crate::config::Config;
use crate::home::{Home, TaskState};
use crate::report::Report;
use crate::run::{
    self, AttentionRecord, DoneRecord, ExitRecord, RunDir, SpawnRecord, StartedRecord,
};
use crate::tasks;
use nightshift_core::attention::Flag;
use nightshift_core::dispatch::{self, Hold};
use nightshift_core::routing::{self, Host};
use nightshift_core::task::{self, Task};
use nightshift_store::{Entry, Store};

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub state: TaskState,
    pub path: PathBuf,
    pub title: String,
    pub priority: i64,
    pub agent: Option<String>,
    pub workdir: Option<PathBuf>,
    /// The task's `repo:`, its credentials masked.
    pub repo: Option<String>,
    pub depends_on: Vec<String>,
    /// For queued tasks that cannot start yet: why.
    pub waiting_for: Vec<String>,
    /// For a queued task that can never run (a dependency failed, a dependency cycle): why.
    /// The daemon fails it as soon as it looks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// For a task filed before any attempt (no run folder): the reason in its report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filed_reason: Option<String>,
    /// Why the file is not a valid task, if it is not.
    pub error: Option<String>,
    pub attempts: u32,
    /// Boxed: a view is moved and sorted by the 100,000 in `ls`, and an attempt is large.
    pub last: Option<Box<AttemptView>>,
    /// When the file last changed: for finished tasks, when they finished.
    pub modified: Option<Timestamp>,
    /// Why a running task needs a person (empty when it does not).
    pub attention: Vec<Flag>,
    /// For a queued task, the host it is pinned to (if any); for a running or finished
    /// one, the host that ran its last attempt.
    pub host: Option<String>,
    /// Why a queued task is not for this host (`needs label gpu`, `runs on host b`), or
    /// waits out its agent's usage or rate limit.
    pub held: Option<String>,
    /// A running task whose agent waits out a usage or rate limit: until when, and why.
    pub limited: Option<run::LimitedRecord>,
    /// Its `not_before:` (local times read in this machine's zone).
    pub not_before: Option<Timestamp>,
}

impl TaskView {
    /// A task known only by its id, state and file: no attempt, nothing read yet.
    pub fn blank(id: &str, state: TaskState, path: &Path) -> TaskView {
        TaskView {
            id: id.to_string(),
            state,
            path: path.to_path_buf(),
            title: id.to_string(),
            priority: 0,
            agent: None,
            workdir: None,
            repo: None,
            depends_on: Vec::new(),
            waiting_for: Vec::new(),
            blocked: None,
            filed_reason: None,
            error: None,
            attempts: 0,
            last: None,
            modified: None,
            attention: Vec::new(),
            host: None,
            held: None,
            limited: None,
            not_before: None,
        }
    }

    /// When a queued task may start, while that is still ahead.
    pub fn waits_until(&self) -> Option<Timestamp> {
        self.not_before
            .filter(|at| self.state == TaskState::Queued && *at > Timestamp::now())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub dir: PathBuf,
    pub session: Option<String>,
    pub spawn: Option<SpawnRecord>,
    pub started: Option<StartedRecord>,
    pub done: Option<DoneRecord>,
    pub exit: Option<ExitRecord>,
    pub report: Option<Report>,
    /// The agent's own session, as its hooks reported it (Claude Code's session id).
    pub agent_session: Option<crate::hook::SessionRecord>,
    /// Whether the workdir is a git work tree (no-commits is off when it is not).
    pub git_repo: Option<bool>,
}

impl TaskView {
    /// When the current attempt began, if one did.
    pub fn started_at(&self) -> Option<Timestamp> {
        let last = self.last.as_ref()?;
        last.spawn
            .as_ref()
            .map(|s| s.claimed_at)
            .or(last.started.as_ref().map(|s| s.at))
    }

    /// The outcome's reason for finished tasks.
    pub fn reason(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        if matches!(self.state, TaskState::Done | TaskState::Failed) {
            return match &self.last {
                Some(last) => last.report.as_ref().map(|r| r.reason.clone()),
                None => self.filed_reason.clone(),
            };
        }
        None
    }
}

pub fn attempt_view(home: &Home, id: &str, attempt: u32) -> AttemptView {
    let dir = RunDir::new(home.run_dir(id, attempt));
    // Views go to people and scripts (`--json`, the dashboard): the `env:` values are secrets.
    let spawn: Option<SpawnRecord> =
        dir.read::<SpawnRecord>(run::SPAWN)
            .ok()
            .flatten()
            .map(|s| SpawnRecord {
                env: crate::privacy::mask_env(&s.env),
                ..s
            });
    AttemptView {
        attempt,
        session: spawn.as_ref().map(|s| s.session.clone()),
        started: dir.read(run::STARTED).ok().flatten(),
        done: dir.read(run::DONE).ok().flatten(),
        exit: dir.read(run::EXIT).ok().flatten(),
        report: dir.read(run::REPORT).ok().flatten(),
        agent_session: dir.read(run::SESSION).ok().flatten(),
        git_repo: spawn.as_ref().map(|s| crate::git::in_work_tree(&s.workdir)),
        spawn,
        dir: dir.path().to_path_buf(),
    }
}

fn view(home: &Home, entry: &Entry, here: &Host) -> (TaskView, Option<Task>) {
    let (id, path) = (entry.id.as_str(), entry.source.as_path());
    // Borrowed, not copied: `ls` on a large queue reads every body once.
    let parsed = entry
        .content
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|b| {
            std::str::from_utf8(b).map_err(|_| format!("{}: not valid UTF-8", path.display()))
        })
        .and_then(|text| {
            task::parse(id, path, text, crate::home::user_home().as_deref())
                .map_err(|e| e.to_string())
        });
    let mut error = entry.note.clone();
    let last = entry.last_attempt;
    let mut v = TaskView::blank(id, entry.state, path);
    v.attempts = last;
    v.last = (last > 0).then(|| Box::new(attempt_view(home, id, last)));
    v.modified = entry.modified;
    if entry.state == TaskState::Running && last > 0 {
        let dir = RunDir::new(home.run_dir(id, last));
        v.limited = dir.read(run::LIMITED).ok().flatten();
        let record: Option<AttentionRecord> = dir.read(run::ATTENTION).ok().flatten();
        // A task running on another host of a shared store: its flags as that host's
        // daemon last recorded them.
        let shared = || {
            let json = entry.attention.as_deref()?;
            serde_json::from_str::<AttentionRecord>(json).ok()
        };
        v.attention = record.or_else(shared).map(|r| r.flags).unwrap_or_default();
    }
    let task = match parsed {
        Ok(t) => {
            v.title = t.title.clone();
            v.priority = t.priority;
            v.agent = t.agent.clone();
            v.workdir = t.workdir.clone();
            v.repo = t.repo.as_deref().map(nightshift_core::repo_url::mask);
            v.depends_on = t.depends_on.clone();
            v.not_before = t
                .not_before
                .map(|n| n.resolve(&jiff::tz::TimeZone::system()));
            if entry.state == TaskState::Queued {
                v.held = routing::route(&t, here).err().map(|e| e.to_string());
            }
            Some(t)
        }
        Err(e) => {
            error.get_or_insert(e);
            None
        }
    };
    v.error = error;
    v.host = host_of(entry, task.as_ref(), here);
    if matches!(entry.state, TaskState::Done | TaskState::Failed) && last == 0 {
        v.filed_reason = entry
            .content
            .as_ref()
            .ok()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(Report::reason_in_markdown);
    }
    (v, task)
}

/// Where a task runs or ran: the one place a view learns it. A shared store records the
/// host; the folder store is not shared, so every attempt in it ran on this host; a queued task shows the host it is pinned to.
fn host_of(entry: &Entry, task: Option<&Task>, here: &Host) -> Option<String> {
    match entry.state {
        TaskState::Queued => task.and_then(|t| t.host.clone()),
        // A shared store knows which host ran it.
        _ if entry.host.is_some() => entry.host.clone(),
        _ if entry.last_attempt > 0 => Some(here.name.clone()),
        _ => None,
    }
}

/// Finished tasks' views, kept between reads by a live view: a finished task changes only
/// when its entry does, so a long history is not read again (the store keeps its entries
/// the same way).
#[derive(Debug, Default)]
pub struct ViewCache {
    finished: HashMap<(String, TaskState), (u64, TaskView)>,
}

/// Every task in the home: running first, then the queue in the order it will run, then
/// finished tasks, most recent first.
pub fn collect(home: &Home, config: &Config) -> anyhow::Result<Vec<TaskView>> {
    collect_with(home, &tasks::open(home), config, &mut ViewCache::default())
}

/// [`collect`] from a given store, reusing the views of finished tasks that have not
/// changed since the last call.
pub fn collect_with<S: Store>(
    home: &Home,
    store: &S,
    config: &Config,
    cache: &mut ViewCache,
) -> anyhow::Result<Vec<TaskView>> {
    let entries = tasks::call("snapshot", store.snapshot())?;
    views_of(home, store, entries, config, cache)
}

/// How many finished tasks `ls` shows when not told.
pub const DEFAULT_LAST: usize = 20;

/// Which finished tasks a listing shows: the last `last` (all when `None`), filed at or
/// after `since`.
#[derive(Debug, Clone, Copy)]
pub struct History {
    pub last: Option<usize>,
    pub since: Option<Timestamp>,
}

impl Default for History {
    fn default() -> History {
        History {
            last: Some(DEFAULT_LAST),
            since: None,
        }
    }
}

/// The active tasks and the finished ones `history` asks for, and how many other finished
/// tasks there are.
pub struct Listing {
    pub tasks: Vec<TaskView>,
    pub older: u64,
}

/// Like [`collect_with`], but with only the finished tasks `history` asks for: the store
/// reads those (the folder store from its index), not the whole history.
pub fn collect_recent<S: Store>(
    home: &Home,
    store: &S,
    config: &Config,
    cache: &mut ViewCache,
    history: History,
) -> anyhow::Result<Listing> {
    let mut entries = tasks::call("active", store.active())?;
    let limit = history.last.unwrap_or(usize::MAX);
    let recent = tasks::call("recent", store.recent(limit, history.since))?;
    entries.extend(recent.entries);
    Ok(Listing {
        tasks: views_of(home, store, entries, config, cache)?,
        older: recent.older,
    })
}

/// The running and queued tasks only (no finished one is read).
pub fn collect_active(home: &Home, config: &Config) -> anyhow::Result<Vec<TaskView>> {
    let history = History {
        last: Some(0),
        since: None,
    };
    let store = tasks::open(home);
    Ok(collect_recent(home, &store, config, &mut ViewCache::default(), history)?.tasks)
}

/// The views of `entries`, ordered as `ls` shows them.
fn views_of<S: Store>(
    home: &Home,
    store: &S,
    entries: Vec<Entry>,
    config: &Config,
    cache: &mut ViewCache,
) -> anyhow::Result<Vec<TaskView>> {
    let here = config.here();
    let mut seen = BTreeSet::new();
    let mut running = Vec::new();
    let mut queued = Vec::new();
    let mut queued_tasks = Vec::new();
    let mut finished = Vec::new();
    let mut finished_ids = BTreeMap::new();
    for entry in entries {
        let (id, state) = (entry.id.clone(), entry.state);
        let key = (id.clone(), state);
        if matches!(state, TaskState::Done | TaskState::Failed)
            && let Some((then, v)) = cache.finished.get(&key)
            && *then == entry.version
        {
            finished_ids.insert(id, state);
            finished.push(v.clone());
            seen.insert(key);
            continue;
        }
        let (mut v, task) = view(home, &entry, &here);
        if v.agent.is_none() && task.is_some() {
            v.agent = Some(config.default_agent.clone());
        }
        match state {
            TaskState::Running => running.push(v),
            TaskState::Queued => {
                if let Some(t) = task {
                    queued_tasks.push(t);
                }
                queued.push(v);
            }
            TaskState::Done | TaskState::Failed => {
                finished_ids.insert(id, state);
                cache
                    .finished
                    .insert(key.clone(), (entry.version, v.clone()));
                seen.insert(key);
                finished.push(v);
            }
        }
    }
    cache.finished.retain(|key, _| seen.contains(key));
    // The daemon's own dispatch order and dependency rule, so `ls` shows what will happen.
    let active: BTreeSet<String> = running.iter().map(|v| v.id.clone()).collect();
    // A dependency that finished before the finished tasks listed: asked for by id.
    let queued_ids: BTreeSet<&str> = queued_tasks.iter().map(|t| t.id.as_str()).collect();
    let unlisted: BTreeSet<String> = queued_tasks
        .iter()
        .flat_map(|t| &t.depends_on)
        .filter(|d| {
            !finished_ids.contains_key(*d)
                && !active.contains(*d)
                && !queued_ids.contains(d.as_str())
        })
        .cloned()
        .collect();
    for dep in unlisted {
        if let Some(state @ (TaskState::Done | TaskState::Failed)) =
            tasks::call("locate", store.locate(&dep))?
        {
            finished_ids.insert(dep, state);
        }
    }
    // Checkout locks are left out: `ls` says what a task waits for, not for which slot.
    let plan = dispatch::plan(
        &queued_tasks,
        &finished_ids,
        &active,
        usize::MAX,
        &Default::default(),
        &Default::default(),
        &here,
    );
    let rank: HashMap<&str, usize> = plan
        .start
        .iter()
        .chain(plan.hold.iter().map(|(id, _)| id))
        .chain(plan.fail.iter().map(|(id, _)| id))
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    // By id, not a search per task: a fleet's queue may hold many tasks for other hosts.
    let waiting: HashMap<&str, &Vec<String>> = plan
        .hold
        .iter()
        .filter_map(|(id, hold)| match hold {
            Hold::Waiting(w) => Some((id.as_str(), w)),
            _ => None,
        })
        .collect();
    let blocked: HashMap<&str, &String> = plan
        .fail
        .iter()
        .map(|(id, why)| (id.as_str(), why))
        .collect();
    let limits = crate::limited::read_holds(home);
    for v in &mut queued {
        if let Some(w) = waiting.get(v.id.as_str()) {
            v.waiting_for = (*w).clone();
        }
        v.blocked = blocked.get(v.id.as_str()).map(|why| (*why).clone());
        if v.held.is_none()
            && let Some(profile) = &v.agent
            && let Some(hold) = limits.get(profile)
        {
            v.held = Some(crate::limited::hold_reason(profile, hold));
        }
    }
    let queued = ordered(queued, |v| {
        rank.get(v.id.as_str()).copied().unwrap_or(usize::MAX)
    });
    let finished = ordered(finished, |v| (std::cmp::Reverse(v.modified), v.id.clone()));
    // Tasks that need a person come first.
    let running = ordered(running, |v| v.attention.is_empty());
    let mut all = running;
    all.extend(queued);
    all.extend(finished);
    Ok(all)
}

/// One task by id, wherever it is.
pub fn find(
    home: &Home,
    config: &Config,
    id: &str,
) -> Result<Option<TaskView>, nightshift_store::StoreError> {
    find_in(home, &tasks::open(home), config, id)
}

/// [`find`] in a store opened once, for a command that looks again and again.
pub fn find_in<S: Store>(
    home: &Home,
    store: &S,
    config: &Config,
    id: &str,
) -> Result<Option<TaskView>, nightshift_store::StoreError> {
    let entry = tasks::call("entry", store.entry(id))?;
    // What a queued task waits for depends on the rest of the queue: read as `ls` reads it.
    if let Some(e) = &entry
        && e.state == TaskState::Queued
        && let Some(v) = collect_active(home, config)
            .ok()
            .into_iter()
            .flatten()
            .find(|v| v.id == id && v.state == TaskState::Queued)
    {
        return Ok(Some(v));
    }
    Ok(entry.map(|e| {
        let (mut v, task) = view(home, &e, &config.here());
        if e.state == TaskState::Queued && v.held.is_none() {
            let profile = v
                .agent
                .clone()
                .unwrap_or_else(|| config.default_agent.clone());
            if task.is_some()
                && let Some(hold) = crate::limited::read_holds(home).get(&profile)
            {
                v.held = Some(crate::limited::hold_reason(&profile, hold));
            }
        }
        v
    }))
}

/// Seconds since `t`, for display.
pub fn age(t: Timestamp) -> std::time::Duration {
    let now = Timestamp::try_from(SystemTime::now()).unwrap_or(t);
    std::time::Duration::try_from(now.duration_since(t)).unwrap_or_default()
}

/// `views` stably sorted by `key`, each view moved once: sorting the (large) views
/// themselves moves each of them many times, which shows on a queue of 100,000.
fn ordered<K: Ord>(views: Vec<TaskView>, key: impl Fn(&TaskView) -> K) -> Vec<TaskView> {
    let mut order: Vec<(K, usize)> = views.iter().map(&key).zip(0..).collect();
    order.sort_unstable();
    let mut slots: Vec<Option<TaskView>> = views.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(_, i)| slots[i].take())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titles(views: &[TaskView]) -> Vec<(String, String)> {
        views
            .iter()
            .map(|v| (v.id.clone(), v.title.clone()))
            .collect()
    }

    #[test]
    fn the_cache_reuses_finished_views_until_their_file_changes() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let home = Home::at(dir.path());
        home.ensure_layout().map_err(std::io::Error::other)?;
        let config = Config::default();
        let file = home.task_file(TaskState::Done, "a");
        std::fs::write(&file, "# First\n")?;
        let mut cache = ViewCache::default();
        let store = tasks::open(&home);
        let views =
            collect_with(&home, &store, &config, &mut cache).map_err(std::io::Error::other)?;
        assert_eq!(titles(&views), [("a".into(), "First".into())]);

        // Same size and time: the cached view is used (the file is not read again).
        let when = std::fs::metadata(&file)?.modified()?;
        std::fs::write(&file, "# Other\n")?;
        std::fs::File::options()
            .write(true)
            .open(&file)?
            .set_modified(when)?;
        let views =
            collect_with(&home, &store, &config, &mut cache).map_err(std::io::Error::other)?;
        assert_eq!(titles(&views), [("a".into(), "First".into())]);

        // A changed file is read again; a vanished one leaves the cache.
        let later = when + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)?
            .set_modified(later)?;
        let views =
            collect_with(&home, &store, &config, &mut cache).map_err(std::io::Error::other)?;
        assert_eq!(titles(&views), [("a".into(), "Other".into())]);
        std::fs::remove_file(&file)?;
        assert!(
            collect_with(&home, &store, &config, &mut cache)
                .map_err(std::io::Error::other)?
                .is_empty()
        );
        assert!(cache.finished.is_empty());
        Ok(())
    }
}
