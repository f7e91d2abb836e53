//! Event triggers: a task template in `triggers/<name>.md` that enqueues a run when a git hook
//! reports a commit (or a merge or checkout), when files under given paths change, or by hand
//! (`nightshift trigger fire NAME`). Bursts are debounced and coalesced into one run.
//!
//! An event is a small file in `triggers/.events/`, written by `nightshift trigger event`
//! (run by the git hook) or `trigger fire`: durable while the daemon is down, and seen by it
//! through a file notification.

pub mod githook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::schedule::plan::Overlap;
use nightshift_core::duration::parse as parse_duration;
use nightshift_core::task::take_front_keys;

const KEYS: &[&str] = &["debounce", "overlap", "watch"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Front {
    debounce: Option<String>,
    overlap: Option<Overlap>,
    watch: Option<Vec<String>>,
}

/// A trigger's template and policies.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub debounce: Duration,
    pub overlap: Overlap,
    /// Folders or files whose changes fire it.
    pub watch: Vec<PathBuf>,
    /// A task file without the trigger's own fields.
    pub template: String,
}

/// What happened, for one run of a trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub trigger: String,
    /// `post-commit`, `post-merge`, `post-checkout`, `files` or `manual`.
    pub kind: String,
    pub repo: Option<PathBuf>,
    pub commit: Option<String>,
    /// The nightshift task whose agent caused it (a commit made inside a pane).
    pub by_task: Option<String>,
    pub at: Timestamp,
}

pub fn triggers_dir(home: &crate::home::Home) -> PathBuf {
    home.root().join("triggers")
}

pub fn events_dir(home: &crate::home::Home) -> PathBuf {
    triggers_dir(home).join(".events")
}

/// Parses `triggers/<name>.md`.
pub fn parse(name: &str, path: &Path, text: &str) -> Result<Trigger, String> {
    let (front, template): (Front, String) =
        crate::templates::split("trigger", name, path, text, KEYS)?;
    let debounce = match front.debounce.as_deref() {
        None => Duration::from_secs(5),
        Some(d) => parse_duration(d).map_err(|e| format!("{}: debounce: {e}", path.display()))?,
    };
    Ok(Trigger {
        name: name.to_string(),
        debounce,
        overlap: front.overlap.unwrap_or(Overlap::QueueOne),
        watch: front
            .watch
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        template,
    })
}

/// Reads every trigger file; bad ones come back as errors by name.
pub fn read_all(dir: &Path) -> (Vec<Trigger>, BTreeMap<String, String>) {
    crate::templates::read_dir(dir, parse)
}

/// Records an event for the daemon.
pub fn record(home: &crate::home::Home, event: &EventRecord) -> std::io::Result<PathBuf> {
    let dir = events_dir(home);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "{}-{}-{}.json",
        event.trigger,
        event.at.as_nanosecond(),
        std::process::id()
    ));
    let json = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    nightshift_store::fsutil::write_new_atomic(&path, &json, 0o600)?;
    Ok(path)
}

/// The task file for a run: the template with the event in the task's environment
/// (`TRIGGER_NAME`, `TRIGGER_EVENT`, `TRIGGER_COMMIT`, `TRIGGER_REPO`).
pub fn task_text(trigger: &Trigger, event: &EventRecord) -> Result<String, String> {
    let path = Path::new("trigger.md");
    let (env_yaml, rest) =
        take_front_keys(path, &trigger.template, &["env"]).map_err(|e| e.to_string())?;
    let mut env: BTreeMap<String, String> = if env_yaml.trim().is_empty() {
        BTreeMap::new()
    } else {
        #[derive(Deserialize)]
        struct Env {
            env: BTreeMap<String, String>,
        }
        serde_saphyr::from_str::<Env>(&env_yaml)
            .map_err(|e| e.to_string())?
            .env
    };
    env.insert("TRIGGER_NAME".into(), trigger.name.clone());
    env.insert("TRIGGER_EVENT".into(), event.kind.clone());
    if let Some(c) = &event.commit {
        env.insert("TRIGGER_COMMIT".into(), c.clone());
    }
    if let Some(r) = &event.repo {
        env.insert("TRIGGER_REPO".into(), r.to_string_lossy().into_owned());
    }
    // JSON strings are valid YAML scalars: no quoting rules to get wrong.
    let mut yaml = String::from("env:\n");
    for (k, v) in &env {
        let v = serde_json::to_string(v).map_err(|e| e.to_string())?;
        yaml.push_str(&format!("  {k}: {v}\n"));
    }
    let rest = rest
        .strip_prefix("---\n")
        .ok_or("the template has no front matter")?;
    Ok(format!("---\n{yaml}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_template_and_its_task() {
        let text =
            "---\ntitle: Review\ndebounce: 2s\nenv:\n  MODE: strict\n---\nReview the commit.\n";
        let t = parse("review", Path::new("review.md"), text).unwrap();
        assert_eq!(t.debounce, Duration::from_secs(2));
        assert_eq!(t.overlap, Overlap::QueueOne);
        let event = EventRecord {
            trigger: "review".into(),
            kind: "post-commit".into(),
            repo: Some("/r".into()),
            commit: Some("abc123".into()),
            by_task: None,
            at: Timestamp::UNIX_EPOCH,
        };
        let text = task_text(&t, &event).unwrap();
        let task =
            nightshift_core::task::parse("review@1", Path::new("t.md"), &text, None).unwrap();
        assert_eq!(task.env["MODE"], "strict");
        assert_eq!(task.env["TRIGGER_COMMIT"], "abc123");
        assert_eq!(task.env["TRIGGER_EVENT"], "post-commit");
        assert_eq!(task.title, "Review");
        assert!(parse("x", Path::new("x.md"), "---\ndebounce: soon\n---\nx\n").is_err());
    }
}
