//! The test agent's script: the `@verb` lines of a prompt, parsed into steps.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Say(String),
    Sleep(Duration),
    Write(PathBuf, String),
    Append(PathBuf, String),
    Commit(String),
    Ask(String),
    /// Text and how many times to print it.
    Error(String, u32),
    Hang,
    Exit(i32),
    /// Attempt number and exit code.
    ExitOnAttempt(u32, i32),
    /// Attempt number and how long to sleep on that attempt only.
    SleepOnAttempt(u32, Duration),
    Marker(Option<String>),
    /// `--fail` flag and summary.
    Done(bool, Option<String>),
    Record(PathBuf),
    Stamp(PathBuf),
    /// Variable name and output path.
    Env(String, PathBuf),
    /// Reports a hook event the way Claude Code does: `nightshift hook` with its JSON on
    /// stdin. Event name and the rest of the line.
    Hook(String, String),
}

/// A script line that cannot run, e.g. "unknown step '@foo'", plus its
/// 1-based prompt line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScriptError {
    pub(super) what: String,
    pub(super) line: usize,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on prompt line {}", self.what, self.line)
    }
}

pub(super) fn parse_script(prompt: &str) -> Result<Vec<Step>, ScriptError> {
    let lines = prompt.lines().enumerate();
    let steps = lines.filter_map(|(i, raw)| Some((i + 1, raw.trim().strip_prefix('@')?)));
    steps.map(|(line, body)| parse_step(body, line)).collect()
}

fn parse_step(body: &str, line: usize) -> Result<Step, ScriptError> {
    let (verb, rest) = split_word(body);
    let bad = |why: &str| ScriptError {
        what: format!("bad step '@{verb}' ({why})"),
        line,
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let code = |s: &str| s.parse().map_err(|_| bad("expected an integer exit code"));
    let path = |p: &str| match p {
        "" => Err(bad("missing PATH")),
        p => Ok(PathBuf::from(p)),
    };
    let single_path = || match words[..] {
        [p] => path(p),
        _ => Err(bad("expected exactly one PATH")),
    };
    let text = rest.to_string();
    Ok(match verb {
        "say" => Step::Say(text),
        "sleep" => Step::Sleep(parse_duration(rest).ok_or(bad("expected e.g. 250ms, 2s, 1m, 1h"))?),
        "write" => Step::Write(path(split_word(rest).0)?, split_word(rest).1.to_string()),
        "append" => Step::Append(path(split_word(rest).0)?, split_word(rest).1.to_string()),
        // git refuses an empty commit message, so reject it while parsing.
        "commit" if rest.is_empty() => return Err(bad("missing MESSAGE")),
        "commit" => Step::Commit(text),
        "ask" => Step::Ask(text),
        "error" => match split_repeat(rest) {
            (_, 0) => return Err(bad("repeat count must be at least 1")),
            (text, count) => Step::Error(text.to_string(), count),
        },
        "hang" if rest.is_empty() => Step::Hang,
        "exit" => Step::Exit(code(rest)?),
        "exit-on-attempt" => match words[..] {
            [n, c] => {
                let attempt = n.parse().map_err(|_| bad("expected an attempt number"))?;
                Step::ExitOnAttempt(attempt, code(c)?)
            }
            _ => return Err(bad("expected N CODE")),
        },
        "sleep-on-attempt" => match words[..] {
            [n, d] => {
                let attempt = n.parse().map_err(|_| bad("expected an attempt number"))?;
                let d = parse_duration(d).ok_or(bad("expected e.g. 250ms, 2s, 1m, 1h"))?;
                Step::SleepOnAttempt(attempt, d)
            }
            _ => return Err(bad("expected N DURATION")),
        },
        "marker" => Step::Marker(Some(text).filter(|t| !t.is_empty())),
        "done" => {
            let (fail, summary) = match split_word(rest) {
                ("--fail", summary) => (true, summary),
                _ => (false, rest),
            };
            let summary = Some(summary.to_string()).filter(|s| !s.is_empty());
            Step::Done(fail, summary)
        }
        "record" => Step::Record(single_path()?),
        "stamp" => Step::Stamp(single_path()?),
        "env" => match words[..] {
            [name, p] => Step::Env(name.to_string(), path(p)?),
            _ => return Err(bad("expected NAME PATH")),
        },
        "hook" if rest.is_empty() => return Err(bad("missing EVENT")),
        "hook" => Step::Hook(
            split_word(rest).0.to_string(),
            split_word(rest).1.to_string(),
        ),
        "hang" => return Err(bad("takes no arguments")),
        _ => {
            let what = format!("unknown step '@{verb}'");
            return Err(ScriptError { what, line });
        }
    })
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
pub(super) fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

/// Splits an optional trailing ` xN` repeat count off `@error` text.
pub(super) fn split_repeat(rest: &str) -> (&str, u32) {
    if let Some((text, last)) = rest.rsplit_once(char::is_whitespace)
        && let Some(digits) = last.strip_prefix('x')
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(count) = digits.parse()
    {
        return (text.trim_end(), count);
    }
    (rest, 1)
}

/// Parses `250ms`, `2s`, `1m`, `1h` (whole numbers only).
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}
