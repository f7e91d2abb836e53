//! Generators of task files, broken and hostile ones included, for property tests here and
//! in the store's and the binary's tests (feature `strategies`).

use std::path::Path;

use proptest::prelude::*;

/// The number of cases: 64 unless `PROPTEST_CASES` says otherwise, so CI stays quick.
#[allow(
    clippy::disallowed_methods,
    reason = "test generators only (feature `strategies`): a long run sets PROPTEST_CASES"
)]
pub fn cases() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    // Failures print the shrunk input; nothing is written into the source tree.
    config.failure_persistence = None;
    config
}

/// Pieces that task files, and broken or hostile ones, are made of.
pub fn fragment() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "---",
        "...",
        "title: a title",
        "priority: 3",
        "priority: -9999999999999999999999",
        "agent: claude",
        "timeout: 20m",
        "timeout: 0",
        "max_attempts: 0",
        "depends_on: [a, b",
        "depends_on:\n  - x\n  - ../y",
        "env:\n  KEY: 1\n  NIGHTSHIFT_X: y",
        "env: {A: &a x, B: *a, C: *b}",
        "verify: &v [\"true\", *v]",
        "setup: !!binary aGVsbG8=",
        "workdir: relative/dir",
        "attention: {waiting: [\"(\"]}",
        "title: 'unclosed",
        "title: \"esc \\e]0;x\\a\"",
        "<<: *missing",
        "? complex\n: key",
        "\ttab: indented",
        "  - dangling",
        "[[[[[[[[[[",
        "{{{{{{{{",
        "# comment",
        "<!-- nightshift:report -->",
        "# Heading",
        "@done",
        "\u{feff}",
        "\0",
        "\r",
        "é修🇫🇷\u{202e}",
        "",
    ]);
    prop_oneof![
        4 => fixed.prop_map(str::to_string),
        1 => "[ -~]{0,40}",
        1 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
}

/// A task file's bytes: lines from [`fragment`], joined by LF or CRLF, maybe with a BOM,
/// maybe cut short, maybe with a few bytes that are not UTF-8.
pub fn task_bytes() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(fragment(), 0..24),
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::collection::vec((any::<prop::sample::Index>(), 0x80u8..=0xff), 0..3),
    )
        .prop_map(|(bom, crlf, lines, cut, truncate, bad)| {
            let mut text = if bom {
                "\u{feff}".to_string()
            } else {
                String::new()
            };
            text.push_str(&lines.join(if crlf { "\r\n" } else { "\n" }));
            let mut bytes = text.into_bytes();
            if truncate && !bytes.is_empty() {
                bytes.truncate(cut.index(bytes.len()));
            }
            for (at, byte) in bad {
                if !bytes.is_empty() {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
            }
            bytes
        });
    prop_oneof![
        3 => structured,
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// A valid UTF-8 task text (non-UTF-8 bytes read lossily, as `finish` does).
pub fn task_text() -> impl Strategy<Value = String> {
    task_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The error names the file, then a line and a column, both from 1.
pub fn assert_located(error: &str, path: &Path) {
    let prefix = format!("{}:", path.display());
    let rest = error
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("no file in: {error}"));
    let mut parts = rest.splitn(3, ':');
    for what in ["line", "column"] {
        let n: u32 = parts
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what} in: {error}"));
        assert!(n >= 1, "{what} 0 in: {error}");
    }
}
