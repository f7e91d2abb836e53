//! Malformed-input fuzzing of the task-file parser and the front-matter editors, with
//! generated inputs: random bytes, truncated and hostile YAML, BOM, CRLF, non-UTF-8 and NUL;
//! plus fixed hostile cases (anchor bombs, deep nesting, 10 MB files). The rule: no panic, an
//! edited file keeps its body exactly, and every error says `file:line:column`.
//!
//! Each property runs 64 cases here, a few seconds in all. For a longer run:
//! `PROPTEST_CASES=20000 cargo test --release -p nightshift-core task::fuzz`.

// The fuzz tests time the parser: a hostile file must be refused in milliseconds, not seconds.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a test measures how long parsing takes"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::parse::split_front_matter;
use super::*;
use crate::strategies::{assert_located, cases, task_text};

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
        match parse("t", path, &text, None) {
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
        if let Ok(task) = parse("t", Path::new("t.md"), &edited, None) {
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

/// Parses within a time limit far above what it takes (debug build, a loaded CI machine):
/// hostile input must fail fast, not hang.
fn parse_quickly(text: &str) -> Result<Task, TaskError> {
    let start = Instant::now();
    let result = parse("t", Path::new("queue/t.md"), text, None);
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
