//! A prompt is data: shell, tmux and quoting syntax in it reaches the agent byte for byte
//! and is never executed, whether it arrives as a file or as an argument. Per delivery mode,
//! every hostile prompt arrives exactly, or cleaned and said so (typed), or fails the attempt
//! at once with a reason that says why.

use std::path::{Path, PathBuf};

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
/// Such an id is refused where it enters; such a workdir is fine.
#[test]
fn hostile_task_ids_and_workdirs_are_never_executed() {
    let mut env = Env::new();
    let workdir = env.path("w#(touch pwned-workdir)#{pane_id}");
    std::fs::create_dir_all(&workdir).unwrap();
    let bad_id = "y#(touch pwned-id)#{session_name}";
    let id = "y";
    let task = Task::body("@say hello from a hostile name\n@marker\n").front(&format!(
        "workdir: {}",
        crate::harness::toml_str(&workdir.to_string_lossy())
    ));
    env.queue(bad_id, &task);
    env.queue(id, &task);
    env.start_daemon();
    assert_eq!(env.wait_finished(bad_id), "failed");
    let error =
        std::fs::read_to_string(env.home.join("failed").join(format!("{bad_id}.error.txt")))
            .unwrap();
    assert!(error.contains("is not a valid task id"), "{error}");
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

/// How a delivery mode must treat one hostile prompt.
enum Expect {
    /// The agent gets the prompt byte for byte.
    Exact,
    /// The agent gets this text, and the report says this many sequences were removed.
    Cleaned(String, usize),
    /// The attempt fails before the agent starts, with a reason holding this text.
    Fails(String),
}

/// The prompts of the torture suite, by name, each ending in the script that records what
/// the agent got. `marker` must never exist: only an escaped paste would create it.
fn hostile_prompts(marker: &Path) -> Vec<(&'static str, String)> {
    let mut big = String::new();
    let mut n = 0;
    while big.len() < 1 << 20 {
        n += 1;
        big.push_str(&format!(
            "line {n:06}: the quick brown fox $(jumps) over `the` lazy #{{dog}}\n"
        ));
    }
    big.truncate((1 << 20) - 1);
    big.push('\n');
    vec![
        ("shell", HOSTILE.to_string()),
        (
            "escapes",
            "colour \u{1b}[1;31mred\u{1b}[0m, a title \u{1b}]0;pwned\u{7}, a link \
             \u{1b}]8;;http://x\u{1b}\\here\u{1b}]8;;\u{1b}\\, a reset \u{1b}c, a bell \u{7}\n"
                .to_string(),
        ),
        (
            "paste-end",
            format!(
                "\u{1b}[201~!touch {}\nthe rest of the prompt\n",
                marker.display()
            ),
        ),
        ("nul", "before\0after\n".to_string()),
        ("big", big),
    ]
}

/// Runs every hostile prompt through `agent` and checks each against `expect`, which gets the
/// case's name and the whole prompt (the script included); a cleaned text it returns is
/// followed by the script.
fn deliver_hostile(env: &mut Env, agent: &str, expect: impl Fn(&str, &str) -> Expect) {
    let marker = env.path("pwned-by-paste");
    let mut cases: Vec<(String, String, PathBuf, Expect)> = Vec::new();
    for (name, prompt) in hostile_prompts(&marker) {
        let id = format!("{agent}-{name}");
        let got = env.path(&format!("{id}.got"));
        let script = format!("@record {}\n@done\n", got.display());
        let body = format!("{prompt}{script}");
        env.queue(&id, &Task::body(&body).front(&format!("agent: {agent}")));
        let expect = match expect(name, &body) {
            Expect::Cleaned(text, n) => Expect::Cleaned(format!("{text}{script}"), n),
            other => other,
        };
        cases.push((id, body, got, expect));
    }
    env.start_daemon();
    let outcomes: Vec<&str> = cases.iter().map(|c| env.wait_finished(&c.0)).collect();
    assert!(!marker.exists(), "keys after the paste end were executed");
    for ((id, body, got, expect), outcome) in cases.into_iter().zip(outcomes) {
        let run = env.run_dir(&id, 1);
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
        match expect {
            Expect::Exact => {
                assert_eq!(outcome, "done", "{id}: {report:#}");
                let recorded = std::fs::read(&got).unwrap();
                assert!(
                    recorded == body.as_bytes(),
                    "{id}: the prompt changed on the way"
                );
                assert!(report["prompt_note"].is_null(), "{id}: {report:#}");
            }
            Expect::Cleaned(text, n) => {
                assert_eq!(outcome, "done", "{id}: {report:#}");
                let recorded = String::from_utf8(std::fs::read(&got).unwrap()).unwrap();
                assert_eq!(recorded, text, "{id}: the agent got the cleaned prompt");
                let note = format!(
                    "the typed prompt had {n} control sequence{} removed",
                    if n == 1 { "" } else { "s" }
                );
                assert_eq!(report["prompt_note"], note.as_str(), "{id}");
                let file = env.task_text(&id);
                assert!(
                    file.contains(&format!("| prompt | {note} |")),
                    "{id}: {file}"
                );
                let show = env.run(&["show", &id]);
                assert!(show.stdout.contains(&note), "{id}: {}", show.stdout);
            }
            Expect::Fails(why) => {
                assert_eq!(outcome, "failed", "{id}: {report:#}");
                let reason = report["reason"].as_str().unwrap();
                assert!(reason.contains(&why), "{id}: {reason}");
                assert!(
                    !run.join("spawn.json").exists(),
                    "{id}: it failed before any agent started"
                );
                assert!(!got.exists(), "{id}");
            }
        }
    }
    let cwd = std::env::current_dir().unwrap();
    for dir in [env.root.as_path(), env.repo.as_path(), cwd.as_path()] {
        let found = find_named(dir, "pwned");
        assert!(found.is_empty(), "something ran: {found:?}");
    }
}

fn env_with(profile: &str) -> Env {
    Env::builder()
        .config("max_agents", "3")
        .config_tail(&format!("[agents.m]\n{profile}\npreamble = false\n"))
        .build()
}

#[test]
fn argument_delivery_is_exact_or_fails_at_once() {
    let mut env = env_with("command = [\"{nightshift}\", \"test-agent\", \"{prompt}\"]");
    deliver_hostile(&mut env, "m", |name, body| match name {
        "nul" => Expect::Fails(format!(
            "the prompt ({} bytes) cannot be passed as an argument: an argument holds a NUL \
             byte (at byte 6 of {})",
            body.len(),
            body.len()
        )),
        "big" => Expect::Fails(format!(
            "the prompt ({} bytes) cannot be passed as an argument: an argument is {} bytes; \
             the system allows at most 131071 per argument",
            body.len(),
            body.len()
        )),
        _ => Expect::Exact,
    });
}

#[test]
fn prompt_file_delivery_is_exact() {
    let mut env = env_with(
        "command = [\"{nightshift}\", \"test-agent\", \"--prompt-file\", \"{prompt_file}\"]",
    );
    deliver_hostile(&mut env, "m", |_, _| Expect::Exact);
}

#[test]
fn stdin_delivery_is_exact() {
    let mut env = env_with(
        "command = [\"{nightshift}\", \"test-agent\", \"--prompt-from\", \"stdin\"]\n\
         prompt = \"stdin\"",
    );
    deliver_hostile(&mut env, "m", |_, _| Expect::Exact);
}

/// Typed text cannot hold what a terminal acts on: the control sequences go, the report
/// says how many, and nothing can end the paste early to type keys of its own.
#[test]
fn typed_delivery_is_cleaned_and_never_escapes_the_paste() {
    let mut env = env_with(
        "command = [\"{nightshift}\", \"test-agent\", \"--prompt-from\", \"typed\"]\n\
         prompt = \"typed\"\ntype_delay = \"300ms\"",
    );
    let marker = env.path("pwned-by-paste");
    deliver_hostile(&mut env, "m", |name, _| match name {
        "escapes" => Expect::Cleaned(
            "colour red, a title , a link here, a reset , a bell \n".into(),
            7,
        ),
        "paste-end" => Expect::Cleaned(
            format!("!touch {}\nthe rest of the prompt\n", marker.display()),
            1,
        ),
        "nul" => Expect::Cleaned("beforeafter\n".into(), 1),
        _ => Expect::Exact,
    });
}

/// A prompt that cannot be typed fails its attempt, with the reason and the prompt's size,
/// instead of leaving the agent waiting with nothing. The fault: the tmux server is stopped
/// (SIGSTOP) between the start and the typing, so the paste never gets an answer.
#[test]
fn a_prompt_that_cannot_be_typed_fails_the_attempt() {
    let mut env = env_with(
        "command = [\"{nightshift}\", \"test-agent\", \"--prompt-from\", \"typed\"]\n\
         prompt = \"typed\"\ntype_delay = \"3s\"",
    );
    let body = "@done\n";
    env.queue(
        "stuck",
        &Task::body(body).front("agent: m").front("max_attempts: 1"),
    );
    env.start_daemon();
    env.wait_started("stuck", 1);
    let out = env.tmux(&["list-sessions", "-F", "#{pid}"]);
    let server = String::from_utf8_lossy(&out.stdout);
    let server = server
        .lines()
        .next()
        .expect("the tmux server's pid")
        .to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &server])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {server}");
    };
    signal("-STOP");
    // The paste waits for tmux's 15 s time limit, then the attempt fails; before it, up to
    // 30 s for the agent's input (its bracketed-paste switch may not have reached the
    // transcript before the stop). Polled by hand: the harness's diagnostics would ask the
    // stopped server.
    let failed = env.task_path("failed", "stuck");
    let start = std::time::Instant::now();
    while !failed.is_file() && start.elapsed() < std::time::Duration::from_secs(75) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    signal("-CONT");
    assert!(
        failed.is_file(),
        "the attempt did not fail: {}",
        env.diagnostics()
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.run_dir("stuck", 1).join("report.json")).unwrap(),
    )
    .unwrap();
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "cannot type the prompt ({} bytes) into the session: tmux load-buffer did not answer",
            body.len()
        )),
        "{reason}"
    );
}

/// `nightshift send` (and the dashboard's `s`) types keys: an ESC would interrupt an agent
/// UI and a ^C would kill it, so control sequences never reach the pane, and `send` says
/// how many it removed.
#[test]
fn send_types_no_control_sequences() {
    let mut env = Env::new();
    env.queue("ask", &Task::script(["@ask Proceed?", "@done"]));
    env.start_daemon();
    env.wait_until("the question is in the transcript", |env| {
        env.transcript_has_line("ask", 1, "Proceed?")
    });
    let out = env.run(&["send", "ask", "yes \u{1b}[201~\u{1b}[31mplease\u{3}"]);
    out.success();
    assert_eq!(env.wait_finished("ask"), "done");
    assert!(
        env.transcript_has_line("ask", 1, "answer: yes please"),
        "{}",
        env.transcript("ask", 1)
    );
    assert_eq!(
        out.stdout.trim(),
        "sent to ask (the text had 3 control sequences removed)"
    );
}
