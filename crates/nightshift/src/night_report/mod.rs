//! The night report (`nightshift report`): every attempt in a window, read from the run
//! folders, the schedules' state and the queue, summarised as text, JSON or one HTML page.
//! Reading is here; the decisions (window, outcomes, lanes, idle and blocked stretches) are
//! in `nightshift_core::night`; the words in `text.rs`, the page in `html.rs`.

mod details;
pub mod html;
pub mod text;

use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use crate::checks::VerifyRound;
use crate::config::Config;
use crate::git::Commit;
use crate::home::{Home, TaskState};
use crate::report::{Report, Usage};
use crate::run::{self, AckRecord, RunDir};
use crate::status::{self, TaskView};
use crate::worktree::DiffStat;
use nightshift_core::night::{self, Gap, Outcome, Span, Window};

pub use details::Details;

/// Idle stretches shorter than this are not worth a line.
const MIN_IDLE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Serialize)]
pub struct NightReport {
    pub generated_at: Timestamp,
    pub host: String,
    pub window: Window,
    pub attempts: Vec<Attempt>,
    /// Queued tasks: what waits, and why.
    pub waiting: Vec<Waiting>,
    pub lanes: Vec<LaneUse>,
    /// When nothing ran (at least 5 minutes).
    pub idle: Vec<Gap>,
    /// When every running agent waited for a person.
    pub blocked: Vec<Gap>,
    /// Schedule slots handled in the window.
    pub fires: Vec<Fire>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub task_id: String,
    pub title: String,
    pub attempt: u32,
    pub host: String,
    /// Index into [`NightReport::lanes`].
    pub lane: usize,
    pub outcome: Outcome,
    pub reason: String,
    pub summary: Option<String>,
    pub agent: Option<String>,
    pub start: Timestamp,
    pub end: Timestamp,
    pub duration_secs: f64,
    pub branch: Option<String>,
    pub base: Option<String>,
    pub worktree: Option<PathBuf>,
    pub diffstat: Option<DiffStat>,
    pub commits: Vec<Commit>,
    pub verify: Vec<VerifyRound>,
    pub attention: Vec<Flagged>,
    pub usage: Option<Usage>,
    pub run_dir: PathBuf,
}

/// A flag raised during the attempt: how long it stood, and whether a person came.
#[derive(Debug, Clone, Serialize)]
pub struct Flagged {
    pub signal: String,
    pub evidence: String,
    pub raised_at: Timestamp,
    pub cleared_at: Option<Timestamp>,
    pub waited_secs: f64,
    /// `acked` or `sent` with when, when a person answered while it stood.
    pub answered: Option<Answer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub how: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub task_id: String,
    pub title: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LaneUse {
    pub host: String,
    pub slot: usize,
    pub busy_secs: f64,
    pub attempts: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fire {
    pub schedule: String,
    pub slot: Timestamp,
    pub what: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub done: usize,
    pub failed: usize,
    pub retried: usize,
    pub cancelled: usize,
    pub running: usize,
    pub unknown: usize,
    pub flags: usize,
    pub flags_answered: usize,
    pub waited_secs: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    pub verify_rounds: usize,
}

/// Reads the home and builds the report of `window`.
pub fn gather(home: &Home, config: &Config, window: Window) -> anyhow::Result<NightReport> {
    let views = status::collect(home, config)?;
    let paused = home.paused_file().exists();
    let mut attempts = Vec::new();
    let mut waiting = Vec::new();
    for v in &views {
        if v.state == TaskState::Queued {
            waiting.push(Waiting {
                task_id: v.id.clone(),
                title: v.title.clone(),
                why: waiting_reason(v, paused),
            });
        }
        for n in run::attempts(&home.task_runs(&v.id)) {
            if let Some(a) = read_attempt(home, v, n, &config.host, window.until)
                && window.overlaps(a.start, a.end)
            {
                attempts.push(a);
            }
        }
    }
    attempts.sort_by_key(|a| (a.start, a.task_id.clone(), a.attempt));
    let spans: Vec<Span> = attempts
        .iter()
        .map(|a| Span {
            host: a.host.clone(),
            start: a.start,
            end: a.end,
        })
        .collect();
    let (lane_of, lanes) = night::lay_out(&spans);
    let busy = night::busy_secs(&spans, &lane_of, lanes.len(), &window);
    for (a, l) in attempts.iter_mut().zip(&lane_of) {
        a.lane = *l;
    }
    let lanes = lanes
        .into_iter()
        .zip(busy)
        .enumerate()
        .map(|(i, (lane, busy_secs))| LaneUse {
            host: lane.host,
            slot: lane.index + 1,
            busy_secs,
            attempts: lane_of.iter().filter(|l| **l == i).count(),
        })
        .collect();
    let flags: Vec<(usize, Gap)> = attempts
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            a.attention.iter().map(move |f| {
                let to = f.cleared_at.unwrap_or(a.end);
                (
                    i,
                    Gap {
                        from: f.raised_at,
                        to,
                    },
                )
            })
        })
        .collect();
    Ok(NightReport {
        generated_at: window.until,
        host: config.host.clone(),
        idle: night::idle_gaps(&spans, &window, MIN_IDLE),
        blocked: night::blocked_gaps(&spans, &flags, &window, std::time::Duration::ZERO),
        fires: schedule_fires(home, &window),
        totals: totals(&attempts),
        window,
        attempts,
        waiting,
        lanes,
    })
}

fn waiting_reason(v: &TaskView, paused: bool) -> String {
    if let Some(e) = &v.error {
        return format!("invalid: {e}");
    }
    if let Some(h) = &v.held {
        return format!("held: {h}");
    }
    if !v.waiting_for.is_empty() {
        return format!("waits for {}", v.waiting_for.join(", "));
    }
    if paused {
        return "the queue is paused (`nightshift resume`)".into();
    }
    "ready: waits for a free slot".into()
}

/// One attempt from its run folder; `None` when it never got as far as a start.
fn read_attempt(
    home: &Home,
    v: &TaskView,
    n: u32,
    this_host: &str,
    now: Timestamp,
) -> Option<Attempt> {
    let view = status::attempt_view(home, &v.id, n);
    let report: Option<&Report> = view.report.as_ref();
    let start = view
        .spawn
        .as_ref()
        .map(|s| s.claimed_at)
        .or(report.and_then(|r| r.started_at))
        .or(view.started.as_ref().map(|s| s.at))?;
    let running = v.state == TaskState::Running && v.attempts == n && report.is_none();
    let end = match report {
        Some(r) => r.finished_at,
        None if running => now,
        None => view.exit.as_ref().map_or(start, |e| e.at),
    };
    let outcome = night::classify(
        report.map(|r| r.outcome.as_str()),
        report.map_or("", |r| r.reason.as_str()),
        running,
    );
    let dir = RunDir::new(&view.dir);
    let ack: Option<AckRecord> = dir.read(run::ACK).ok().flatten();
    let sent = sent_times(&dir);
    let attention = report
        .map(|r| r.attention.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let until = e.cleared_at.unwrap_or(end);
            let answered = answer(e.raised_at, until, ack.as_ref(), &sent);
            Flagged {
                waited_secs: until.duration_since(e.raised_at).as_secs_f64().max(0.0),
                signal: e.signal,
                evidence: e.evidence,
                raised_at: e.raised_at,
                cleared_at: e.cleared_at,
                answered,
            }
        })
        .collect();
    Some(Attempt {
        task_id: v.id.clone(),
        title: v.title.clone(),
        attempt: n,
        host: v.host.clone().unwrap_or_else(|| this_host.to_string()),
        lane: 0,
        outcome,
        reason: report.map_or_else(
            || match outcome {
                Outcome::Running => "running".to_string(),
                _ => "no report was written".to_string(),
            },
            |r| r.reason.clone(),
        ),
        summary: report.and_then(|r| r.summary.clone()),
        agent: report
            .and_then(|r| r.agent.clone())
            .or(view.spawn.as_ref().map(|s| s.agent.clone())),
        start,
        end,
        duration_secs: report
            .and_then(|r| r.duration_secs)
            .unwrap_or_else(|| end.duration_since(start).as_secs_f64().max(0.0)),
        branch: report.and_then(|r| r.branch.clone()),
        base: report.and_then(|r| r.base.clone()),
        worktree: report.and_then(|r| r.worktree.clone()),
        diffstat: report.and_then(|r| r.diffstat),
        commits: report.and_then(|r| r.commits.clone()).unwrap_or_default(),
        verify: report.map(|r| r.verify.clone()).unwrap_or_default(),
        attention,
        usage: report.and_then(|r| r.usage.clone()),
        run_dir: view.dir.clone(),
    })
}

/// When a person typed into the agent (`nightshift send`), from the event log.
fn sent_times(dir: &RunDir) -> Vec<Timestamp> {
    let text = std::fs::read_to_string(dir.file(run::EVENTS)).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == crate::run::SENT_EVENT)
        .filter_map(|v| v["at"].as_str()?.parse().ok())
        .collect()
}

/// The first answer of a person while a flag stood (an ack counts up to a minute after it
/// cleared: the ack is what cleared it).
fn answer(
    raised: Timestamp,
    until: Timestamp,
    ack: Option<&AckRecord>,
    sent: &[Timestamp],
) -> Option<Answer> {
    let slack = jiff::SignedDuration::from_secs(60);
    let in_time = |t: Timestamp| t >= raised && t <= until.checked_add(slack).unwrap_or(until);
    let acked = ack.map(|a| a.at).filter(|t| in_time(*t)).map(|at| Answer {
        how: "acked".into(),
        at,
    });
    let typed = sent.iter().copied().find(|t| in_time(*t)).map(|at| Answer {
        how: "sent".into(),
        at,
    });
    [acked, typed].into_iter().flatten().min_by_key(|a| a.at)
}

/// The schedules' slots handled inside the window, from `schedules/.state/`.
fn schedule_fires(home: &Home, window: &Window) -> Vec<Fire> {
    let dir = crate::schedule::state::state_dir(&home.schedules_dir());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut fires: Vec<Fire> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".json")?.to_string();
            let state = crate::schedule::state::load(&home.schedules_dir(), &name)?;
            Some((name, state))
        })
        .flat_map(|(name, state)| {
            state
                .history
                .into_iter()
                .filter(|h| h.at >= window.since && h.at <= window.until)
                // A paused schedule notes each slot it skips: not a fire worth a mark.
                .filter(|h| {
                    h.what == "enqueued"
                        || (h.what.starts_with("skipped") && h.what != "skipped: paused")
                })
                .map(move |h| Fire {
                    schedule: name.clone(),
                    slot: h.slot,
                    what: h.what,
                })
        })
        .collect();
    fires.sort_by_key(|f| f.slot);
    fires
}

fn totals(attempts: &[Attempt]) -> Totals {
    let mut t = Totals::default();
    for a in attempts {
        match a.outcome {
            Outcome::Done => t.done += 1,
            Outcome::Failed => t.failed += 1,
            Outcome::Retried => t.retried += 1,
            Outcome::Cancelled => t.cancelled += 1,
            Outcome::Running => t.running += 1,
            Outcome::Unknown => t.unknown += 1,
        }
        t.flags += a.attention.len();
        t.flags_answered += a.attention.iter().filter(|f| f.answered.is_some()).count();
        t.waited_secs += a.attention.iter().map(|f| f.waited_secs).sum::<f64>();
        t.verify_rounds += a.verify.len();
        if let Some(u) = &a.usage {
            t.input_tokens += u.input_tokens;
            t.output_tokens += u.output_tokens;
            if let Some(c) = u.cost_usd {
                t.cost_usd = Some(t.cost_usd.unwrap_or(0.0) + c);
            }
        }
    }
    t
}

/// Writes the page to `<home>/reports/report-<UTC time>.html` (private, atomic) and
/// returns its path.
pub fn write_to_home(home: &Home, report: &NightReport) -> anyhow::Result<PathBuf> {
    let dir = home.reports_dir();
    nightshift_store::fsutil::create_private_dir(&dir, 0o700)?;
    let path = dir.join(night::page_name(report.window.until));
    write_page(&path, report)?;
    Ok(path)
}

/// Renders the page and writes it to `path` (atomically, 0600: it holds agents' output).
pub fn write_page(path: &std::path::Path, report: &NightReport) -> anyhow::Result<()> {
    let page = html::render(report)
        .map_err(|e| anyhow::anyhow!("cannot render the report page: {e:#}"))?;
    nightshift_store::fsutil::write_atomic(path, page.as_bytes(), 0o600)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
