//! Reading the screen: whether its last lines ask a person something.

use regex::Regex;

use super::detectors::{CHROME_RE, MENU_RE, NUMBERED_RE, OPTION_RE};
use super::strip_ansi;

/// How many non-empty screen lines, from the bottom, may hold a prompt or menu.
pub(crate) const SCREEN_TAIL: usize = 8;

/// The evidence for a question on the screen, if its last lines ask one.
pub(crate) fn question(screen: &str, patterns: &[Regex]) -> Option<String> {
    let lines: Vec<String> = strip_ansi(screen)
        .lines()
        .map(|l| {
            l.trim_matches(|c: char| c.is_whitespace() || "│┃║╭╮╰╯─━═┌┐└┘├┤┬┴┼╔╗╚╝▌▐█|".contains(c))
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(SCREEN_TAIL)..];
    // A prompt still waits only if nothing but chrome follows it, or it heads a menu (a
    // dialog stays on screen until answered). A line prompt that was answered has the
    // answer and more output below it.
    let open = |i: usize| {
        let after = &tail[i + 1..];
        after.iter().all(|l| is_chrome(l))
            || after
                .iter()
                .any(|l| OPTION_RE.iter().any(|re| re.is_match(l)))
    };
    let hit = tail
        .iter()
        .enumerate()
        .find(|(i, l)| patterns.iter().any(|re| re.is_match(l)) && open(*i))
        .map(|(_, l)| l)
        .or_else(|| {
            let (one, two) = (MENU_RE.first()?, MENU_RE.get(1)?);
            tail.windows(2)
                .find(|w| one.is_match(&w[0]) && two.is_match(&w[1]))
                .map(|w| &w[0])
        });
    // A plain menu may be longer than the tail: it is looked for on the whole screen.
    if hit.is_none()
        && let Some(menu) = plain_menu(&lines)
    {
        return Some(menu);
    }
    let hit = hit.or_else(|| {
        let last = tail.iter().rev().find(|l| !is_chrome(l))?;
        is_prose_question(last).then_some(last)
    })?;
    let context = &tail[tail.len().saturating_sub(5)..];
    Some(format!("{hit}\n  {}", context.join("\n  ")))
}

/// The most options a plain menu may have, and the most lines one option may wrap onto.
const MAX_OPTIONS: usize = 12;
const MAX_WRAP: usize = 2;

/// A plain numbered menu at the end of `lines` (trimmed, non-empty): a question, then
/// options `1.` to `n.` (n ≥ 2, in order; each may wrap onto a line or two), and nothing
/// but chrome after the last. The evidence: the question and its options. A numbered list
/// with no question before it (a summary of work done) is not a menu.
pub(crate) fn plain_menu<S: AsRef<str>>(lines: &[S]) -> Option<String> {
    let end = lines.iter().rposition(|l| !is_chrome(l.as_ref()))? + 1;
    let body: Vec<&str> = lines[..end].iter().map(AsRef::as_ref).collect();
    let number = |l: &str| -> Option<usize> {
        let caps = NUMBERED_RE.first()?.captures(l)?;
        caps.get(1)?.as_str().parse().ok()
    };
    // Walk up from the last line: options counting down to 1, with at most MAX_WRAP
    // other lines under each.
    let mut expect: Option<usize> = None;
    let mut wrapped = 0;
    let mut i = body.len();
    while i > 0 {
        i -= 1;
        let line = body[i];
        match (number(line), expect) {
            (Some(n), None) if (2..=MAX_OPTIONS).contains(&n) => {
                expect = Some(n - 1);
                wrapped = 0;
            }
            (Some(n), Some(want)) if n == want && n >= 1 => {
                if n == 1 {
                    let question = body[..i].last()?;
                    if !is_menu_question(question) {
                        return None;
                    }
                    let options = &body[i..];
                    return Some(format!("{question}\n  {}", options.join("\n  ")));
                }
                expect = Some(n - 1);
                wrapped = 0;
            }
            // Below the last option, only the option's own wrapped text: not a finished
            // sentence (a remark), nor a tool's or the agent's next output (`⏺ Bash(ls)`).
            (None, None)
                if line.ends_with(['.', '!'])
                    || !line.chars().next().is_some_and(char::is_alphanumeric) =>
            {
                return None;
            }
            (None, _) if wrapped < MAX_WRAP => wrapped += 1,
            _ => return None,
        }
    }
    None
}

/// The line heading a menu: a question to the user (`Which one?`, or `Which one? Pick:`).
fn is_menu_question(line: &str) -> bool {
    let text = line.trim_matches(|c: char| c.is_whitespace() || "*_#⏺●•".contains(c));
    let asked = match text.strip_suffix(':') {
        Some(head) => head.rfind('?').map(|i| &head[..=i]),
        None => Some(text),
    };
    asked.is_some_and(is_prose_question)
}

pub(crate) fn is_chrome(line: &str) -> bool {
    !line.chars().any(char::is_alphabetic) || CHROME_RE.iter().any(|re| re.is_match(line))
}

/// A sentence to the user ending in `?`, not a line of code.
pub(crate) fn is_prose_question(line: &str) -> bool {
    let text = line.trim_start_matches(['⏺', '●', '•', '✻', ' ']);
    let body = text.trim_end_matches(['*', '"', ' ']);
    const CODE: &[&str] = &[
        "==", "!=", "?;", "?.", "?)", ";", "{", "}", "=>", "->", "::", "()", "&&", "||", " = ",
    ];
    body.ends_with('?')
        && !text.starts_with("//")
        && text.chars().next().is_some_and(char::is_alphabetic)
        && text.split_whitespace().count() >= 3
        && !CODE.iter().any(|c| text.contains(c))
}
