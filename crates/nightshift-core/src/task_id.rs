//! Task ids: the one rule that every way in checks (`add`, files dropped into the queue,
//! schedules, triggers, the dashboard's `n`), and a valid id to suggest for a bad one.
//!
//! An id becomes a file and folder name (`queue/<id>.md`, `runs/<id>/`), the git branch
//! `nightshift/<id>` and, mapped by `tmux::session_name`, a tmux session. The rule is an
//! allow list safe for all of them: letters and digits (any script), `-`, `_`, `.` and `@`
//! (schedule and trigger runs are `<name>@<time>`). On top of that, git's rules for a ref
//! component (`git help check-ref-format`): no `..`, no `.` at the start or end, no `.lock`
//! at the end, not `@` alone. The characters git refuses (space, `~ ^ : ? * [ \`, control
//! characters) are outside the allow list already. A leading `-` is refused too: the id
//! would read as an option on a command line.

use std::fmt;

/// Longest id, in bytes: file names allow 255 with room for `.error.txt`.
pub const MAX_LEN: usize = 200;

/// A suggested id is at most this long (in bytes; plus one character).
const SUGGESTION_LEN: usize = 48;

/// Why an id was refused, with a valid one to use instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    pub id: String,
    pub why: String,
    pub suggestion: String,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid task id: {}; use letters, digits, `-`, `_`, `.` and `@`; try `{}`",
            self.id.escape_debug(),
            self.why,
            self.suggestion
        )
    }
}

impl std::error::Error for InvalidId {}

/// Checks an id against the rule.
pub fn validate(id: &str) -> Result<(), InvalidId> {
    match problem(id) {
        None => Ok(()),
        Some(why) => Err(InvalidId {
            id: id.to_string(),
            why,
            suggestion: suggest(id),
        }),
    }
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')
}

fn problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("it is empty".into());
    }
    if id.len() > MAX_LEN {
        return Some(format!("it is longer than {MAX_LEN} bytes"));
    }
    if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        return Some(match c {
            ' ' => "it contains a space".into(),
            c => format!("it contains `{}`", c.escape_debug()),
        });
    }
    if let Some(c) = id.chars().next().filter(|c| matches!(c, '.' | '-')) {
        return Some(format!("it starts with `{c}`"));
    }
    if id.contains("..") {
        return Some("it contains `..`".into());
    }
    if id.ends_with('.') {
        return Some("it ends with `.`".into());
    }
    if id.ends_with(".lock") {
        return Some("it ends with `.lock`, which git reserves".into());
    }
    if id == "@" {
        return Some("`@` alone is a git revision".into());
    }
    None
}

/// A valid id made from any text (a bad id, a title): lower-case letters and digits, other
/// runs of characters become one `-`; `_`, `.` and `@` stay where they separate words.
/// Always passes [`validate`]; `task` when nothing is left.
pub fn suggest(text: &str) -> String {
    let separator = |c: char| matches!(c, '-' | '_' | '.' | '@');
    let mut out = String::new();
    for c in text.chars() {
        if out.len() >= SUGGESTION_LEN {
            break;
        }
        if c.is_alphanumeric() {
            // Some lower cases add a combining mark, which is not alphanumeric.
            out.extend(c.to_lowercase().filter(|l| l.is_alphanumeric()));
        } else if out.is_empty() || out.ends_with(separator) {
            continue;
        } else if matches!(c, '_' | '.' | '@') {
            out.push(c);
        } else {
            out.push('-');
        }
    }
    loop {
        let trimmed = out.trim_end_matches(separator);
        let trimmed = trimmed.strip_suffix(".lock").unwrap_or(trimmed);
        if trimmed.len() == out.len() {
            break;
        }
        out.truncate(trimmed.len());
    }
    if out.is_empty() {
        return "task".into();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ids_from_the_issue_are_refused_with_a_suggestion() {
        for (id, suggestion) in [
            ("My Task", "my-task"),
            ("fix:tmux", "fix-tmux"),
            ("a..b", "a.b"),
            ("bad id:1", "bad-id-1"),
        ] {
            let e = validate(id).unwrap_err();
            assert_eq!(e.suggestion, suggestion, "{id}");
            let message = e.to_string();
            assert!(message.starts_with(&format!("`{id}` is not a valid task id: it ")));
            assert!(
                message.ends_with(&format!("try `{suggestion}`")),
                "{message}"
            );
        }
    }

    #[test]
    fn ids_in_use_stay_valid() {
        for id in [
            "fix-login",
            "t0001",
            "nightly@20260302T020000Z",
            "v1.2_rc",
            "ünïcode-ok",
            "修复",
            "a",
        ] {
            assert_eq!(validate(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn git_and_path_hazards_are_refused() {
        for id in [
            "",
            ".hidden",
            "-rf",
            "../x",
            "a/b",
            "a\\b",
            "a\nb",
            "x\u{1b}[31m",
            "end.",
            "branch.lock",
            "@",
            "a~1",
            "a^",
            "a?",
            "a*",
            "a[b",
            "a@{1}",
            "tab\there",
            "right\u{202e}left",
        ] {
            let e = validate(id).unwrap_err();
            assert_eq!(validate(&e.suggestion), Ok(()), "{id:?} -> {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        assert!(validate(&"x".repeat(MAX_LEN + 1)).is_err());
        assert!(validate(&"x".repeat(MAX_LEN)).is_ok());
    }

    #[test]
    fn suggestions_read_like_titles() {
        assert_eq!(
            suggest("Fix the login redirect loop!"),
            "fix-the-login-redirect-loop"
        );
        assert_eq!(suggest("  Ünïcode -- ok "), "ünïcode-ok");
        assert_eq!(suggest("!!!"), "task");
        assert_eq!(suggest("x.lock"), "x");
        assert_eq!(suggest(".lock"), "lock");
        assert_eq!(suggest("İstanbul"), "istanbul");
        assert!(suggest(&"long words ".repeat(20)).len() <= SUGGESTION_LEN + 4);
    }

    /// The rule is never looser than git: every id it accepts makes a branch git accepts.
    #[test]
    #[allow(
        clippy::disallowed_methods,
        clippy::disallowed_types,
        reason = "a test holds the rule against git itself"
    )]
    fn accepted_ids_are_valid_git_branches() {
        use proptest::prelude::*;
        let config = ProptestConfig {
            cases: 64,
            ..ProptestConfig::default()
        };
        proptest!(config, |(id in "[a-zA-Z0-9._@:~^ {}/é-]{1,12}")| {
            if validate(&id).is_ok() {
                let branch = format!("refs/heads/nightshift/{id}");
                let ok = std::process::Command::new("git")
                    .args(["check-ref-format", &branch])
                    .status()
                    .map(|s| s.success());
                prop_assert!(matches!(ok, Ok(true)), "git refuses {branch}");
            }
            let suggestion = suggest(&id);
            prop_assert!(validate(&suggestion).is_ok(), "{id:?} -> {suggestion:?}");
        });
    }
}
