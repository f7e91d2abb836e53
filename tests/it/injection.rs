//! A prompt is data: shell, tmux and quoting syntax in it reaches the agent byte for byte
//! and is never executed, whether it arrives as a file or as an argument.

use std::path::Path;

use crate::harness::{Env, Task, find_named};

/// Every kind of syntax that would run something if a prompt went through `sh -c` or tmux
/// format expansion.
const HOSTILE: &str = "Please do not run any of this:\n\
$(touch pwned)\n\
`touch pwned2`\n\
'single quoted' and \"double quoted\" and it's unbalanced \"\n\
; touch pwned3\n\
&& touch pwned3b | touch pwned3c\n\
#{pane_id} #{session_name} #(touch pwned4)\n\
back\\slash \\n \\\\ and a tab\there\n\
\n\
\n\
{task_id} {prompt} %s %%\n\
\n";

fn run_hostile(env: &mut Env, agent: Option<&str>) {
    let got = env.path("got.txt");
    let body = format!("{HOSTILE}@record {}\n@done\n", got.display());
    let mut task = Task::body(&body).front("title: hostile");
    if let Some(a) = agent {
        task = task.front(&format!("agent: {a}"));
    }
    env.queue("hostile", &task);
    env.start_daemon();
    assert_eq!(env.wait_finished("hostile"), "done");
    let recorded = std::fs::read(&got).expect("the agent recorded its prompt");
    assert_eq!(
        String::from_utf8_lossy(&recorded),
        body,
        "the agent got the prompt byte for byte"
    );
    assert_eq!(recorded, body.as_bytes());
    for dir in [env.root.as_path(), env.repo.as_path(), Path::new(".")] {
        let found = find_named(dir, "pwned");
        assert!(found.is_empty(), "something ran: {found:?}");
    }
    let cwd = std::env::current_dir().unwrap();
    assert!(find_named(&cwd, "pwned").is_empty());
}

#[test]
fn prompt_in_a_file_is_never_executed() {
    let mut env = Env::new();
    run_hostile(&mut env, None);
    let spawn = std::fs::read_to_string(env.run_dir("hostile", 1).join("spawn.json")).unwrap();
    assert!(spawn.contains("--prompt-file"), "{spawn}");
}

#[test]
fn prompt_as_an_argument_is_never_executed() {
    let mut env = Env::builder()
        .config_tail(
            "[agents.argv]\ncommand = [\"{nightshift}\", \"test-agent\", \"{prompt}\"]\npreamble = false",
        )
        .build();
    run_hostile(&mut env, Some("argv"));
    let spawn: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.run_dir("hostile", 1).join("spawn.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spawn["agent"], "argv");
    assert_eq!(spawn["argv"][1], "test-agent");
    assert!(
        spawn["argv"][2]
            .as_str()
            .unwrap()
            .starts_with("Please do not run"),
        "the prompt is one argument: {spawn}"
    );
}

/// Task ids (file names) and workdirs reach tmux too: as the session's start directory and
/// inside the transcript path. tmux expands formats there, and `#(…)` would run a command.
#[test]
fn hostile_task_ids_and_workdirs_are_never_executed() {
    let mut env = Env::new();
    let workdir = env.path("w#(touch pwned-workdir)#{pane_id}");
    std::fs::create_dir_all(&workdir).unwrap();
    let id = "y#(touch pwned-id)#{session_name}";
    let task = Task::body("@say hello from a hostile name\n@marker\n").front(&format!(
        "workdir: {}",
        crate::harness::toml_str(&workdir.to_string_lossy())
    ));
    env.queue(id, &task);
    env.start_daemon();
    assert_eq!(env.wait_finished(id), "done");
    assert!(
        env.transcript_has_line(id, 1, "hello from a hostile name"),
        "the transcript went to the right file"
    );
    let cwd = std::env::current_dir().unwrap();
    for dir in [env.root.as_path(), env.repo.as_path(), cwd.as_path()] {
        let found = find_named(dir, "pwned");
        assert!(found.is_empty(), "something ran: {found:?}");
    }
    let spawn: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.run_dir(id, 1).join("spawn.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spawn["workdir"].as_str(), Some(workdir.to_str().unwrap()));
}
