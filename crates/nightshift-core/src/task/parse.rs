//! Reading a task file: front matter and body into a [`Task`], or an error at its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{
    AttentionChanges, AttentionOverride, DurationField, DurationOrOff, Isolation, OneOrMany,
    REPORT_MARKER, ScalarText, Task, TaskError,
};

/// The front matter as written. Unknown fields are errors: a typo must not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    title: Option<String>,
    priority: Option<i64>,
    agent: Option<String>,
    workdir: Option<String>,
    repo: Option<String>,
    timeout: Option<DurationOrOff>,
    max_attempts: Option<u32>,
    depends_on: Option<OneOrMany>,
    env: Option<BTreeMap<String, ScalarText>>,
    attention: Option<AttentionChanges>,
    isolation: Option<Isolation>,
    base: Option<String>,
    setup: Option<OneOrMany>,
    verify: Option<OneOrMany>,
    verify_timeout: Option<DurationField>,
    verify_rounds: Option<u32>,
    resume: Option<bool>,
    requires: Option<OneOrMany>,
    host: Option<String>,
    push: Option<bool>,
    pr: Option<bool>,
    remote: Option<String>,
    not_before: Option<String>,
    continues: Option<String>,
}

/// The parts of a task file.
pub(crate) struct Split<'a> {
    /// The YAML text between the fences, if any.
    pub(crate) yaml: Option<&'a str>,
    /// 1-based line of the first YAML line in the file.
    pub(crate) yaml_first_line: u32,
    pub(crate) body: &'a str,
}

pub(crate) fn split_front_matter<'a>(path: &Path, text: &'a str) -> Result<Split<'a>, TaskError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = strip_fence_line(text, "---") else {
        return Ok(Split {
            yaml: None,
            yaml_first_line: 1,
            body: text,
        });
    };
    // Find the closing fence: a line that is exactly `---` or `...`.
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare == "..." {
            return Ok(Split {
                yaml: Some(&rest[..offset]),
                yaml_first_line: 2,
                body: &rest[offset + line.len()..],
            });
        }
        offset += line.len();
    }
    Err(TaskError::new(
        path,
        1,
        1,
        "front matter starts with `---` but has no closing `---` line",
    ))
}

/// If `text` starts with a line that is exactly `fence`, returns what follows that line.
fn strip_fence_line<'a>(text: &'a str, fence: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(fence)?;
    rest.strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))
}

/// Removes an appended run report, if any.
pub fn strip_report(body: &str) -> &str {
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        if line.trim_end() == REPORT_MARKER {
            return body[..offset].trim_end_matches(['\n', '\r']);
        }
        offset += line.len();
    }
    body
}

/// Parses a task file's text. `id` is the file stem; `path` is only used in errors; `home` is
/// the user's home directory, for `~/` workdirs (`None`: not known, so `~/` is an error).
pub fn parse(id: &str, path: &Path, text: &str, home: Option<&Path>) -> Result<Task, TaskError> {
    validate_id(id).map_err(|m| TaskError::new(path, 1, 1, m))?;
    let split = split_front_matter(path, text)?;
    let (front, field_lines) = match split.yaml {
        Some(yaml) if !yaml.trim().is_empty() => {
            let front: FrontMatter = from_front_matter(yaml).map_err(|e| {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line() as u32, l.column() as u32))
                    .unwrap_or((0, 1));
                TaskError::new(
                    path,
                    split.yaml_first_line + line.saturating_sub(1),
                    column.max(1),
                    yaml_message(&e.to_string()),
                )
            })?;
            (front, key_lines(yaml, split.yaml_first_line))
        }
        _ => (FrontMatter::default(), BTreeMap::new()),
    };
    let at = |field: &str| field_lines.get(field).copied().unwrap_or(1);
    let body = strip_report(split.body);

    let title = match front.title {
        Some(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => first_heading(body).unwrap_or_else(|| id.to_string()),
    };
    let positive = |field: &str, value: Option<DurationField>| -> Result<_, TaskError> {
        let d = match value {
            None => return Ok(None),
            Some(DurationField::Seconds(s)) => Duration::from_secs(s),
            Some(DurationField::Text(t)) => crate::duration::parse(&t)
                .map_err(|m| TaskError::new(path, at(field), 1, format!("{field}: {m}")))?,
        };
        if d == Duration::ZERO {
            return Err(TaskError::new(
                path,
                at(field),
                1,
                format!("{field}: must be greater than zero"),
            ));
        }
        Ok(Some(d))
    };
    // `off` switches config.toml's default limit off for this task.
    let timeout = match front.timeout.map(super::duration_or_off).transpose() {
        Err(m) => {
            return Err(TaskError::new(
                path,
                at("timeout"),
                1,
                format!("timeout: {m}"),
            ));
        }
        Ok(Some(Some(d))) if d.is_zero() => {
            return Err(TaskError::new(
                path,
                at("timeout"),
                1,
                "timeout: must be greater than zero (or `off`)",
            ));
        }
        Ok(t) => t,
    };
    let verify_timeout = positive("verify_timeout", front.verify_timeout)?;
    let commands = |field: &str, value: Option<OneOrMany>| -> Result<Vec<String>, TaskError> {
        let list = match value {
            None => Vec::new(),
            Some(OneOrMany::One(c)) => vec![c],
            Some(OneOrMany::Many(cs)) => cs,
        };
        if list.iter().any(|c| c.trim().is_empty()) {
            return Err(TaskError::new(
                path,
                at(field),
                1,
                format!("{field}: a command must not be empty"),
            ));
        }
        Ok(list)
    };
    let setup = commands("setup", front.setup)?;
    let verify = commands("verify", front.verify)?;
    if let Some(base) = &front.base
        && (base.trim().is_empty() || base.starts_with('-'))
    {
        return Err(TaskError::new(
            path,
            at("base"),
            1,
            "base: expected a branch, tag or commit",
        ));
    }
    if front.max_attempts == Some(0) {
        return Err(TaskError::new(
            path,
            at("max_attempts"),
            1,
            "max_attempts: must be at least 1",
        ));
    }
    let depends_on = match front.depends_on {
        None => Vec::new(),
        Some(OneOrMany::One(d)) => vec![d],
        Some(OneOrMany::Many(ds)) => ds,
    };
    for dep in &depends_on {
        if dep == id {
            return Err(TaskError::new(
                path,
                at("depends_on"),
                1,
                "depends_on: a task cannot depend on itself",
            ));
        }
        validate_id(dep)
            .map_err(|m| TaskError::new(path, at("depends_on"), 1, format!("depends_on: {m}")))?;
    }
    let workdir_line = front.workdir.as_ref().map(|_| at("workdir"));
    let mut env = BTreeMap::new();
    for (key, value) in front.env.unwrap_or_default() {
        validate_env_name(&key)
            .map_err(|m| TaskError::new(path, at("env"), 1, format!("env: {m}")))?;
        let value = value.into_string();
        // The environment cannot carry a NUL: refused here, not at the start. The value
        // may be a secret, so only the name is shown.
        if value.contains('\0') {
            let message = format!("env: the value of `{key}` holds a NUL byte");
            return Err(TaskError::new(path, at("env"), 1, message));
        }
        env.insert(key, value);
    }
    let workdir = match front.workdir {
        None => None,
        Some(w) => Some(
            resolve_workdir(&w, home)
                .map_err(|m| TaskError::new(path, at("workdir"), 1, format!("workdir: {m}")))?,
        ),
    };
    let repo = match front.repo {
        None => None,
        Some(r) => Some(
            check_repo(&r, workdir_line, front.isolation)
                .map_err(|m| TaskError::new(path, at("repo"), repo_column(text, at("repo")), m))?,
        ),
    };
    let attention = match front.attention {
        None => AttentionOverride::default(),
        Some(a) => a
            .resolve()
            .map_err(|m| TaskError::new(path, at("attention"), 1, format!("attention: {m}")))?,
    };
    let requires = match front.requires {
        None => Vec::new(),
        Some(OneOrMany::One(l)) => vec![l],
        Some(OneOrMany::Many(ls)) => ls,
    };
    for label in &requires {
        crate::labels::validate_label(label)
            .map_err(|m| TaskError::new(path, at("requires"), 1, format!("requires: {m}")))?;
    }
    let host = front.host.map(|h| h.trim().to_string());
    if let Some(h) = &host {
        crate::labels::validate_host(h)
            .map_err(|m| TaskError::new(path, at("host"), 1, format!("host: {m}")))?;
    }
    let remote = front.remote.map(|r| r.trim().to_string());
    if let Some(r) = &remote {
        crate::landing::check_remote_name(r)
            .map_err(|m| TaskError::new(path, at("remote"), 1, format!("remote: {m}")))?;
    }
    let not_before = front
        .not_before
        .map(|t| super::NotBefore::parse(&t))
        .transpose()
        .map_err(|m| TaskError::new(path, at("not_before"), 1, format!("not_before: {m}")))?;
    let continues = front.continues.map(|c| c.trim().to_string());
    if let Some(earlier) = &continues {
        let bad = |m: String| TaskError::new(path, at("continues"), 1, format!("continues: {m}"));
        if earlier == id {
            return Err(bad("a task cannot follow up itself".into()));
        }
        validate_id(earlier).map_err(bad)?;
    }
    let agent = front.agent.map(|a| a.trim().to_string());
    if agent.as_deref() == Some("") {
        return Err(TaskError::new(
            path,
            at("agent"),
            1,
            "agent: must not be empty",
        ));
    }

    Ok(Task {
        id: id.to_string(),
        title,
        priority: front.priority.unwrap_or(0),
        agent,
        workdir,
        repo,
        timeout,
        max_attempts: front.max_attempts,
        isolation: front.isolation,
        base: front.base,
        setup,
        verify,
        verify_timeout,
        verify_rounds: front.verify_rounds,
        resume: front.resume,
        not_before,
        continues,
        requires,
        host,
        landing: crate::landing::LandingChoice {
            push: front.push,
            pr: front.pr,
            remote,
        },
        depends_on,
        env,
        attention,
        prompt: body.to_string(),
        field_lines,
    })
}

/// Reads front matter. It is a few dozen keys, so serde-saphyr's general-purpose budget
/// (250,000 nodes) is far too loose: an anchor bomb took seconds to reach it. These limits
/// stop anchor bombs and deep nesting within milliseconds, with an error at their line.
pub fn from_front_matter<T: serde::de::DeserializeOwned>(
    yaml: &str,
) -> Result<T, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 16,
            max_nodes: 10_000,
            max_events: 50_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
        },
    };
    serde_saphyr::from_str_with_options(yaml, options)
}

/// serde-saphyr renders a source snippet after the first line; keep only the message, since
/// the location is reported separately.
fn yaml_message(full: &str) -> String {
    let first = full.lines().next().unwrap_or(full).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // A leading "line X column Y:" is relative to the front matter, not the file.
    let message = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((at, message)) if at.contains(" column ") => message,
        _ => first,
    };
    if message.starts_with("budget breached") {
        format!("too complex for a task's front matter (anchors or nesting?): {message}")
    } else {
        message.to_string()
    }
}

/// Line numbers (in the file) of top-level keys of the front matter.
fn key_lines(yaml: &str, first_line: u32) -> BTreeMap<String, u32> {
    let mut lines = BTreeMap::new();
    for (i, line) in yaml.lines().enumerate() {
        if line.starts_with([' ', '\t', '#', '-']) {
            continue;
        }
        if let Some((key, _)) = line.split_once(':') {
            let key = key.trim().trim_matches(['"', '\'']);
            if !key.is_empty() {
                lines
                    .entry(key.to_string())
                    .or_insert(first_line + i as u32);
            }
        }
    }
    lines
}

fn first_heading(body: &str) -> Option<String> {
    body.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix('#')?;
        let title = rest.trim_start_matches('#').trim();
        (!title.is_empty()).then(|| title.to_string())
    })
}

/// Task ids are file stems, folder names, tmux sessions and git branches: see
/// [`crate::task_id`] for the rule.
pub fn validate_id(id: &str) -> Result<(), String> {
    crate::task_id::validate(id).map_err(|e| e.to_string())
}

fn validate_env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("`{name}` is not a valid environment variable name"));
    }
    if name.starts_with("NIGHTSHIFT_") {
        return Err(format!("`{name}` is reserved for nightshift"));
    }
    Ok(())
}

/// A `repo:` value, trimmed, or why it is refused. It cannot go with `workdir:` (which
/// place would the agent work in?) nor with `isolation: none` (a remote has no checkout to
/// work in place).
fn check_repo(
    raw: &str,
    workdir_line: Option<u32>,
    isolation: Option<Isolation>,
) -> Result<String, String> {
    let url = raw.trim();
    crate::repo_url::validate(url).map_err(|m| format!("repo: {m}"))?;
    if let Some(line) = workdir_line {
        return Err(format!(
            "repo: cannot be given together with `workdir:` (line {line}); a repo task works in a worktree of the repository's mirror, so remove one of them"
        ));
    }
    if isolation == Some(Isolation::None) {
        return Err(
            "repo: needs its own worktree; `isolation: none` cannot go with `repo:`".into(),
        );
    }
    Ok(url.to_string())
}

/// The column of the value of the key on `line` (1-based; 1 when not found).
fn repo_column(text: &str, line: u32) -> u32 {
    let Some(l) = text.lines().nth(line.saturating_sub(1) as usize) else {
        return 1;
    };
    let Some((key, value)) = l.split_once(':') else {
        return 1;
    };
    let spaces = value.len() - value.trim_start().len();
    (key.chars().count() + 1 + spaces + 1) as u32
}

/// Workdirs must be absolute (or start with `~/`): a hand-dropped file has no meaningful
/// current directory.
fn resolve_workdir(raw: &str, home: Option<&Path>) -> Result<PathBuf, String> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("~/") {
        let home = home.ok_or("`~` used but HOME is not set")?;
        return Ok(home.join(rest));
    }
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(format!(
            "`{raw}` is relative; use an absolute path (nightshift add fills in the current directory)"
        ));
    }
    Ok(path)
}
