//! What the dashboard shows, as plain data. The edge (`feed`) fills it from the files and
//! the daemon; `view` draws it; tests make it up directly.

use std::time::Duration;

use jiff::Timestamp;

use crate::home::TaskState;
use crate::ipc::DaemonStatus;
use crate::status::TaskView;

/// How many finished tasks the list shows when no filter is set.
pub const RECENT: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Attention,
    Running,
    Queued,
    Finished,
}

impl Group {
    pub fn heading(self) -> &'static str {
        match self {
            Group::Attention => "NEEDS YOU",
            Group::Running => "RUNNING",
            Group::Queued => "QUEUED",
            Group::Finished => "RECENT",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub title: String,
    pub group: Group,
    /// One word: the attention reason, the phase, queued or blocked, done or failed.
    pub status: String,
    pub failed: bool,
    pub agent: String,
    pub branch: Option<String>,
    /// Running: when the attempt began. Queued: when the file was queued. Finished: when
    /// it finished.
    pub since: Option<Timestamp>,
    /// Running in git: the newest commit of this attempt (`None`: none yet).
    pub last_commit: Option<Timestamp>,
    /// Running: whether the workdir is a git repository (else commits cannot be seen).
    pub in_git: bool,
    /// Running: the last line on the agent's screen.
    pub last_line: Option<String>,
    /// Running: its tmux session.
    pub session: Option<String>,
    /// Why it needs you, what it waits for, or why it ended.
    pub detail: Option<String>,
}

impl Row {
    pub fn is_running(&self) -> bool {
        matches!(self.group, Group::Attention | Group::Running)
    }

    /// Whether the filter text (case-insensitive) is in any of the words shown for it.
    pub fn matches(&self, filter: &str) -> bool {
        let filter = filter.trim().to_lowercase();
        if filter.is_empty() {
            return true;
        }
        [
            Some(&self.id),
            Some(&self.title),
            Some(&self.agent),
            Some(&self.status),
            self.branch.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|s| s.to_lowercase().contains(&filter))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Up {
        started_at: Timestamp,
        max_agents: usize,
        slots_used: usize,
    },
    /// Not running, or not answering: `why` says which.
    Down { why: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub link: Link,
    pub queued: usize,
    pub paused: bool,
    /// The soonest scheduled run: the schedule's name and when.
    pub next_schedule: Option<(String, Timestamp)>,
    /// The command that starts the daemon of this home (with `--home` when not the default).
    pub daemon_command: String,
    /// Why the daemon's last reload of `config.toml` was refused, while it still is.
    pub config_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub header: Header,
    /// In display order: attention, running, queue in run order, finished newest first.
    pub rows: Vec<Row>,
    /// Where task files go, for the empty screen.
    pub queue_dir: String,
    /// The wall clock the ages are measured against.
    pub now: Timestamp,
}

impl Model {
    /// The rows the list shows: all that match the filter, but only the most recent
    /// finished ones when there is no filter. Also how many finished rows are left out.
    pub fn visible(&self, filter: &str) -> (Vec<&Row>, usize) {
        let mut finished = 0;
        let mut hidden = 0;
        let rows = self
            .rows
            .iter()
            .filter(|r| r.matches(filter))
            .filter(|r| {
                if r.group != Group::Finished || !filter.trim().is_empty() {
                    return true;
                }
                finished += 1;
                if finished > RECENT {
                    hidden += 1;
                    return false;
                }
                true
            })
            .collect();
        (rows, hidden)
    }

    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// How often the times on screen change: each second while something runs or any
    /// time shown is under a minute (it counts seconds), else each minute.
    pub fn clock_step(&self) -> Duration {
        let young = |t: &Timestamp| self.age(*t) < Duration::from_secs(60);
        let uptime = match &self.header.link {
            Link::Up { started_at, .. } => Some(*started_at),
            Link::Down { .. } => None,
        };
        let fast = self
            .rows
            .iter()
            .any(|r| r.is_running() || r.since.as_ref().is_some_and(young))
            || uptime.as_ref().is_some_and(young);
        Duration::from_secs(if fast { 1 } else { 60 })
    }

    pub fn age(&self, t: Timestamp) -> Duration {
        Duration::try_from(self.now.duration_since(t)).unwrap_or_default()
    }
}

/// What the edge found out about a running task beyond its files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub last_commit: Option<Timestamp>,
    pub last_line: Option<String>,
}

/// Builds the model from what `status::collect` read and what the daemon said.
/// Where the dashboard runs: the home's queue folder and this host's name.
pub struct Here<'a> {
    pub queue_dir: String,
    pub host: &'a str,
    pub daemon_command: String,
    pub config_error: Option<String>,
}

pub fn build(
    views: &[TaskView],
    daemon: Result<Option<&DaemonStatus>, String>,
    paused: bool,
    next_schedule: Option<(String, Timestamp)>,
    live: &dyn Fn(&str) -> Live,
    here: Here<'_>,
    now: Timestamp,
) -> Model {
    let Here {
        queue_dir,
        host: here,
        daemon_command,
        config_error,
    } = here;
    let link = match &daemon {
        Ok(Some(s)) => Link::Up {
            started_at: s.started_at,
            max_agents: s.max_agents,
            slots_used: s.slots_used,
        },
        Ok(None) => Link::Down {
            why: "not running".into(),
        },
        Err(e) => Link::Down { why: e.clone() },
    };
    let phase_of = |id: &str| {
        daemon.as_ref().ok().copied().flatten().and_then(|s| {
            s.running
                .iter()
                .find(|r| r.id == id)
                .map(|r| phase_word(r.phase))
        })
    };
    let rows = views
        .iter()
        .map(|v| row(v, phase_of(&v.id), live, here, now))
        .collect::<Vec<_>>();
    Model {
        header: Header {
            link,
            queued: rows.iter().filter(|r| r.group == Group::Queued).count(),
            paused,
            next_schedule,
            daemon_command,
            config_error,
        },
        rows,
        queue_dir,
        now,
    }
}

/// The attention reason as one word that fits the state column.
fn reason_word(signal: nightshift_core::attention::Signal) -> &'static str {
    match signal {
        nightshift_core::attention::Signal::RepeatedError => "errors",
        other => other.name(),
    }
}

fn phase_word(phase: nightshift_core::Phase) -> &'static str {
    match phase {
        nightshift_core::Phase::Starting => "starting",
        nightshift_core::Phase::Running => "running",
        nightshift_core::Phase::Verifying => "checking",
    }
}

fn row(
    v: &TaskView,
    phase: Option<&str>,
    live: &dyn Fn(&str) -> Live,
    here: &str,
    now: Timestamp,
) -> Row {
    let spawn = v.last.as_ref().and_then(|l| l.spawn.as_ref());
    let agent = v
        .agent
        .clone()
        .or(spawn.map(|s| s.agent.clone()))
        .unwrap_or_default();
    // In a fleet, where it runs (or ran) when that is another host: `claude@build-2`.
    let agent = match v.host.as_deref().filter(|h| *h != here) {
        Some(host) => format!("{agent}@{host}"),
        None => agent,
    };
    let mut r = Row {
        id: v.id.clone(),
        title: v.title.clone(),
        group: Group::Queued,
        status: String::new(),
        failed: v.state == TaskState::Failed,
        agent,
        branch: spawn.and_then(|s| s.worktree.as_ref().map(|w| w.branch.clone())),
        since: v.modified,
        last_commit: None,
        in_git: false,
        last_line: None,
        session: None,
        detail: None,
    };
    match v.state {
        TaskState::Running => {
            let live = live(&v.id);
            r.since = v.started_at().or(v.modified);
            // git's times are whole seconds: never show a commit older than the attempt.
            r.last_commit = match (live.last_commit, r.since) {
                (Some(c), Some(s)) => Some(c.max(s)),
                (c, _) => c,
            };
            r.last_line = live.last_line;
            r.in_git = spawn.is_some_and(|s| s.git_head.is_some());
            r.session = Some(crate::tmux::session_name(&v.id));
            if let Some(l) = &v.limited {
                // Waiting out a limit is not a person's job: it goes on by itself.
                r.group = Group::Running;
                r.status = "limited".into();
                r.detail = Some(format!(
                    "{} until {}: {}",
                    l.kind.name(),
                    crate::limited::local_time(l.until),
                    l.evidence
                ));
            } else if let Some(flag) = v.attention.first() {
                r.group = Group::Attention;
                r.status = reason_word(flag.signal).to_string();
                // The evidence's first line says it; the rest is context for `show`.
                r.detail = flag.evidence.lines().next().map(str::to_string);
            } else {
                r.group = Group::Running;
                r.status = phase.unwrap_or("running").to_string();
            }
        }
        TaskState::Queued => {
            r.group = Group::Queued;
            if let Some(e) = &v.error {
                r.status = "invalid".into();
                r.detail = Some(e.clone());
            } else if let Some(held) = &v.held {
                r.status = "held".into();
                r.detail = Some(held.clone());
            } else if let Some(at) = v.not_before.filter(|at| *at > now) {
                r.status = "waits".into();
                r.detail = Some(format!("not before {}", crate::local_time::local(at)));
            } else if v.waiting_for.is_empty() {
                r.status = "queued".into();
            } else {
                r.status = "blocked".into();
                r.detail = Some(format!("waits for {}", v.waiting_for.join(", ")));
            }
        }
        TaskState::Done | TaskState::Failed => {
            r.group = Group::Finished;
            r.status = v.state.as_str().to_string();
            r.detail = v.reason();
        }
    }
    r
}

/// A duration in at most two units, for narrow columns: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d{:02}h", s / 86400, (s / 3600) % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: &str, not_before: Option<Timestamp>) -> TaskView {
        let path = std::path::PathBuf::from(format!("/h/queue/{id}.md"));
        let mut v = TaskView::blank(id, TaskState::Queued, &path);
        v.not_before = not_before;
        v
    }

    /// A task with a `not_before:` still ahead says so; one whose time has come is queued.
    #[test]
    fn a_task_not_before_a_time_waits_for_it() {
        let now = Timestamp::from_second(1_800_000_000).unwrap_or_default();
        let later = now + jiff::SignedDuration::from_hours(2);
        let earlier = now - jiff::SignedDuration::from_hours(2);
        let none = |_: &str| Live::default();
        let waits = row(&queued("a", Some(later)), None, &none, "h", now);
        assert_eq!(waits.status, "waits");
        let when = crate::local_time::local(later);
        assert_eq!(waits.detail, Some(format!("not before {when}")));
        let due = row(&queued("b", Some(earlier)), None, &none, "h", now);
        assert_eq!(due.status, "queued");
        assert_eq!(due.detail, None);
    }

    #[test]
    fn short_durations_use_two_units_at_most() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h00m"),
            (3 * 3600 + 5 * 60 + 9, "3h05m"),
            (2 * 86400 + 4 * 3600 + 59, "2d04h"),
        ];
        for (secs, want) in cases {
            assert_eq!(short(Duration::from_secs(secs)), want, "{secs}s");
        }
    }
}
