//! Task file parsing and editing, case by case.

use super::*;

fn parse_ok(text: &str) -> Task {
    match parse("t1", Path::new("queue/t1.md"), text, None) {
        Ok(t) => t,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn parse_err(text: &str) -> TaskError {
    match parse("t1", Path::new("queue/t1.md"), text, None) {
        Ok(t) => panic!("expected an error, got {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn no_front_matter_keeps_body_verbatim_and_takes_title_from_heading() {
    let text = "# Fix the build\n\nDo it.\n\n## Acceptance criteria\n- green\n";
    let t = parse_ok(text);
    assert_eq!(t.title, "Fix the build");
    assert_eq!(t.prompt, text);
    assert_eq!(t.priority, 0);
    assert!(t.agent.is_none());
}

#[test]
fn title_falls_back_to_id() {
    assert_eq!(parse_ok("just do it\n").title, "t1");
}

#[test]
fn all_fields_parse() {
    let t = parse_ok(
        "---\ntitle: Hello\npriority: 5\nagent: claude\nworkdir: /tmp/x\ntimeout: 1h 30m\n\
         max_attempts: 3\ndepends_on: [a, b]\nenv:\n  FOO: bar\n  N: 3\n---\nbody\n",
    );
    assert_eq!(t.title, "Hello");
    assert_eq!(t.priority, 5);
    assert_eq!(t.agent.as_deref(), Some("claude"));
    assert_eq!(t.workdir, Some(PathBuf::from("/tmp/x")));
    assert_eq!(t.timeout, Some(Some(Duration::from_secs(5400))));
    assert_eq!(t.max_attempts, Some(3));
    assert_eq!(t.depends_on, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(t.env.get("N").map(String::as_str), Some("3"));
    assert_eq!(t.prompt, "body\n");
    assert_eq!(t.field_line("agent"), 4);
}

#[test]
fn attention_overrides() {
    let t = parse_ok(
        "---\nattention:\n  no_commits: off\n  silence: 45m\n  policy:\n    silence: restart\n---\nx",
    );
    assert_eq!(t.attention.no_commits, Some(None));
    assert_eq!(
        t.attention.silence,
        Some(Some(Duration::from_secs(45 * 60)))
    );
    assert_eq!(t.attention.repeated_errors, None);
    assert_eq!(
        t.attention.policy.get(&crate::attention::Signal::Silence),
        Some(&crate::Policy::Restart)
    );
    let e = parse_err("---\nattention:\n  silense: 5m\n---\n");
    assert!(e.message.contains("silense"), "{e}");
}

#[test]
fn single_dependency_and_numeric_timeout() {
    let t = parse_ok("---\ndepends_on: setup\ntimeout: 90\n---\nx");
    assert_eq!(t.depends_on, vec!["setup".to_string()]);
    assert_eq!(t.timeout, Some(Some(Duration::from_secs(90))));
    // `off` switches config.toml's default off for this task.
    let off = parse_ok("---\ntimeout: off\n---\nx");
    assert_eq!(off.timeout, Some(None));
    assert_eq!(off.time_limit(Some(Duration::from_secs(60))), None);
    let unset = parse_ok("---\ntitle: x\n---\nx");
    assert_eq!(
        unset.time_limit(Some(Duration::from_secs(60))),
        Some(Duration::from_secs(60))
    );
    let landing = parse_ok("---\npush: true\npr: true\nremote: fork\n---\nx").landing;
    assert_eq!(
        (landing.push, landing.pr, landing.remote.as_deref()),
        (Some(true), Some(true), Some("fork"))
    );
    assert!(
        parse_err("---\nremote: -x\n---\n")
            .message
            .starts_with("remote:")
    );
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let e = parse_err("---\ntitle: ok\npriorty: 3\n---\nbody");
    assert!(e.message.contains("priorty"), "{e}");
    assert_eq!(e.line, 3, "{e}");
    assert!(e.to_string().starts_with("queue/t1.md:3:"), "{e}");
}

#[test]
fn wrong_type_points_at_the_value() {
    let e = parse_err("---\npriority: high\n---\nbody");
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn unclosed_front_matter_is_an_error() {
    let e = parse_err("---\ntitle: x\nbody without fence\n");
    assert!(e.message.contains("closing"), "{e}");
}

#[test]
fn bad_duration_and_relative_workdir_name_the_field() {
    let e = parse_err("---\ntimeout: soon\n---\n");
    assert!(e.message.starts_with("timeout:"), "{e}");
    assert_eq!(e.line, 2);
    let e = parse_err("---\ntitle: a\nworkdir: src\n---\n");
    assert!(e.message.starts_with("workdir:"), "{e}");
    assert_eq!(e.line, 3);
}

#[test]
fn an_env_value_with_a_nul_is_refused_without_showing_it() {
    let e = parse_err("---\nenv:\n  TOKEN: \"sec\\0ret\"\n---\n");
    assert!(e.message.contains("`TOKEN` holds a NUL byte"), "{e}");
    assert!(!e.to_string().contains("sec"), "{e}");
    assert_eq!(e.line, 2);
}

#[test]
fn reserved_env_and_self_dependency_are_rejected() {
    assert!(
        parse_err("---\nenv:\n  NIGHTSHIFT_HOME: x\n---\n")
            .message
            .contains("reserved")
    );
    assert!(
        parse_err("---\ndepends_on: t1\n---\n")
            .message
            .contains("itself")
    );
}

#[test]
fn crlf_and_bom_and_dots_terminator() {
    let t = parse_ok("\u{feff}---\r\npriority: 2\r\n...\r\nbody\r\n");
    assert_eq!(t.priority, 2);
    assert_eq!(t.prompt, "body\r\n");
}

#[test]
fn appended_report_is_not_part_of_the_prompt() {
    let text = format!("do it\n\n{REPORT_MARKER}\n## nightshift report\n| outcome | done |\n");
    assert_eq!(parse_ok(&text).prompt, "do it");
}

#[test]
fn front_matter_not_on_first_line_is_body() {
    let t = parse_ok("\n---\npriority: 9\n---\n");
    assert_eq!(t.priority, 0);
}

#[test]
fn hostile_ids_are_rejected() {
    assert!(validate_id("../x").is_err());
    assert!(validate_id(".hidden").is_err());
    assert!(validate_id("a\nb").is_err());
    // Schedule runs are named without `:` (git refuses it in a branch).
    assert!(validate_id("nightly@20261124T020000Z").is_ok());
    assert!(validate_id("nightly@2026-11-24T02:00Z").is_err());
}

#[test]
fn set_fields_replaces_and_keeps_comments() {
    let text = "---\n# keep me\npriority: 1\nenv:\n  A: b\n---\nbody\n";
    let out = set_front_matter_fields(text, &[("priority", "7".into())]);
    assert_eq!(
        out,
        "---\npriority: 7\n# keep me\nenv:\n  A: b\n---\nbody\n"
    );
    let out = set_front_matter_fields("body only\n", &[("workdir", yaml_string("/a b"))]);
    assert_eq!(out, "---\nworkdir: \"/a b\"\n---\nbody only\n");
    assert_eq!(parse_ok(&out).workdir, Some(PathBuf::from("/a b")));
}

#[test]
fn durations_round_trip() {
    assert_eq!(
        crate::duration::parse("250ms"),
        Ok(Duration::from_millis(250))
    );
    assert_eq!(crate::duration::parse("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(crate::duration::format(Duration::from_secs(5400)), "1h 30m");
    assert_eq!(crate::duration::format(Duration::from_millis(40)), "40ms");
    assert!(crate::duration::parse("-5s").is_err());
}

#[test]
fn a_tilde_workdir_is_under_the_given_home_and_needs_one() {
    let text = "---\nworkdir: ~/src/app\n---\nx";
    let path = Path::new("queue/t1.md");
    let task = parse("t1", path, text, Some(Path::new("/home/ada"))).unwrap();
    assert_eq!(task.workdir, Some(PathBuf::from("/home/ada/src/app")));
    let err = parse("t1", path, text, None).unwrap_err();
    assert!(err.to_string().contains("HOME is not set"), "{err}");
    assert_eq!(err.line, 2, "{err}");
}

#[test]
fn requires_and_host_parse() {
    let t = parse_ok("---\nrequires: [gpu, macos-14]\nhost: build-2\n---\nx");
    assert_eq!(t.requires, vec!["gpu".to_string(), "macos-14".to_string()]);
    assert_eq!(t.host.as_deref(), Some("build-2"));
    let t = parse_ok("---\nrequires: gpu\n---\nx");
    assert_eq!(t.requires, vec!["gpu".to_string()]);
    let t = parse_ok("x");
    assert!(t.requires.is_empty() && t.host.is_none());
}

#[test]
fn bad_labels_and_hosts_name_the_field_and_line() {
    let e = parse_err("---\ntitle: x\nrequires: [gpu, \"big box\"]\n---\nx");
    assert_eq!((e.line, e.column), (3, 1), "{e}");
    assert!(e.message.starts_with("requires:"), "{e}");
    assert!(
        e.to_string().starts_with("queue/t1.md:3:1: requires:"),
        "{e}"
    );
    let e = parse_err("---\nrequires: [\"\"]\n---\nx");
    assert!(e.message.contains("must not be empty"), "{e}");
    let e = parse_err("---\nhost: \"a/b\"\n---\nx");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.starts_with("host:"), "{e}");
    let e = parse_err("---\nhost: \"\"\n---\nx");
    assert!(e.message.contains("must not be empty"), "{e}");
}

#[test]
fn repo_and_base_parse() {
    let t = parse_ok("---\nrepo: git@github.com:org/app.git\nbase: release-2\n---\nx");
    assert_eq!(t.repo.as_deref(), Some("git@github.com:org/app.git"));
    assert_eq!(t.base.as_deref(), Some("release-2"));
    assert_eq!(t.workdir, None);
    assert_eq!(parse_ok("x").repo, None);
}

#[test]
fn a_bad_repo_is_refused_at_its_line_and_column() {
    let e = parse_err("---\ntitle: x\nrepo: ext::sh%20-c%20id\n---\nx");
    assert_eq!((e.line, e.column), (3, 7), "{e}");
    assert!(e.message.contains("`ext::` transport is refused"), "{e}");
    let e = parse_err("---\nrepo: \"--upload-pack=touch /tmp/x\"\n---\nx");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("must not start with `-`"), "{e}");
    // The error does not show a password.
    let e = parse_err("---\nrepo: https://u:s3cret@host/a b\n---\nx");
    assert!(!e.to_string().contains("s3cret"), "{e}");
}

#[test]
fn repo_with_workdir_or_in_place_is_refused() {
    let e = parse_err("---\nworkdir: /tmp/x\nrepo: /srv/app.git\n---\nx");
    assert_eq!(e.line, 3, "{e}");
    assert!(
        e.message
            .contains("repo: cannot be given together with `workdir:` (line 2)"),
        "{e}"
    );
    let e = parse_err("---\nrepo: /srv/app.git\nisolation: none\n---\nx");
    assert!(e.message.contains("`isolation: none`"), "{e}");
}
