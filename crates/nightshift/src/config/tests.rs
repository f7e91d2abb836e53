use super::*;

fn vars<'a>(prompt: &'a str) -> ArgvVars<'a> {
    ArgvVars {
        prompt,
        prompt_file: Path::new("/h/runs/t/1/prompt.md"),
        task_id: "t",
        workdir: Path::new("/w"),
        nightshift: Path::new("/bin/nightshift"),
        hook_settings: Path::new("/h/runs/t/1/hook-settings.json"),
        session_id: "",
        run_dir: Path::new("/h/runs/t/1"),
    }
}

#[test]
fn template_parses_as_defaults() -> Result<(), ConfigError> {
    let c = Config::parse(Path::new("c.toml"), TEMPLATE)?;
    assert_eq!(c.max_agents, 2);
    assert!(c.profile("claude").is_some());
    assert!(c.profile("test").is_some());
    Ok(())
}

#[test]
fn the_template_examples_parse_when_uncommented() -> Result<(), ConfigError> {
    // Every `# key = value` line and `# [table]` header, uncommented.
    let text: String = TEMPLATE
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        // It names a file that is not there: read when the config is, it is tested apart.
        .filter(|l| !l.starts_with("password_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let c = Config::parse(Path::new("c.toml"), &text)?;
    let claude = c.profile("claude").expect("claude");
    assert!(claude.uses_hooks());
    assert_eq!(
        claude.attention.silence,
        Some(Some(Duration::from_secs(1200)))
    );
    assert_eq!(claude.attention.waiting_patterns.len(), 1);
    assert_eq!(c.attention.renotify, None);
    assert_eq!(c.host, "build-1");
    assert_eq!(c.labels, ["gpu", "macos"]);
    assert!(c.store.url.is_some());
    Ok(())
}

#[test]
fn profile_attention_is_checked() {
    let bad = [
        (
            "[agents.x]\ncommand = [\"x\"]\n[agents.x.attention]\nsilense = \"1m\"\n",
            "silense",
        ),
        (
            "[agents.x]\ncommand = [\"x\"]\n[agents.x.attention]\nwaiting_patterns = [\"(\"]\n",
            "waiting pattern",
        ),
        ("[attention.policy]\ndied = \"notify\"\n", "restart"),
    ];
    for (text, want) in bad {
        match Config::parse(Path::new("c.toml"), text) {
            Err(e) => assert!(e.to_string().contains(want), "{text}: {e}"),
            Ok(_) => panic!("{text} parsed"),
        }
    }
}

#[test]
fn unknown_key_is_an_error() {
    let e = Config::parse(Path::new("c.toml"), "max_agent = 3\n");
    assert!(matches!(e, Err(ConfigError::Parse { message, .. }) if message.contains("max_agent")));
}

#[test]
fn durations_and_profiles() -> Result<(), ConfigError> {
    let c = Config::parse(
        Path::new("c.toml"),
        "grace_period = \"2s\"\ntimeout = 60\n[agents.x]\ncommand = [\"x\", \"--file={prompt_file}\"]\n",
    )?;
    assert_eq!(c.grace_period, Duration::from_secs(2));
    assert_eq!(c.timeout, Some(Duration::from_secs(60)));
    assert_eq!(c.profile("x").map(|p| p.command.len()), Some(2));
    Ok(())
}

#[test]
fn unknown_placeholder_names_agent() {
    let e = Config::parse(
        Path::new("c.toml"),
        "[agents.x]\ncommand = [\"x\", \"{promt}\"]\n",
    );
    assert!(
        matches!(e, Err(ConfigError::Profile { agent, message, .. }) if agent == "x" && message.contains("promt"))
    );
}

#[test]
fn prompt_is_substituted_once_and_never_re_expanded() -> Result<(), String> {
    let p = AgentProfile {
        command: vec!["a".into(), "--m={prompt}".into(), "{{literal}}".into()],
        ..builtin_profiles()["test"].clone()
    };
    let argv = expand_argv(&p.command, &vars("{task_id} $(touch x) `y`"), true)?;
    assert_eq!(argv, vec!["a", "--m={task_id} $(touch x) `y`", "{literal}"]);
    Ok(())
}

#[test]
fn prompt_is_appended_when_not_mentioned() -> Result<(), String> {
    let p = AgentProfile {
        command: vec!["agent".into(), "{task_id}".into()],
        ..builtin_profiles()["test"].clone()
    };
    assert_eq!(
        expand_argv(&p.command, &vars("hi"), true)?,
        vec!["agent", "t", "hi"]
    );
    Ok(())
}

/// Parses with exactly the environment given, not the test process's.
fn parse_env(path: &Path, text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::parse_with_env(path, text, &|name| env.get(name).cloned())
}

#[test]
fn host_labels_and_store_parse_with_their_defaults() -> Result<(), ConfigError> {
    let c = parse_env(Path::new("c.toml"), "", &[])?;
    assert_eq!(c.host, nightshift_store::this_host());
    assert!(c.labels.is_empty());
    assert_eq!(c.store.url, None);
    assert_eq!(c.store.lease, Duration::from_secs(30));
    let c = parse_env(
        Path::new("c.toml"),
        "host = \"build-2\"\nlabels = [\"gpu\", \"macos\"]\n[store]\nurl = \"postgres://ns@db/q\"\nlease = \"5s\"\n",
        &[],
    )?;
    assert_eq!(c.host, "build-2");
    assert_eq!(c.labels, ["gpu", "macos"]);
    assert_eq!(c.store.url.as_deref(), Some("postgres://ns@db/q"));
    assert_eq!(c.store.lease, Duration::from_secs(5));
    assert_eq!(
        c.here(),
        nightshift_core::routing::Host::new("build-2", ["gpu", "macos"])
    );
    Ok(())
}

#[test]
fn the_environment_overrides_host_and_store_url() -> Result<(), ConfigError> {
    let text = "host = \"build-2\"\n[store]\nurl = \"postgres://ns@db/q\"\n";
    let c = parse_env(
        Path::new("c.toml"),
        text,
        &[
            ("NIGHTSHIFT_HOST", "vm-7"),
            ("NIGHTSHIFT_STORE_URL", "host=/tmp/pg dbname=q"),
        ],
    )?;
    assert_eq!(c.host, "vm-7");
    assert_eq!(c.store.url.as_deref(), Some("host=/tmp/pg dbname=q"));
    // Set but empty: not an override.
    let c = parse_env(
        Path::new("c.toml"),
        text,
        &[("NIGHTSHIFT_HOST", ""), ("NIGHTSHIFT_STORE_URL", "")],
    )?;
    assert_eq!(c.host, "build-2");
    assert_eq!(c.store.url.as_deref(), Some("postgres://ns@db/q"));
    // Over the default too.
    let c = parse_env(
        Path::new("c.toml"),
        "",
        &[("NIGHTSHIFT_STORE_URL", "postgresql://db/q")],
    )?;
    assert_eq!(c.store.url.as_deref(), Some("postgresql://db/q"));
    Ok(())
}

#[test]
fn bad_host_labels_and_store_settings_are_errors() {
    let bad = [
        ("host = \"\"\n", &[][..], "host"),
        ("host = \"a b\"\n", &[][..], "host"),
        ("", &[("NIGHTSHIFT_HOST", "a/b")][..], "NIGHTSHIFT_HOST"),
        ("labels = [\"gpu\", \"\"]\n", &[][..], "labels"),
        ("labels = [\"g,pu\"]\n", &[][..], "labels"),
        ("[store]\nurl = \"mysql://db\"\n", &[][..], "[store] url"),
        (
            "",
            &[("NIGHTSHIFT_STORE_URL", "db.example")][..],
            "[store] url",
        ),
        (
            "[store]\nlease = \"1s\"\n",
            &[][..],
            "lease must be at least 2s",
        ),
        ("[store]\nleas = \"5s\"\n", &[][..], "leas"),
        (
            "[store]\nurl = \"postgres://db/q\"\npassword_file = \"missing\"\n",
            &[][..],
            "password_file",
        ),
    ];
    for (text, env, want) in bad {
        match parse_env(Path::new("/nowhere/c.toml"), text, env) {
            Err(e) => assert!(e.to_string().contains(want), "{text}: {e}"),
            Ok(_) => panic!("{text} {env:?} parsed"),
        }
    }
}

#[test]
fn a_password_in_the_store_url_never_shows() -> Result<(), ConfigError> {
    let c = parse_env(
        Path::new("c.toml"),
        "[store]\nurl = \"postgres://ns:s3cret@db/q\"\n",
        &[],
    )?;
    assert_eq!(c.store.url.as_deref(), Some("postgres://ns:s3cret@db/q"));
    let debug = format!("{c:?}");
    assert!(debug.contains("postgres://ns:***@db/q"), "{debug}");
    assert!(!debug.contains("s3cret"), "{debug}");
    let json = serde_json::to_string(&c).map_err(|e| ConfigError::Parse {
        path: "c.toml".into(),
        message: e.to_string(),
    })?;
    assert!(!json.contains("s3cret"), "{json}");
    let c = parse_env(
        Path::new("c.toml"),
        "",
        &[("NIGHTSHIFT_STORE_URL", "host=db password=s3cret")],
    )?;
    assert!(!format!("{c:?}").contains("s3cret"));
    Ok(())
}

#[test]
fn a_relative_password_file_is_beside_the_config_and_must_be_private() -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(dir.path().join("pw"), "s3cret\n")?;
    std::fs::set_permissions(
        dir.path().join("pw"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    let text = "[store]\nurl = \"postgres://ns@db/q\"\npassword_file = \"pw\"\n";
    let e = parse_env(&config, text, &[]).err().map(|e| e.to_string());
    let e = e.unwrap_or_default();
    assert!(e.contains("other users can read it"), "{e}");
    std::fs::set_permissions(
        dir.path().join("pw"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    let c = parse_env(&config, text, &[]).map_err(std::io::Error::other)?;
    assert_eq!(c.store.password_file, Some(dir.path().join("pw")));
    assert_eq!(
        c.store
            .password()
            .map_err(std::io::Error::other)?
            .as_deref(),
        Some("s3cret")
    );
    Ok(())
}

#[test]
fn a_syntax_error_on_the_url_line_does_not_echo_the_password() {
    let text = "max_agents = 2\n[store]\nurl = \"postgres://ns:s3cret@db/q\n";
    match parse_env(Path::new("c.toml"), text, &[]) {
        Err(e) => {
            let e = e.to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("line 3"), "{e}");
        }
        Ok(_) => panic!("parsed"),
    }
}

#[test]
fn the_codex_profile_runs_without_a_daemon_with_its_hooks_trusted() -> Result<(), String> {
    let codex = builtin_profiles()
        .remove("codex")
        .ok_or("no codex profile")?;
    profile::validate(&codex)?;
    let argv = expand_argv(&codex.command, &vars("fix {it}"), true)?;
    assert_eq!(
        argv[..6],
        [
            "codex",
            "--no-daemon",
            "--sandbox",
            "workspace-write",
            "--add-dir",
            "/h/runs/t/1"
        ]
    );
    // The override reaches Codex whole, braces and all.
    assert_eq!(argv[6..9], ["-c", "allow_login_shell=false", "-c"]);
    assert_eq!(argv[9], crate::hook::codex::config_override());
    assert_eq!(argv[10..], ["--", "fix {it}"]);
    let mut resume_vars = vars("go on");
    resume_vars.session_id = "0199-abc";
    let resume = expand_argv(&codex.resume_command, &resume_vars, true)?;
    assert_eq!(resume[..3], ["codex", "--no-daemon", "resume"]);
    assert_eq!(resume[resume.len() - 3..], ["0199-abc", "--", "go on"]);
    assert_eq!(codex.exit_command.as_deref(), Some("/exit"));
    assert!(!codex.command.iter().any(|a| a == "--full-auto"));
    Ok(())
}

/// Unattended runs get a time limit unless config.toml switches it off.
#[test]
fn the_default_timeout_is_four_hours_and_off_switches_it_off() -> Result<(), ConfigError> {
    let path = Path::new("c.toml");
    assert_eq!(Config::parse(path, "")?.timeout, Some(DEFAULT_TIMEOUT));
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(4 * 3600));
    assert_eq!(Config::parse(path, "timeout = \"off\"")?.timeout, None);
    assert_eq!(Config::parse(path, "timeout = false")?.timeout, None);
    assert_eq!(
        Config::parse(path, "timeout = \"90m\"")?.timeout,
        Some(Duration::from_secs(5400))
    );
    assert!(Config::parse(path, "timeout = \"soon\"").is_err());
    Ok(())
}

/// `push`/`pr`/`remote`: the task's over its profile's over the file's.
#[test]
fn landing_comes_from_task_then_profile_then_config() -> Result<(), ConfigError> {
    let text = "push = true\nremote = \"upstream\"\n[agents.quiet]\ncommand = [\"q\"]\npush = false\n[agents.loud]\ncommand = [\"l\"]\npr = true\n";
    let c = Config::parse(Path::new("c.toml"), text)?;
    let task = |front: &str| {
        nightshift_core::task::parse(
            "t",
            Path::new("t.md"),
            &format!("---\n{front}\n---\nx"),
            None,
        )
        .expect("task")
    };
    let landing = c.landing(&task("title: T")).expect("config pushes");
    assert_eq!((landing.pr, landing.remote.as_str()), (false, "upstream"));
    assert_eq!(c.landing(&task("agent: quiet")), None);
    let loud = c.landing(&task("agent: loud")).expect("profile opens a pr");
    assert!(loud.pr);
    let own = c
        .landing(&task("agent: quiet\npush: true\nremote: fork"))
        .expect("task pushes");
    assert_eq!(own.remote, "fork");
    assert!(Config::parse(Path::new("c.toml"), "remote = \"-x\"").is_err());
    Ok(())
}
