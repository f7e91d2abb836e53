//! Made-up models for the dashboard's tests: a fixed clock, so snapshots do not move.

use std::time::Duration;

use jiff::Timestamp;

use super::model::{Group, Header, Link, Model, Row};

pub(super) fn now() -> Timestamp {
    "2026-11-24T03:00:00Z"
        .parse()
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ago(secs: u64) -> Option<Timestamp> {
    now().checked_sub(Duration::from_secs(secs)).ok()
}

fn row(id: &str, title: &str, group: Group, status: &str) -> Row {
    let running = matches!(group, Group::Attention | Group::Running);
    Row {
        id: id.into(),
        title: title.into(),
        group,
        status: status.into(),
        failed: status == "failed",
        agent: "claude".into(),
        branch: running.then(|| format!("nightshift/{id}")),
        since: None,
        last_commit: None,
        in_git: running,
        last_line: None,
        session: running.then(|| crate::tmux::session_name(id)),
        detail: None,
    }
}

fn up(used: usize, max: usize) -> Link {
    Link::Up {
        started_at: ago(6 * 3600 + 120).unwrap_or(now()),
        max_agents: max,
        slots_used: used,
    }
}

pub(super) fn empty() -> Model {
    Model {
        header: Header {
            link: up(0, 2),
            queued: 0,
            paused: false,
            next_schedule: None,
            daemon_command: "nightshift daemon".into(),
            config_error: None,
        },
        rows: Vec::new(),
        queue_dir: "/home/ada/.nightshift/queue".into(),
        now: now(),
    }
}

/// Three agents running (one waiting for an answer), two queued, two finished.
pub(super) fn busy() -> Model {
    let mut ask = row(
        "fix-login",
        "Fix the login redirect loop",
        Group::Attention,
        "waiting",
    );
    ask.since = ago(14 * 60 + 5);
    ask.last_commit = ago(9 * 60);
    ask.detail = Some("Shall I delete the old migrations? (y/n)".into());
    ask.last_line = ask.detail.clone();

    let mut port = row(
        "port-parser",
        "Port the parser to nom 8",
        Group::Running,
        "running",
    );
    port.agent = "codex".into();
    port.since = ago(72 * 60 + 30);
    port.last_commit = ago(3 * 60 + 2);
    port.last_line = Some("test result: ok. 214 passed; 0 failed".into());

    let mut deps = row("bump-deps", "Bump dependencies", Group::Running, "checking");
    deps.since = ago(5 * 60 + 40);
    deps.last_line = Some("Running cargo test --workspace".into());

    let mut docs = row(
        "write-docs",
        "Document the config file",
        Group::Queued,
        "queued",
    );
    docs.since = ago(20 * 60);
    let mut notes = row(
        "release-notes",
        "Draft the release notes for 0.4",
        Group::Queued,
        "blocked",
    );
    notes.since = ago(20 * 60);
    notes.detail = Some("waits for bump-deps".into());

    let mut metrics = row(
        "add-metrics",
        "Expose Prometheus metrics",
        Group::Finished,
        "done",
    );
    metrics.since = ago(3600);
    metrics.detail = Some("signalled done: added /metrics".into());
    let mut failure = row(
        "old-failure",
        "Speed up the integration tests",
        Group::Finished,
        "failed",
    );
    failure.since = ago(3 * 3600);
    failure.detail = Some("checks failed after 2 rounds: cargo test".into());

    Model {
        header: Header {
            link: up(3, 3),
            queued: 2,
            paused: false,
            next_schedule: Some(("nightly".into(), now() + Duration::from_secs(150 * 60))),
            daemon_command: "nightshift daemon".into(),
            config_error: None,
        },
        rows: vec![ask, port, deps, docs, notes, metrics, failure],
        queue_dir: "/home/ada/.nightshift/queue".into(),
        now: now(),
    }
}

/// Two agents need a person, the queue is paused, and the daemon is gone.
pub(super) fn attention() -> Model {
    let mut m = busy();
    let mut loop_ = row(
        "migrate-db",
        "Migrate the sessions table",
        Group::Attention,
        "errors",
    );
    loop_.since = ago(41 * 60);
    loop_.last_commit = None;
    loop_.detail = Some("error[E0308]: mismatched types (5 times in 2m)".into());
    m.rows.insert(1, loop_);
    m.header.paused = true;
    m.header.link = Link::Down {
        why: "not running".into(),
    };
    m
}
