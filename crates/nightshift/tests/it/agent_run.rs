//! What every real-agent test reads and waits for: the panes, the run's records, and a wait
//! that fails with the panes, the hooks and the stand-in's request log.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Env;
use crate::standin::FakeApi;

const POLL: Duration = Duration::from_millis(25);

/// Polls `cond` up to `deadline`; on timeout fails with the panes, the hooks, the API's
/// request log and `more` (the harness adds the daemon's diagnostics when it drops).
pub(crate) fn wait_agent(
    env: &Env,
    api: &FakeApi,
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
    more: impl Fn() -> String,
) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > deadline {
            panic!(
                "timed out after {deadline:?} waiting until {what}\n\
                 --- pane ---\n{}\n--- hooks ---\n{}\n--- fake API requests ---\n{}\n{}",
                pane_screen(env),
                all_hooks(env),
                api.log(),
                more()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Where the task was filed, once it was.
pub(crate) fn finished(env: &Env, id: &str) -> Option<&'static str> {
    ["done", "failed"]
        .into_iter()
        .find(|s| env.task_path(s, id).is_file())
}

/// The visible screens of every task pane, for failure messages.
pub(crate) fn pane_screen(env: &Env) -> String {
    env.sessions()
        .iter()
        .map(|s| {
            let id = s.strip_prefix("ns-").unwrap_or(s);
            format!("[{s}]\n{}", pane_screen_of(env, id))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn pane_screen_of(env: &Env, id: &str) -> String {
    let target = format!("=ns-{id}:");
    let out = env.tmux(&["capture-pane", "-p", "-t", &target]);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    } else {
        format!("(no pane: {})", String::from_utf8_lossy(&out.stderr).trim())
    }
}

/// Every run's hook events, for failure messages.
pub(crate) fn all_hooks(env: &Env) -> String {
    let mut out = String::new();
    for entry in walk(&env.home.join("runs")) {
        if entry.ends_with("hooks.jsonl") {
            out.push_str(&format!(
                "{}:\n{}\n",
                entry.display(),
                fs::read_to_string(&entry).unwrap_or_default()
            ));
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The run's attention flags now.
pub(crate) fn flags(env: &Env, id: &str) -> Vec<Value> {
    fs::read(env.run_dir(id, 1).join("attention.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["flags"].as_array().cloned())
        .unwrap_or_default()
}

/// The run's logged events of one kind (`attention`, `attention-cleared`, …).
pub(crate) fn events(env: &Env, id: &str, kind: &str) -> Vec<String> {
    fs::read_to_string(env.run_dir(id, 1).join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == kind)
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The hook events Claude Code reported for the run.
pub(crate) fn hook_events(env: &Env, id: &str) -> Vec<String> {
    fs::read_to_string(env.run_dir(id, 1).join("hooks.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect()
}
