//! What the page shows of one attempt beyond its report: the branch's diff, the last
//! screen and the transcript's tail. Terminal escapes are stripped (`clean_text`); the page
//! escapes the rest.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use super::Attempt;
use crate::git::GitCommand;
use crate::run::{self, RunDir};
use crate::term_text::clean_text;

/// Diff lines shown per task, at most.
const DIFF_LINES: usize = 400;
/// Characters of one diff line, at most.
const LINE_CHARS: usize = 400;
/// Lines of the last screen and of the transcript's tail.
const TAIL_LINES: usize = 60;
/// Bytes read from the end of a transcript.
const TAIL_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Details {
    pub diff: Vec<DiffLine>,
    /// Lines left out of the diff.
    pub diff_capped: usize,
    /// Why there is no diff (no branch, the worktree is gone).
    pub diff_note: Option<String>,
    pub screen: String,
    pub transcript_tail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffLine {
    /// `add`, `del`, `hunk`, `file` or `ctx`: the page's colour.
    pub class: &'static str,
    pub text: String,
}

impl Details {
    pub fn read(a: &Attempt) -> Details {
        let dir = RunDir::new(&a.run_dir);
        let (diff, diff_capped, diff_note) = match diff_text(a) {
            Ok(text) => {
                let (lines, capped) = classify_diff(&text, DIFF_LINES);
                (lines, capped, None)
            }
            Err(note) => (Vec::new(), 0, Some(note)),
        };
        Details {
            diff,
            diff_capped,
            diff_note,
            screen: last_lines(
                &std::fs::read_to_string(dir.file(run::SCREEN)).unwrap_or_default(),
                TAIL_LINES,
            ),
            transcript_tail: last_lines(&tail(&dir.transcript(), TAIL_BYTES), TAIL_LINES),
        }
    }
}

/// `git diff base...branch` in the task's worktree.
fn diff_text(a: &Attempt) -> Result<String, String> {
    let (Some(branch), Some(base)) = (&a.branch, &a.base) else {
        return Err("no branch of its own: the task ran in its workdir".into());
    };
    let dir = a
        .worktree
        .as_deref()
        .filter(|w| w.is_dir())
        .ok_or("the worktree is gone (cleaned)")?;
    GitCommand::in_dir(dir)
        .args([
            "diff",
            "--no-color",
            "--no-ext-diff",
            &format!("{base}...{branch}"),
            "--",
        ])
        .stdout_blocking()
        .ok_or_else(|| format!("git diff {base}...{branch} failed"))
}

/// The diff's lines with their colour class, at most `max`; the count left out.
fn classify_diff(text: &str, max: usize) -> (Vec<DiffLine>, usize) {
    let all: Vec<&str> = text.lines().collect();
    let lines = all
        .iter()
        .take(max)
        .map(|l| {
            let class =
                if l.starts_with("diff --git") || l.starts_with("+++") || l.starts_with("---") {
                    "file"
                } else if l.starts_with("@@") {
                    "hunk"
                } else if l.starts_with('+') {
                    "add"
                } else if l.starts_with('-') {
                    "del"
                } else {
                    "ctx"
                };
            let clean = clean_text(l);
            DiffLine {
                class,
                text: clean.chars().take(LINE_CHARS).collect(),
            }
        })
        .collect();
    (lines, all.len().saturating_sub(max))
}

/// The last `max` bytes of a file, lossily decoded (a cut character at the start is dropped).
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(max))).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if f.take(max).read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last `n` non-blank-trailing lines, escapes and control characters stripped.
fn last_lines(text: &str, n: usize) -> String {
    let clean = clean_text(&nightshift_core::completion::strip_ansi(text));
    let lines: Vec<&str> = clean.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lines_are_classed_and_capped() {
        let text = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n same\n";
        let (lines, capped) = classify_diff(text, 6);
        let classes: Vec<&str> = lines.iter().map(|l| l.class).collect();
        assert_eq!(classes, ["file", "file", "file", "hunk", "del", "add"]);
        assert_eq!(capped, 1);
    }

    #[test]
    fn tails_lose_their_escapes() {
        let text = "one\n\u{1b}[31mred\u{1b}[0m\n\u{1b}]0;title\u{7}three\n\n";
        assert_eq!(last_lines(text, 2), "red\nthree");
    }
}
