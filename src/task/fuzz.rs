//! Malformed-input fuzzing of the task-file parser, the front-matter editors and the queue's
//! handling of invalid files, with generated inputs: random bytes, truncated and hostile
//! YAML, BOM, CRLF, non-UTF-8 and NUL; plus fixed hostile cases (anchor bombs, deep nesting,
//! 10 MB files). The rule: no panic, the bytes are kept (a queued file is set aside byte for
//! byte; an edited file keeps its body exactly), and every error says `file:line:column`.
//!
//! Each property runs 64 cases here, a few seconds in all. For a longer run:
//! `PROPTEST_CASES=20000 cargo test --release --lib task::fuzz`.

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::home::{Home, TaskState};
use crate::queue::{FolderStore, Store};

fn cases() -> ProptestConfig {
    // ProptestConfig::default() reads PROPTEST_CASES; without it, keep CI quick.
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    // Failures print the shrunk input; nothing is written into the source tree.
    config.failure_persistence = None;
    config
}

/// Pieces that task files, and broken or hostile ones, are made of.
fn fragment() -> impl Strategy<Value = String> {
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
fn task_bytes() -> impl Strategy<Value = Vec<u8>> {
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
fn task_text() -> impl Strategy<Value = String> {
    task_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The error names the file, then a line and a column, both from 1.
fn assert_located(error: &str, path: &Path) {
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

/// What follows the front matter (or the whole text without one): the part every editor
/// must keep as it is.
fn body_of(text: &str) -> &str {
    let path = Path::new("t.md");
    match split_front_matter(path, text) {
        Ok(split) if split.yaml.is_some() => split.body,
        _ => text.strip_prefix('\u{feff}').unwrap_or(text),
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn parse_never_panics_keeps_the_prompt_and_locates_errors(text in task_text()) {
        let path = Path::new("queue/t.md");
        match parse("t", path, &text) {
            Ok(task) => prop_assert!(text.contains(&task.prompt)),
            Err(e) => {
                assert_located(&e.to_string(), path);
                // YAML also breaks lines at a lone CR; an error may point just past the end.
                let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() as u32 + 2;
                prop_assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
            }
        }
    }

    #[test]
    fn setting_fields_keeps_the_body_exactly(text in task_text(), priority in any::<i64>()) {
        let fields = [
            ("priority", priority.to_string()),
            ("agent", yaml_string("a \"quoted\" agent\n")),
        ];
        let edited = set_front_matter_fields(&text, &fields);
        prop_assert!(edited.starts_with("---\n"));
        prop_assert!(edited.ends_with(body_of(&text)), "body lost: {edited:?}");
        // What was set reads back, whatever the rest of the front matter holds.
        if let Ok(task) = parse("t", Path::new("t.md"), &edited) {
            prop_assert_eq!(task.priority, priority);
            prop_assert_eq!(task.agent.as_deref(), Some("a \"quoted\" agent"));
        }
    }

    #[test]
    fn taking_keys_and_adding_dependencies_keep_the_body(text in task_text()) {
        let path = Path::new("schedules/s.md");
        match take_front_keys(path, &text, &["depends_on", "when"]) {
            Ok((_, rest)) => prop_assert!(rest.ends_with(body_of(&text)), "{rest:?}"),
            Err(e) => assert_located(&e.to_string(), path),
        }
        if let Ok(with) = add_dependencies(&text, &["other".to_string()]) {
            prop_assert!(with.ends_with(body_of(&text)), "{with:?}");
        }
        prop_assert!(text.starts_with(strip_report(&text)));
    }
}

/// A file dropped into the queue is either a task, or set aside byte for byte with a
/// `file:line:column` reason.
#[test]
fn the_queue_sets_invalid_files_aside_byte_for_byte() -> Result<(), Box<dyn std::error::Error>> {
    // One home for all cases: each case leaves the queue and failed/ empty again.
    let dir = tempfile::tempdir()?;
    let home = Home::at(dir.path().join("home"));
    home.ensure_layout()?;
    let config = Config {
        workdir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    proptest!(cases(), |(bytes in task_bytes())| {
        let path = home.task_file(TaskState::Queued, "t");
        std::fs::write(&path, &bytes).map_err(|e| fail(&e))?;
        let mut store = FolderStore::new(home.clone());
        let later = SystemTime::now() + Duration::from_secs(3600);
        let scan = store.scan(&config, later).map_err(|e| fail(&e))?;
        prop_assert_eq!(scan.queued.len() + scan.invalid.len(), 1);
        if let Some(invalid) = scan.invalid.first() {
            assert_located(&invalid.error, &path);
            let moved = store.reject(&invalid.path, &invalid.error).map_err(|e| fail(&e))?;
            let kept = std::fs::read(&moved).map_err(|e| fail(&e))?;
            prop_assert_eq!(&kept, &bytes);
            std::fs::remove_file(crate::queue::error_file(&moved)).map_err(|e| fail(&e))?;
            std::fs::remove_file(&moved).map_err(|e| fail(&e))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| fail(&e))?;
        }
    });
    Ok(())
}

/// Parses within a time limit far above what it takes (debug build, a loaded CI machine):
/// hostile input must fail fast, not hang.
fn parse_quickly(text: &str) -> Result<Task, TaskError> {
    let start = Instant::now();
    let result = parse("t", Path::new("queue/t.md"), text);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    result
}

/// Billion laughs in a list field: 9 levels of 9 aliases each, 9^9 strings if expanded.
fn laughs(field: &str) -> String {
    let mut yaml = format!("---\n{field}:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let mut previous = 'a';
    for name in 'b'..='j' {
        let refs = vec![format!("*{previous}"); 9].join(", ");
        yaml.push_str(&format!("  - &{name} [{refs}]\n"));
        previous = name;
    }
    yaml.push_str("---\nbody\n");
    yaml
}

#[test]
fn anchor_bombs_fail_fast_with_a_location() {
    // Before the front matter had its own budget, these took seconds (serde-saphyr's
    // default stops at 250,000 nodes).
    for field in ["verify", "depends_on", "setup"] {
        let start = Instant::now();
        let e = parse_quickly(&laughs(field)).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{field}: {:?}",
            start.elapsed()
        );
        assert_located(&e.to_string(), Path::new("queue/t.md"));
        assert!(e.message.contains("too complex"), "{e}");
    }
}

#[test]
fn deep_nesting_fails_fast_with_a_location() {
    let flow = format!("---\nverify: {}\n---\nbody\n", "[".repeat(100_000));
    let e = parse_quickly(&flow).unwrap_err();
    assert_located(&e.to_string(), Path::new("queue/t.md"));

    let mut block = String::from("---\nenv:\n");
    for depth in 1..2000 {
        block.push_str(&" ".repeat(depth * 2));
        block.push_str("k:\n");
    }
    block.push_str("---\nbody\n");
    let e = parse_quickly(&block).unwrap_err();
    assert_located(&e.to_string(), Path::new("queue/t.md"));
    assert!(e.message.contains("too complex"), "{e}");
}

#[test]
fn ten_megabyte_files_are_read_or_refused_quickly() {
    let body = "the same line again\n".repeat(512 * 1024);
    let task = parse_quickly(&format!("---\ntitle: big\n---\n{body}")).unwrap();
    assert_eq!(task.prompt, body);
    let edited = set_front_matter_fields(
        &format!("---\ntitle: big\n---\n{body}"),
        &[("priority", "1".into())],
    );
    assert!(edited.ends_with(&body));

    let scalar = format!("---\ntitle: \"{}\"\n---\nbody\n", "x".repeat(10 << 20));
    assert_eq!(parse_quickly(&scalar).unwrap().title.len(), 10 << 20);

    let keys: String = (0..500_000).map(|i| format!("k{i}: 1\n")).collect();
    let e = parse_quickly(&format!("---\n{keys}---\nbody\n")).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}
