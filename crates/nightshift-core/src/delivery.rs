//! What a prompt may hold for each way it reaches an agent: typed text must not steer the
//! terminal, and an argument must fit the kernel's limits.

/// Text made safe to type into a pane, and how many control sequences were taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    pub text: String,
    pub removed: usize,
}

impl Cleaned {
    /// For the report, e.g. "the typed prompt had 2 control sequences removed"; `None` when
    /// the text went through unchanged.
    pub fn note(&self, what: &str) -> Option<String> {
        removed_note(what, self.removed)
    }
}

/// "`what` had N control sequences removed", or `None` for none.
pub fn removed_note(what: &str, removed: usize) -> Option<String> {
    match removed {
        0 => None,
        1 => Some(format!("{what} had 1 control sequence removed")),
        n => Some(format!("{what} had {n} control sequences removed")),
    }
}

/// Removes everything a terminal or an agent UI would act on rather than show: escape
/// sequences (among them the paste-end `ESC [ 2 0 1 ~`, which would end a bracketed paste
/// early and turn the rest into keystrokes), C0 controls other than `\n` and `\t`, DEL and
/// C1 controls. CR and CRLF line ends become `\n` (a paste sends every line end as CR anyway)
/// and do not count as removals.
///
/// Hand-written rather than a terminal parser (vte, strip-ansi-escapes): those swallow the
/// rest of the text after an unterminated OSC and cannot say what they removed.
pub fn clean_typed(text: &str) -> Cleaned {
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    let mut strings = StringEnds::default();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        i += c.len_utf8();
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {
                i += usize::from(text[i..].starts_with('\n'));
                out.push('\n');
            }
            '\u{1b}' => {
                removed += 1;
                i = escape_end(text, i, &mut strings);
            }
            c if c.is_control() => removed += 1,
            c => out.push(c),
        }
    }
    Cleaned { text: out, removed }
}

/// Where the escape sequence whose ESC ends at `at` ends. A malformed sequence ends at the
/// first byte that cannot belong to it, which is kept.
fn escape_end(text: &str, at: usize, strings: &mut StringEnds) -> usize {
    let bytes = text.as_bytes();
    let run = |from: usize, range: std::ops::RangeInclusive<u8>| {
        from + bytes[from..]
            .iter()
            .take_while(|b| range.contains(b))
            .count()
    };
    let final_at = |from: usize, range: std::ops::RangeInclusive<u8>| {
        from + usize::from(bytes.get(from).is_some_and(|b| range.contains(b)))
    };
    match bytes.get(at) {
        // CSI: parameters and intermediates, then one final byte.
        Some(b'[') => final_at(run(at + 1, 0x20..=0x3f), 0x40..=0x7e),
        // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \). Unterminated, only the
        // introducer goes: its text stays, harmless without the ESC.
        Some(b']' | b'P' | b'X' | b'^' | b'_') => strings.end_after(text, at + 1).unwrap_or(at + 1),
        // Two-character escapes (`ESC c`, `ESC 7`, `ESC ( B`): intermediates, then a final.
        Some(0x20..=0x7e) => final_at(run(at, 0x20..=0x2f), 0x30..=0x7e),
        _ => at,
    }
}

/// Finds string terminators, remembering the last search so that many unterminated strings
/// in one text cost one scan, not one each.
#[derive(Default)]
struct StringEnds {
    /// A search from this offset found the first terminator here (start, end), or none.
    last: Option<(usize, Option<(usize, usize)>)>,
}

impl StringEnds {
    /// The end of the first BEL or ST at or after `from`.
    fn end_after(&mut self, text: &str, from: usize) -> Option<usize> {
        if let Some((searched, found)) = self.last
            && from >= searched
            && found.is_none_or(|(start, _)| from <= start)
        {
            return found.map(|(_, end)| end);
        }
        let rest = &text[from..];
        let bel = rest.find('\u{7}').map(|i| (from + i, from + i + 1));
        let st = rest.find("\u{1b}\\").map(|i| (from + i, from + i + 2));
        let found = bel.into_iter().chain(st).min();
        self.last = Some((from, found));
        found.map(|(_, end)| end)
    }
}

/// Linux's limit on one argument or environment string, its NUL included
/// (`MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// The most argv and environment may take together at `execve`, as Linux computes it from
/// the stack limit (`fs/exec.c`): a quarter of the soft stack limit, at most 3/4 of the
/// default 8 MiB stack limit and at least 128 KiB. `None` is an unlimited stack.
pub fn exec_args_limit(stack_limit: Option<u64>) -> usize {
    const FLOOR: u64 = 32 * 4096;
    const CEILING: u64 = 8 * 1024 * 1024 / 4 * 3;
    let quarter = stack_limit.map_or(CEILING, |s| s / 4);
    quarter.clamp(FLOOR, CEILING) as usize
}

/// Which kind of string broke a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecString {
    Argument,
    Environment,
}

impl std::fmt::Display for ExecString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecString::Argument => "an argument",
            ExecString::Environment => "an environment variable",
        })
    }
}

/// Why an argv and environment cannot be executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecLimit {
    #[error("{kind} holds a NUL byte (at byte {at} of {len}), which cannot be passed to a program")]
    Nul {
        kind: ExecString,
        at: usize,
        len: usize,
    },
    #[error("{kind} is {len} bytes; the system allows at most {max} per argument")]
    TooLong {
        kind: ExecString,
        len: usize,
        max: usize,
    },
    #[error("the arguments and environment take {total} bytes; the system allows at most {limit}")]
    TooBig { total: usize, limit: usize },
}

impl ExecLimit {
    /// Whether an environment variable, not an argument, broke the limit.
    pub fn in_environment(&self) -> bool {
        matches!(
            self,
            ExecLimit::Nul {
                kind: ExecString::Environment,
                ..
            } | ExecLimit::TooLong {
                kind: ExecString::Environment,
                ..
            }
        )
    }
}

/// Why an argv cannot be executed, before trying: a NUL byte (which would cut the argument
/// short), one string over [`MAX_ARG_STRLEN`], or the whole over `limit`. Each string costs
/// its bytes, its NUL and a pointer.
pub fn check_exec_size<'a>(
    argv: impl IntoIterator<Item = &'a str>,
    env: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Result<(), ExecLimit> {
    let mut total = 0usize;
    for (kind, s) in argv
        .into_iter()
        .map(|s| (ExecString::Argument, s))
        .chain(env.into_iter().map(|s| (ExecString::Environment, s)))
    {
        if let Some(at) = s.bytes().position(|b| b == 0) {
            return Err(ExecLimit::Nul {
                kind,
                at,
                len: s.len(),
            });
        }
        if s.len() + 1 > MAX_ARG_STRLEN {
            return Err(ExecLimit::TooLong {
                kind,
                len: s.len(),
                max: MAX_ARG_STRLEN - 1,
            });
        }
        total += s.len() + 1 + std::mem::size_of::<usize>();
    }
    if total > limit {
        return Err(ExecLimit::TooBig { total, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes_unchanged() {
        let text = "Fix the bug.\n\tindented, \"quoted\", $(shell) #{fmt} ünïcödé 🙂\n";
        let c = clean_typed(text);
        assert_eq!(c.text, text);
        assert_eq!(c.removed, 0);
        assert_eq!(c.note("the typed prompt"), None);
    }

    #[test]
    fn the_paste_end_sequence_is_removed() {
        let c = clean_typed("a\u{1b}[201~!touch pwned\nb\u{1b}[200~c");
        assert_eq!(c.text, "a!touch pwned\nbc");
        assert_eq!(c.removed, 2);
        assert_eq!(
            c.note("the typed prompt").as_deref(),
            Some("the typed prompt had 2 control sequences removed")
        );
    }

    #[test]
    fn escape_sequences_of_every_kind_go_whole() {
        let cases = [
            ("\u{1b}[1;31mred\u{1b}[0m", "red", 2),
            ("\u{1b}]0;title\u{7}x", "x", 1),
            (
                "\u{1b}]8;;http://e\u{1b}\\link\u{1b}]8;;\u{1b}\\",
                "link",
                2,
            ),
            ("\u{1b}Pq#0;2\u{1b}\\y", "y", 1),
            ("\u{1b}cz", "z", 1),
            ("\u{1b}(Bw", "w", 1),
            ("\u{1b}[?2004lv", "v", 1),
            // Unterminated: only the introducer goes.
            ("\u{1b}]0;no end", "0;no end", 1),
            ("end\u{1b}", "end", 1),
            ("\u{1b}[12", "", 1),
            // A CSI cut short keeps the character that broke it.
            ("\u{1b}[1\né", "\né", 1),
        ];
        for (input, want, n) in cases {
            let c = clean_typed(input);
            assert_eq!((c.text.as_str(), c.removed), (want, n), "{input:?}");
        }
    }

    #[test]
    fn controls_go_but_newlines_and_tabs_stay() {
        let c = clean_typed("a\0b\u{3}c\u{4}d\u{7f}e\u{9b}201~f\u{85}g\th\n");
        assert_eq!(c.text, "abcde201~fg\th\n");
        assert_eq!(c.removed, 6);
        assert_eq!(
            c.note("x").as_deref(),
            Some("x had 6 control sequences removed")
        );
        assert_eq!(
            clean_typed("\0").note("x").as_deref(),
            Some("x had 1 control sequence removed")
        );
    }

    #[test]
    fn carriage_returns_become_newlines() {
        let c = clean_typed("a\r\nb\rc\n");
        assert_eq!(c.text, "a\nb\nc\n");
        assert_eq!(c.removed, 0);
    }

    #[test]
    fn many_unterminated_strings_cost_one_scan() {
        let text = "\u{1b}]x".repeat(200_000);
        let c = clean_typed(&text);
        assert_eq!(c.removed, 200_000);
        assert_eq!(c.text, "x".repeat(200_000));
        let c = clean_typed("\u{1b}]a\u{1b}]b\u{7}c\u{1b}]d");
        assert_eq!((c.text.as_str(), c.removed), ("cd", 2));
    }

    #[test]
    fn cleaning_is_idempotent() {
        let once = clean_typed("x\u{1b}[201~y\u{1b}\u{1b}[[z\u{1b}]w");
        let twice = clean_typed(&once.text);
        assert_eq!(twice.text, once.text);
        assert_eq!(twice.removed, 0);
    }

    #[test]
    fn exec_limit_follows_the_stack_limit() {
        assert_eq!(exec_args_limit(Some(8 * 1024 * 1024)), 2 * 1024 * 1024);
        assert_eq!(exec_args_limit(Some(64 * 1024)), 128 * 1024);
        assert_eq!(exec_args_limit(Some(1 << 40)), 6 * 1024 * 1024);
        assert_eq!(exec_args_limit(None), 6 * 1024 * 1024);
    }

    #[test]
    fn exec_size_checks_nul_each_string_and_the_total() {
        assert_eq!(check_exec_size(["a", "b"], ["K=v"], 1000), Ok(()));
        let nul = check_exec_size(["agent", "x\0y"], [], 1 << 20).unwrap_err();
        assert_eq!(
            nul.to_string(),
            "an argument holds a NUL byte (at byte 1 of 3), which cannot be passed to a program"
        );
        assert!(!nul.in_environment());
        let env_nul = check_exec_size(["agent"], ["K=\0"], 1 << 20).unwrap_err();
        assert!(env_nul.in_environment(), "{env_nul}");
        let long = "x".repeat(MAX_ARG_STRLEN);
        let one = check_exec_size(["agent", long.as_str()], [], 1 << 30).unwrap_err();
        assert_eq!(
            one.to_string(),
            "an argument is 131072 bytes; the system allows at most 131071 per argument"
        );
        let fits = "x".repeat(MAX_ARG_STRLEN - 1);
        assert_eq!(check_exec_size([fits.as_str()], [], 1 << 30), Ok(()));
        let many = vec![fits.as_str(); 20];
        let total = check_exec_size(many, [], 2 * 1024 * 1024).unwrap_err();
        assert_eq!(
            total,
            ExecLimit::TooBig {
                total: 20 * (MAX_ARG_STRLEN + 8),
                limit: 2 * 1024 * 1024
            }
        );
    }
}
