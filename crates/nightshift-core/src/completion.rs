//! Recognising the completion marker in an agent's output.
//!
//! Agent UIs echo the prompt, and a prompt often mentions the marker ("print NIGHTSHIFT_DONE
//! when finished"). So a line counts only when, after the terminal decoration is stripped,
//! it *starts* with the marker, and it is not a line of the prompt itself.

use std::collections::HashSet;

/// A completion marker found in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerHit {
    /// Text after the marker, if any: the agent's summary.
    pub summary: Option<String>,
}

/// Normalises a line for comparison: no ANSI escapes, no surrounding blanks, and no leading
/// UI decoration such as `⏺ `, `● `, `> ` or `│ `. A UI that pads its lines to the pane's
/// width and redraws without a newline (Aider) runs other text into the same line: the line
/// ends at the padding.
pub fn normalize(line: &str) -> String {
    let stripped = strip_ansi(line);
    stripped
        .trim()
        .trim_start_matches(|c: char| !c.is_alphanumeric() && c != '_')
        .split("   ")
        .next()
        .unwrap_or_default()
        .trim_end_matches(|c: char| c == '│' || c.is_whitespace())
        .to_string()
}

/// Removes terminal escape sequences. Text without control characters (most output) is
/// returned as it is, without running the terminal parser: output is read line by line.
/// A cursor move along the line (`ESC[nC`, `ESC[nG`) becomes a space: full-screen UIs such
/// as Claude Code's draw "retrying in 3s" as words with column jumps between them.
pub fn strip_ansi(text: &str) -> std::borrow::Cow<'_, str> {
    if is_plain(text) {
        return std::borrow::Cow::Borrowed(text);
    }
    let spaced = COLUMN_MOVE
        .as_ref()
        .map_or(std::borrow::Cow::Borrowed(text), |re| {
            re.replace_all(text, " ")
        });
    String::from_utf8_lossy(&strip_ansi_escapes::strip(spaced.as_ref()))
        .into_owned()
        .into()
}

static COLUMN_MOVE: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\x1b\[\d*[CG]").ok());

/// [`strip_ansi`] without the terminal parser or an allocation for what agent CLIs print
/// nearly always: text with CSI sequences (colours, cursor moves) in it. Writes into `buf`
/// (reused from line to line) and returns the stripped text; anything else (other escapes,
/// control characters) goes through [`strip_ansi`], so the result is always the same.
pub fn strip_ansi_into<'a>(text: &'a str, buf: &'a mut String) -> &'a str {
    if is_plain(text) {
        return text;
    }
    buf.clear();
    if !strip_csi_only(text, buf) {
        buf.clear();
        buf.push_str(&strip_ansi(text));
    }
    buf
}

/// Strips `text` into `buf` if its only controls are whole CSI sequences (`ESC [`, parameter
/// bytes, intermediate bytes, a final byte), reading `ESC[nC` and `ESC[nG` as a space as
/// [`strip_ansi`] does. `false` for anything else.
fn strip_csi_only(text: &str, buf: &mut String) -> bool {
    let b = text.as_bytes();
    let (mut i, mut from) = (0, 0);
    while i < b.len() {
        match b[i] {
            0x1b => {
                if b.get(i + 1) != Some(&b'[') {
                    return false;
                }
                let params = i
                    + 2
                    + b[i + 2..]
                        .iter()
                        .take_while(|c| (0x30..=0x3f).contains(*c))
                        .count();
                let end = params
                    + b[params..]
                        .iter()
                        .take_while(|c| (0x20..=0x2f).contains(*c))
                        .count();
                let Some(&last) = b.get(end).filter(|c| (0x40..=0x7e).contains(*c)) else {
                    return false;
                };
                buf.push_str(&text[from..i]);
                let column_move = params == end
                    && matches!(last, b'C' | b'G')
                    && b[i + 2..params].iter().all(u8::is_ascii_digit);
                if column_move {
                    buf.push(' ');
                }
                i = end + 1;
                from = i;
            }
            c if c < 0x20 || c == 0x7f => return false,
            // C1 controls (U+0080 to U+009F).
            0xc2 if b.get(i + 1).is_some_and(|c| (0x80..=0x9f).contains(c)) => return false,
            _ => i += 1,
        }
    }
    buf.push_str(&text[from..]);
    true
}

/// No escape sequences or control characters but tabs: the terminal parser would keep it
/// all.
pub fn is_plain(text: &str) -> bool {
    text.chars().all(|c| !c.is_control() || c == '\t')
}

/// The prompt's lines, normalised, for [`marker_in_line`].
pub fn prompt_lines(prompt: &str) -> HashSet<String> {
    prompt
        .lines()
        .map(normalize)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether `line` is a completion marker written by the agent.
pub fn marker_in_line(line: &str, marker: &str, prompt: &HashSet<String>) -> Option<MarkerHit> {
    // Most lines: plain text without the marker anywhere in it.
    if !line.contains(marker) && is_plain(line) {
        return None;
    }
    let line = normalize(line);
    let rest = line.strip_prefix(marker)?;
    // `NIGHTSHIFT_DONE`, `NIGHTSHIFT_DONE: summary` or `NIGHTSHIFT_DONE summary`, but not
    // `NIGHTSHIFT_DONE_SOON`.
    if rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
        return None;
    }
    if prompt.contains(&line) {
        return None;
    }
    let summary = rest.trim_start_matches(':').trim();
    Some(MarkerHit {
        summary: (!summary.is_empty()).then(|| summary.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_jumps_are_spaces() {
        let line = "\x1b[43B\u{273b}\x1b[3G500\x1b[7Goverloaded\x1b[18G\u{b7}\x1b[20Gretrying\x1b[29Gin\x1b[32G3s\x1b[1C\x1b[38;5;246mend";
        assert_eq!(
            strip_ansi(line),
            "\u{273b} 500 overloaded \u{b7} retrying in 3s end"
        );
    }

    const M: &str = "NIGHTSHIFT_DONE";

    #[test]
    fn plain_and_decorated_markers_count() {
        let p = prompt_lines("do the thing");
        assert_eq!(
            marker_in_line("NIGHTSHIFT_DONE", M, &p),
            Some(MarkerHit { summary: None })
        );
        assert_eq!(
            marker_in_line("\x1b[1m⏺ NIGHTSHIFT_DONE: fixed it\x1b[0m\r", M, &p),
            Some(MarkerHit {
                summary: Some("fixed it".into())
            })
        );
        assert!(marker_in_line("│    NIGHTSHIFT_DONE: boxed   │", M, &p).is_some());
    }

    #[test]
    fn mentions_are_not_markers() {
        let p = prompt_lines("x");
        assert_eq!(
            marker_in_line("When finished, print NIGHTSHIFT_DONE.", M, &p),
            None
        );
        assert_eq!(marker_in_line("NIGHTSHIFT_DONE_SOON", M, &p), None);
    }

    #[test]
    fn echoed_prompt_lines_are_not_markers() {
        let prompt =
            "Fix it.\n\nWhen you are finished, print this line:\nNIGHTSHIFT_DONE: all green\n";
        let p = prompt_lines(prompt);
        for line in prompt.lines() {
            assert_eq!(marker_in_line(line, M, &p), None, "echo of {line:?}");
            assert_eq!(
                marker_in_line(&format!("> {line}"), M, &p),
                None,
                "quoted echo of {line:?}"
            );
        }
        // The agent's own, different marker line still counts.
        assert!(marker_in_line("NIGHTSHIFT_DONE: fixed in 3 commits", M, &p).is_some());
        // Aider's last redraw: the marker padded to the width, then its reply again.
        let redrawn = "\x1b[38;5;33mNIGHTSHIFT_DONE: nothing needed changing\x1b[0m                    \x1b[38;5;33mI checked the code.\x1b[0m   ";
        assert_eq!(
            marker_in_line(redrawn, M, &p)
                .and_then(|h| h.summary)
                .as_deref(),
            Some("nothing needed changing")
        );
    }
}
