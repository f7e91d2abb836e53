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
