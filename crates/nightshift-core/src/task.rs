//! A task file: optional YAML front matter, then the prompt, verbatim.
//!
//! Parsing is pure: it takes the file's text and returns a [`Task`] or a [`TaskError`] that
//! names the file, line and column. Semantic checks that need the configuration (does the
//! agent exist?) happen later, but use [`Task::field_line`] to point at the offending line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The line that starts the run report nightshift appends to a finished task file.
/// Everything from this line on is not part of the prompt, so a retried task does not
/// feed its old report to the agent.
pub const REPORT_MARKER: &str = "<!-- nightshift:report -->";

/// A parsed, syntactically valid task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The file stem: unique in the home.
    pub id: String,
    pub title: String,
    /// Higher runs first.
    pub priority: i64,
    pub agent: Option<String>,
    pub workdir: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub max_attempts: Option<u32>,
    pub depends_on: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// This task's changes to the `[attention]` settings.
    pub attention: AttentionOverride,
    /// `worktree` (own branch and worktree) or `none` (in place); `None`: the config's.
    pub isolation: Option<Isolation>,
    /// What the worktree's branch starts from (default: the repository's HEAD).
    pub base: Option<String>,
    /// Shell commands run in a new worktree before the agent starts.
    pub setup: Vec<String>,
    /// Acceptance checks: shell commands run when the agent signals done.
    pub verify: Vec<String>,
    pub verify_timeout: Option<Duration>,
    /// How many times a failed check goes back to the agent before the task fails.
    pub verify_rounds: Option<u32>,
    /// Resume the agent's own session when its tmux session vanished (`None`: the default).
    pub resume: Option<bool>,
    /// The body, byte for byte, without the front matter and without an appended report.
    pub prompt: String,
    /// 1-based line of each front-matter key in the file, for error messages.
    field_lines: BTreeMap<String, u32>,
}

impl Task {
    /// The line of a front-matter field, or 1 when the field is absent.
    pub fn field_line(&self, field: &str) -> u32 {
        self.field_lines.get(field).copied().unwrap_or(1)
    }
}

/// What is wrong with a task file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct TaskError {
    pub path: PathBuf,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl TaskError {
    pub fn new(path: &Path, line: u32, column: u32, message: impl Into<String>) -> Self {
        TaskError {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// The front matter as written. Unknown fields are errors: a typo must not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    title: Option<String>,
    priority: Option<i64>,
    agent: Option<String>,
    workdir: Option<String>,
    timeout: Option<DurationField>,
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
}

/// Where a task's agent works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Its own git worktree on branch `nightshift/<id>`: tasks on one repository run side by
    /// side.
    Worktree,
    /// In the workdir itself: tasks on one repository run one at a time.
    None,
}

/// `attention:` in the front matter, and `[agents.NAME.attention]` in config.toml: changes to
/// the `[attention]` settings, with the same keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionChanges {
    no_commits: Option<DurationOrOff>,
    silence: Option<DurationOrOff>,
    repeated_errors: Option<u32>,
    waiting: Option<bool>,
    /// Added to the built-in and configured ones.
    waiting_patterns: Option<Vec<String>>,
    policy: Option<BTreeMap<crate::attention::Signal, crate::Policy>>,
}

impl AttentionChanges {
    /// Checks the durations, patterns and policies.
    pub fn resolve(self) -> Result<AttentionOverride, String> {
        let waiting_patterns = self.waiting_patterns.unwrap_or_default();
        for p in &waiting_patterns {
            regex::Regex::new(p).map_err(|e| format!("invalid waiting pattern `{p}`: {e}"))?;
        }
        let policy = self.policy.unwrap_or_default();
        for (signal, p) in &policy {
            signal.check_policy(*p)?;
        }
        Ok(AttentionOverride {
            no_commits: self.no_commits.map(duration_or_off).transpose()?,
            silence: self.silence.map(duration_or_off).transpose()?,
            repeated_errors: self.repeated_errors,
            waiting: self.waiting,
            waiting_patterns,
            policy,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationOrOff {
    Off(bool),
    Seconds(u64),
    Text(String),
}

/// A task's changes to the attention settings; `None` keeps the configured value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionOverride {
    /// `Some(None)` switches the signal off for this task.
    pub no_commits: Option<Option<Duration>>,
    pub silence: Option<Option<Duration>>,
    pub repeated_errors: Option<u32>,
    pub waiting: Option<bool>,
    /// Regular expressions (already checked) for more screen prompts.
    pub waiting_patterns: Vec<String>,
    pub policy: BTreeMap<crate::attention::Signal, crate::Policy>,
}

fn duration_or_off(value: DurationOrOff) -> Result<Option<Duration>, String> {
    match value {
        DurationOrOff::Off(false) => Ok(None),
        DurationOrOff::Off(true) => Err("expected a duration or `off`".into()),
        DurationOrOff::Seconds(s) => Ok(Some(Duration::from_secs(s))),
        DurationOrOff::Text(t) if t.trim() == "off" => Ok(None),
        DurationOrOff::Text(t) => parse_duration(&t).map(Some),
    }
}

/// `timeout: 30m`, `timeout: "1h 30m"` or `timeout: 90` (seconds).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationField {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Environment values may be written as numbers or booleans; they reach the agent as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScalarText {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl ScalarText {
    fn into_string(self) -> String {
        match self {
            ScalarText::Text(s) => s,
            ScalarText::Int(i) => i.to_string(),
            ScalarText::Float(f) => f.to_string(),
            ScalarText::Bool(b) => b.to_string(),
        }
    }
}

/// The parts of a task file.
struct Split<'a> {
    /// The YAML text between the fences, if any.
    yaml: Option<&'a str>,
    /// 1-based line of the first YAML line in the file.
    yaml_first_line: u32,
    body: &'a str,
}

fn split_front_matter<'a>(path: &Path, text: &'a str) -> Result<Split<'a>, TaskError> {
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

/// Splits the top-level front-matter entries named in `keys` off a task file: returns their
/// YAML, and the file without them. Schedules use this for their own fields; the rest stays
/// a task template.
pub fn take_front_keys(
    path: &Path,
    text: &str,
    keys: &[&str],
) -> Result<(String, String), TaskError> {
    let split = split_front_matter(path, text)?;
    let Some(yaml) = split.yaml else {
        return Ok((String::new(), text.to_string()));
    };
    let (mut taken, mut kept) = (String::new(), String::new());
    let mut taking = false;
    for line in yaml.split_inclusive('\n') {
        // A new top-level entry starts at column 0 (not a list item or a comment).
        let top = !line.starts_with([' ', '\t', '-', '#']) && !line.trim().is_empty();
        if top {
            let key = line.split(':').next().unwrap_or("").trim();
            taking = keys.contains(&key);
        }
        if taking {
            taken.push_str(line);
        } else {
            kept.push_str(line);
        }
    }
    Ok((taken, format!("---\n{kept}---\n{}", split.body)))
}

/// Adds task ids to a task file's `depends_on` (which may be a single id or a list).
pub fn add_dependencies(text: &str, ids: &[String]) -> Result<String, String> {
    let path = Path::new("task.md");
    let (deps_yaml, rest) =
        take_front_keys(path, text, &["depends_on"]).map_err(|e| e.to_string())?;
    let mut deps: Vec<String> = if deps_yaml.trim().is_empty() {
        Vec::new()
    } else {
        #[derive(Deserialize)]
        struct Deps {
            depends_on: OneOrMany,
        }
        match from_front_matter::<Deps>(&deps_yaml)
            .map_err(|e| e.to_string())?
            .depends_on
        {
            OneOrMany::One(d) => vec![d],
            OneOrMany::Many(ds) => ds,
        }
    };
    deps.extend(ids.iter().cloned());
    let mut yaml = String::from("depends_on:\n");
    for d in deps {
        let d = serde_json::to_string(&d).map_err(|e| e.to_string())?;
        yaml.push_str(&format!("  - {d}\n"));
    }
    let rest = rest
        .strip_prefix("---\n")
        .ok_or("the task has no front matter")?;
    Ok(format!("---\n{yaml}{rest}"))
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

/// Parses a task file's text. `id` is the file stem; `path` is only used in errors.
pub fn parse(id: &str, path: &Path, text: &str) -> Result<Task, TaskError> {
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
            Some(DurationField::Text(t)) => parse_duration(&t)
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
    let timeout = positive("timeout", front.timeout)?;
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
            resolve_workdir(&w)
                .map_err(|m| TaskError::new(path, at("workdir"), 1, format!("workdir: {m}")))?,
        ),
    };
    let attention = match front.attention {
        None => AttentionOverride::default(),
        Some(a) => a
            .resolve()
            .map_err(|m| TaskError::new(path, at("attention"), 1, format!("attention: {m}")))?,
    };
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
        timeout,
        max_attempts: front.max_attempts,
        isolation: front.isolation,
        base: front.base,
        setup,
        verify,
        verify_timeout,
        verify_rounds: front.verify_rounds,
        resume: front.resume,
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

/// Workdirs must be absolute (or start with `~/`): a hand-dropped file has no meaningful
/// current directory.
fn resolve_workdir(raw: &str) -> Result<PathBuf, String> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("~/") {
        let home = std::env::var_os("HOME").ok_or("`~` used but HOME is not set")?;
        return Ok(PathBuf::from(home).join(rest));
    }
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(format!(
            "`{raw}` is relative; use an absolute path (nightshift add fills in the current directory)"
        ));
    }
    Ok(path)
}

/// Parses `90s`, `30m`, `1h 30m`, `2h`, `500ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 90s, 30m, 1h 30m)"))?;
    Duration::try_from(signed).map_err(|_| format!("`{text}` is negative"))
}

/// Renders a duration the way users write it: `1h 30m`, `45s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// Sets top-level front-matter fields in a task file's text, keeping everything else
/// (comments included) as written. Values must already be valid YAML scalars or flow
/// sequences; use [`yaml_string`] for text.
pub fn set_front_matter_fields(text: &str, fields: &[(&str, String)]) -> String {
    if fields.is_empty() {
        return text.to_string();
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (yaml, body) = match split_front_matter(Path::new(""), text) {
        Ok(Split {
            yaml: Some(yaml),
            body,
            ..
        }) => (yaml, body),
        _ => ("", text),
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut skipping = false;
    for line in yaml.lines() {
        let top_level = !line.starts_with([' ', '\t', '-']) && !line.trim().is_empty();
        if top_level {
            let key = line.split_once(':').map(|(k, _)| k.trim()).unwrap_or("");
            skipping = fields.iter().any(|(f, _)| *f == key);
        }
        if !skipping {
            kept.push(line);
        }
    }
    let mut out = String::from("---\n");
    for (key, value) in fields {
        out.push_str(&format!("{key}: {value}\n"));
    }
    for line in kept {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("---\n");
    out.push_str(body);
    out
}

/// A YAML scalar for arbitrary text: a JSON string is valid YAML.
pub fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.title)
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Task {
        match parse("t1", Path::new("queue/t1.md"), text) {
            Ok(t) => t,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn parse_err(text: &str) -> TaskError {
        match parse("t1", Path::new("queue/t1.md"), text) {
            Ok(t) => panic!("expected an error, got {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn no_front_matter_keeps_body_verbatim_and_takes_title_from_heading() {
        let text = "# Fix the build\n\nDo it.\n\n## Acceptance criteria\n- green\n";
        let t = parse_ok(text);
        assert_eq!(t.title, "Fix the build");
        assert_eq!(t.prompt, text);
        assert_eq!(t.priority, 0);
        assert!(t.agent.is_none());
    }

    #[test]
    fn title_falls_back_to_id() {
        assert_eq!(parse_ok("just do it\n").title, "t1");
    }

    #[test]
    fn all_fields_parse() {
        let t = parse_ok(
            "---\ntitle: Hello\npriority: 5\nagent: claude\nworkdir: /tmp/x\ntimeout: 1h 30m\n\
             max_attempts: 3\ndepends_on: [a, b]\nenv:\n  FOO: bar\n  N: 3\n---\nbody\n",
        );
        assert_eq!(t.title, "Hello");
        assert_eq!(t.priority, 5);
        assert_eq!(t.agent.as_deref(), Some("claude"));
        assert_eq!(t.workdir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(t.timeout, Some(Duration::from_secs(5400)));
        assert_eq!(t.max_attempts, Some(3));
        assert_eq!(t.depends_on, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(t.env.get("N").map(String::as_str), Some("3"));
        assert_eq!(t.prompt, "body\n");
        assert_eq!(t.field_line("agent"), 4);
    }

    #[test]
    fn attention_overrides() {
        let t = parse_ok(
            "---\nattention:\n  no_commits: off\n  silence: 45m\n  policy:\n    silence: restart\n---\nx",
        );
        assert_eq!(t.attention.no_commits, Some(None));
        assert_eq!(
            t.attention.silence,
            Some(Some(Duration::from_secs(45 * 60)))
        );
        assert_eq!(t.attention.repeated_errors, None);
        assert_eq!(
            t.attention.policy.get(&crate::attention::Signal::Silence),
            Some(&crate::Policy::Restart)
        );
        let e = parse_err("---\nattention:\n  silense: 5m\n---\n");
        assert!(e.message.contains("silense"), "{e}");
    }

    #[test]
    fn single_dependency_and_numeric_timeout() {
        let t = parse_ok("---\ndepends_on: setup\ntimeout: 90\n---\nx");
        assert_eq!(t.depends_on, vec!["setup".to_string()]);
        assert_eq!(t.timeout, Some(Duration::from_secs(90)));
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let e = parse_err("---\ntitle: ok\npriorty: 3\n---\nbody");
        assert!(e.message.contains("priorty"), "{e}");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().starts_with("queue/t1.md:3:"), "{e}");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let e = parse_err("---\npriority: high\n---\nbody");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn unclosed_front_matter_is_an_error() {
        let e = parse_err("---\ntitle: x\nbody without fence\n");
        assert!(e.message.contains("closing"), "{e}");
    }

    #[test]
    fn bad_duration_and_relative_workdir_name_the_field() {
        let e = parse_err("---\ntimeout: soon\n---\n");
        assert!(e.message.starts_with("timeout:"), "{e}");
        assert_eq!(e.line, 2);
        let e = parse_err("---\ntitle: a\nworkdir: src\n---\n");
        assert!(e.message.starts_with("workdir:"), "{e}");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn an_env_value_with_a_nul_is_refused_without_showing_it() {
        let e = parse_err("---\nenv:\n  TOKEN: \"sec\\0ret\"\n---\n");
        assert!(e.message.contains("`TOKEN` holds a NUL byte"), "{e}");
        assert!(!e.to_string().contains("sec"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn reserved_env_and_self_dependency_are_rejected() {
        assert!(
            parse_err("---\nenv:\n  NIGHTSHIFT_HOME: x\n---\n")
                .message
                .contains("reserved")
        );
        assert!(
            parse_err("---\ndepends_on: t1\n---\n")
                .message
                .contains("itself")
        );
    }

    #[test]
    fn crlf_and_bom_and_dots_terminator() {
        let t = parse_ok("\u{feff}---\r\npriority: 2\r\n...\r\nbody\r\n");
        assert_eq!(t.priority, 2);
        assert_eq!(t.prompt, "body\r\n");
    }

    #[test]
    fn appended_report_is_not_part_of_the_prompt() {
        let text = format!("do it\n\n{REPORT_MARKER}\n## nightshift report\n| outcome | done |\n");
        assert_eq!(parse_ok(&text).prompt, "do it");
    }

    #[test]
    fn front_matter_not_on_first_line_is_body() {
        let t = parse_ok("\n---\npriority: 9\n---\n");
        assert_eq!(t.priority, 0);
    }

    #[test]
    fn hostile_ids_are_rejected() {
        assert!(validate_id("../x").is_err());
        assert!(validate_id(".hidden").is_err());
        assert!(validate_id("a\nb").is_err());
        // Schedule runs are named without `:` (git refuses it in a branch).
        assert!(validate_id("nightly@20261124T020000Z").is_ok());
        assert!(validate_id("nightly@2026-11-24T02:00Z").is_err());
    }

    #[test]
    fn set_fields_replaces_and_keeps_comments() {
        let text = "---\n# keep me\npriority: 1\nenv:\n  A: b\n---\nbody\n";
        let out = set_front_matter_fields(text, &[("priority", "7".into())]);
        assert_eq!(
            out,
            "---\npriority: 7\n# keep me\nenv:\n  A: b\n---\nbody\n"
        );
        let out = set_front_matter_fields("body only\n", &[("workdir", yaml_string("/a b"))]);
        assert_eq!(out, "---\nworkdir: \"/a b\"\n---\nbody only\n");
        assert_eq!(parse_ok(&out).workdir, Some(PathBuf::from("/a b")));
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format_duration(Duration::from_millis(40)), "40ms");
        assert!(parse_duration("-5s").is_err());
    }
}
