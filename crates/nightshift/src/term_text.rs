//! Text from tasks and agents (titles, summaries, reasons, error lines, ids, branches, screen
//! lines), made safe to print on a terminal. Anyone who can drop a task file can put escape
//! sequences in it: a title could rename the terminal window (OSC), paint it, clear it, or
//! reorder what is shown (bidi controls). Every human-facing output (`ls`, `show`,
//! `attention`, the dashboard) goes through here. `--json` output keeps every value exact,
//! through [`to_json`]: JSON escapes C0 controls, and it escapes the rest.

use std::fmt::Write;

/// One line for a table cell or a header: tabs and newlines become spaces. Without
/// `unicode`, every non-ASCII character becomes `?`.
pub fn clean_line(s: &str, unicode: bool) -> String {
    clean(s, unicode, false)
}

/// Text that may span lines (a report, an error): newlines and tabs stay.
pub fn clean_text(s: &str) -> String {
    clean(s, true, true)
}

/// Whole escape sequences go first (so no `[31m` is left behind), then any control
/// character left; the rest is what the terminal can show, one cell per character at most
/// where it can: emoji joiners go, and flags become their letters.
fn clean(s: &str, unicode: bool, keep_lines: bool) -> String {
    let stripped;
    let s = if s.contains(['\u{1b}', '\u{9b}', '\u{9d}', '\u{90}']) {
        // The same parser as typed prompts: it keeps the text after an unterminated string
        // (a terminal parser drops the rest of the text with it).
        stripped = nightshift_core::delivery::clean_typed(s).text;
        stripped.as_str()
    } else {
        s
    };
    s.chars()
        .filter_map(|c| match c {
            '\t' | '\n' if keep_lines => Some(c),
            '\t' | '\n' => Some(' '),
            '\u{200d}' | '\u{fe00}'..='\u{fe0f}' => None,
            '\u{1f1e6}'..='\u{1f1ff}' => char::from_u32(u32::from(c) - 0x1f1e6 + u32::from('A')),
            c if c.is_control() || is_bidi_control(c) => None,
            c if !unicode && !c.is_ascii() => Some('?'),
            c => Some(c),
        })
        .collect()
}

/// Pretty JSON whose values are exact, with the characters a terminal acts on that JSON
/// leaves raw (DEL, C1 controls, bidi controls) written as `\uXXXX` escapes. They can only be
/// inside strings (JSON's own syntax is ASCII), so the escaped text means the same.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let json = serde_json::to_string_pretty(value)?;
    let acted_on =
        |c: char| c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) || is_bidi_control(c);
    if !json.contains(acted_on) {
        return Ok(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if acted_on(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Characters that reorder the text around them when shown.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controls(s: &str) -> Vec<char> {
        s.chars()
            .filter(|c| c.is_control() && !matches!(c, '\n' | '\t'))
            .collect()
    }

    #[test]
    fn escape_sequences_go_whole() {
        let title = "\u{1b}]0;pwned\u{7}\u{1b}[31mRed\u{1b}[0m title";
        assert_eq!(clean_line(title, true), "Red title");
        assert_eq!(clean_text("a\u{1b}[2J\u{1b}[Hb\r\n\tc"), "ab\n\tc");
        assert_eq!(clean_line("a\u{1b}[2Jb\nc\td", true), "ab c d");
        // An OSC ended by ST instead of BEL, and a sequence cut off at the end.
        assert_eq!(
            clean_line("\u{1b}]8;;http://x\u{1b}\\link\u{1b}[3", true),
            "link"
        );
        // An unterminated string loses its introducer, not the rest of the title.
        assert_eq!(clean_line("a\u{1b}]0;b c", true), "a0;b c");
    }

    #[test]
    fn no_control_character_survives() {
        let all: String = (0u32..0x200).filter_map(char::from_u32).collect();
        assert_eq!(controls(&clean_text(&all)), Vec::<char>::new());
        assert_eq!(controls(&clean_line(&all, true)), Vec::<char>::new());
        assert!(!clean_line(&all, true).contains(['\n', '\t']));
        assert_eq!(clean_line("x\u{9b}31my\u{85}z", true), "x31myz");
        assert_eq!(clean_line("abc\u{202e}fed", true), "abcfed");
    }

    #[test]
    fn json_stays_exact_and_inert() -> serde_json::Result<()> {
        let value = serde_json::json!({ "title": "\u{1b}]0;x\u{7}a\u{9b}1m\u{7f}\u{202e}é\n" });
        let json = to_json(&value)?;
        assert_eq!(controls(&json), Vec::<char>::new(), "{json}");
        assert!(!json.contains('\u{202e}'), "{json}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json)?, value);
        assert!(json.contains('é'), "other text stays as it is: {json}");
        Ok(())
    }

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(clean_line("修复 ok", true), "修复 ok");
        assert_eq!(clean_line("Paris 🇫🇷 ❤\u{fe0f}", true), "Paris FR ❤");
        assert_eq!(clean_line("修复 tïtle", false), "?? t?tle");
        assert_eq!(clean_text("line 1\nline 2\n"), "line 1\nline 2\n");
    }
}
