//! Reading the screen: whether its last lines ask a person something.

use regex::Regex;

use super::detectors::{CHROME_RE, MENU_RE, OPTION_RE};
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
        })
        .or_else(|| {
            let last = tail.iter().rev().find(|l| !is_chrome(l))?;
            is_prose_question(last).then_some(last)
        })?;
    let context = &tail[tail.len().saturating_sub(5)..];
    Some(format!("{hit}\n  {}", context.join("\n  ")))
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
