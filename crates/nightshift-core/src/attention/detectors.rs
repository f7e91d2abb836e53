//! Reading output lines: the built-in patterns, error lines, and normalising repeats.

use std::sync::LazyLock;

use regex::Regex;

use super::strip_ansi;

pub(crate) const ERROR_PATTERNS: &[&str] = &[
    r"(?i)^\s*(error|fatal|panic(ked)?|exception|traceback)\b",
    r"(?i)^\s*thread '[^']*' panicked at\b",
    // `TypeError: ...`, `java.io.IOException: ...`
    r"^\s*[\w.$]*(Error|Exception):\s",
    // Compiler style: `src/a.c:3:1: error: ...`; the space keeps `std::error::Error` out.
    r"(?i)\berror(\[[\w-]+\])?:\s",
    r"\bFAILED\b",
    r"^\s*FAIL\s",
    r"\bERROR\b",
    r"^\s*npm ERR!",
    r"(?i): command not found\s*$",
];

/// Prompts any CLI may show.
pub(crate) const WAITING_PATTERNS: &[&str] = &[
    // Still unanswered: nothing typed after it.
    r"(?i)(\(y/n\)|\[y/n\]|\(yes/no\)|\[yes/no\])\s*[:?]?\s*$",
    // The highlighted item of a menu.
    r"^[❯›▸▶➤]\s*\d+[.)]\s+\S",
    r"(?i)^>\s*1[.)]\s+(yes|no|allow|approve|proceed|continue)\b",
    r"(?i)\bdo you want to\b.*\?$",
    r"(?i)\bwhat do you want to do\?",
    r"(?i)\bpress (enter|return|any key) to continue\b",
    r"(?i)^(allow|approve)\b.*\?$",
    r"(?i)\bwould you like to (run|make|apply|proceed|allow)\b",
];

/// Prompts of particular agent CLIs, by program name (what their screens say; see
/// shared/research/orchestrators.md §2.6). They add to the generic ones.
pub(crate) const AGENT_WAITING_PATTERNS: &[(&str, &[&str])] = &[
    (
        "claude",
        &[
            r"(?i)\bdo you trust the files in this folder\b",
            r"(?i)\btrust this folder\b",
            r"(?i)\bis this a project you created or one you trust\b",
            r"(?i)\bstop and wait for (the )?limit to reset\b",
            // Esc fires no hook; this line is all there is.
            r"(?i)\binterrupted\b.*\bwhat should claude do instead\b",
            r"(?i)\benter to (select|confirm)\b.*\besc to cancel\b",
        ],
    ),
    (
        "codex",
        &[
            r"(?i)\bpress enter to confirm or esc to cancel\b",
            r"(?i)\ballow command\?",
            r"(?i)\benter to submit answer\b",
            r"(?i)\bopen documentation url for more info\b",
            // The folder-trust dialog (per git root) and the one for hooks not yet trusted.
            r"(?i)\btrust this folder\? codex can\b",
            r"(?i)^hooks need review$",
            // A turn that ended on an error (API limits, 500s after the retries, an
            // interrupt) leaves a `■` line, and no hook fires.
            r"^■ \S",
            // The usage limit's message wraps in narrow panes; its end names the reset.
            r"(?i)\btry again at \d{1,2}:\d{2}\s*[ap]m\.$",
        ],
    ),
    (
        "aider",
        &[r"(?i)\(y\)es/\(n\)o", r"(?i)\(d\)on't ask again"],
    ),
    // Gemini CLI 0.61: the approval box (`Allow execution of [Shell]?` over `● 1. Allow
    // once`), the folder-trust dialog, and the daily-quota dialog (`Usage limit reached
    // for all Pro models.` over `● 1. Keep trying`), which fires no hook. The first two are
    // older versions' approval.
    (
        "gemini",
        &[
            r"(?i)\byes, allow once\b",
            r"(?i)\bwaiting for user confirmation\b",
            r"(?i)\ballow execution of\b.*\?",
            r"(?i)^●?\s*1[.)]\s+allow once\b",
            r"(?i)\bdo you trust the files in this folder\b",
            r"(?i)\busage limit reached for\b",
            r"(?i)^●?\s*1[.)]\s+keep trying\b",
        ],
    ),
];

/// The built-in prompt patterns of an agent CLI, found by its program's file name
/// (`/usr/local/bin/claude` → Claude Code's); none for programs not known.
pub fn agent_waiting_patterns(program: &str) -> Vec<Regex> {
    let name = std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    AGENT_WAITING_PATTERNS
        .iter()
        .find(|(agent, _)| *agent == name)
        .map(|(_, patterns)| compile(patterns))
        .unwrap_or_default()
}

/// Benign mentions of errors, cut from a line before the error patterns are tried.
pub(crate) const BENIGN: &[&str] = &[
    r#"(?i)["']?[\w.-]*(error|fail)[\w.-]*["']?\s*[:=]\s*((null|nil|none|false|0)\b|\[\]|\{\}|""|'')"#,
    r"(?i)\b(0|no|zero|without)\s+(errors?|failures?|failed)\b",
];

/// Status and input lines agent UIs keep below their last message.
pub(crate) const CHROME: &[&str] = &[
    r"(?i)for shortcuts|shift\+tab|auto-accept|bypass permissions|context left|esc to (interrupt|cancel)|\? for help|/help for help",
    r"^[>❯›]\s",
    // Claude Code under its last message: `✻ Worked for 3s · done 12:36 PM`, the effort
    // level, tmux advice.
    r"^[✻✳✶✢✽*·]\s*\w+ for \d+(\.\d+)?\s*[hms]\b",
    r"(?i)·\s*/effort\s*$|\bfocus-events\b",
    // Codex's status line: model (and effort) · folder · session title.
    r"^[\w.:-]+( [\w-]+)? · [/~]",
    // Aider: its token report after each reply, and its input prompt (`diff>`, `ask>`).
    r"^Tokens: \S+ sent, \S+ received\.",
    r"^[\w-]+( [\w-]+)?>$",
];

pub(crate) const ANSWERS: &str = r"(?i)^[❯›▸▶➤>●]?\s*1[.)]\s+(yes|no|allow|approve|proceed|continue|accept|ok|always|deny|reject|cancel|stop|wait|trust|don't)\b";
pub(crate) const MENU_ITEM_2: &str = r"^[❯›▸▶➤>●]?\s*2[.)]\s+\S";

/// Compiles built-in patterns. They are constants (a test checks that all compile), so one
/// that did not would be a bug to fix here, not an error to report at run time.
pub(crate) fn compile(patterns: &[&str]) -> Vec<Regex> {
    patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()
}

pub(crate) static BENIGN_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| compile(BENIGN));
pub(crate) static CHROME_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| compile(CHROME));
pub(crate) static MENU_RE: LazyLock<Vec<Regex>> =
    LazyLock::new(|| compile(&[ANSWERS, MENU_ITEM_2]));
/// Any numbered choice, highlighted or not: `❯ 1. Yes`, `  2. No`.
pub(crate) static OPTION_RE: LazyLock<Vec<Regex>> =
    LazyLock::new(|| compile(&[r"^[❯›▸▶➤>]?\s*\d+[.)]\s+\S"]));
/// A numbered option, highlighted or not, with its number.
pub(crate) static NUMBERED_RE: LazyLock<Vec<Regex>> =
    LazyLock::new(|| compile(&[r"^[❯›▸▶➤>]?\s*(\d{1,2})[.)]\s+\S"]));
/// A tool's generic first error line, shared by every failing command.
pub(crate) static EXIT_CODE_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    compile(&[r"(?i)^(error:\s*)?(exit(ed)?( with)? (code|status)|exit code:?)\s*-?\d+\.?$"])
});
pub(crate) static NORM_RE: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    compile(&[
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?",
        r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b",
        r#"(/private)?/var/folders/[^/\s]+/[^/\s]+/[TC]/[^/\s:'"]+|(/private)?/(var/)?tmp/[^/\s:'"]+"#,
        r"\b0[xX][0-9a-fA-F]+\b",
        r"\b[0-9a-fA-F]{7,}\b",
        r"\b\d+(\.\d+)*",
    ])
});

/// Normalises a line for repeat counting: no ANSI, trimmed, with numbers, hex, timestamps and
/// temp paths masked, so the same error at another time or place compares equal.
pub fn normalize(line: &str) -> String {
    let mut s = strip_ansi(line).trim().to_string();
    let masks = ["<time>", "<time>", "<tmp>", "<hex>", "", "N"];
    for (i, (re, mask)) in NORM_RE.iter().zip(masks).enumerate() {
        s = if i == 4 {
            // Long hex runs (hashes) need a digit, so words like `deadbeef` survive.
            re.replace_all(&s, |c: &regex::Captures| {
                let run = &c[0];
                if run.bytes().all(|b| b.is_ascii_digit()) {
                    "N".to_string()
                } else if run.bytes().any(|b| b.is_ascii_digit()) {
                    "<hex>".to_string()
                } else {
                    run.to_string()
                }
            })
            .into_owned()
        } else {
            re.replace_all(&s, mask).into_owned()
        };
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The longest error fingerprint kept, in characters.
pub const MAX_FINGERPRINT: usize = 200;

/// The fingerprint of a failed tool's error text, for counting repeats: its first line that
/// says something (a bare `Exit code 1`, which every failing command shares, is skipped
/// when a line follows), normalised and cut to [`MAX_FINGERPRINT`]. `None` for no text.
pub fn error_fingerprint(error: &str) -> Option<String> {
    let mut lines = error.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next()?;
    let line = if EXIT_CODE_RE.iter().any(|re| re.is_match(first)) {
        lines.next().unwrap_or(first)
    } else {
        first
    };
    let mut print = normalize(line);
    super::truncate(&mut print, MAX_FINGERPRINT);
    Some(print)
}

pub(crate) fn is_error_line(text: &str, patterns: &[Regex]) -> bool {
    // Removing benign phrases only takes matches away: a line no pattern matches as it is
    // (nearly every line) needs no cleaning.
    if !patterns.iter().any(|re| re.is_match(text)) {
        return false;
    }
    let mut cleaned = text.to_string();
    for re in BENIGN_RE.iter() {
        cleaned = re.replace_all(&cleaned, " ").into_owned();
    }
    patterns.iter().any(|re| re.is_match(&cleaned))
}
