use super::script::{ScriptError, parse_duration, split_repeat};
use super::*;

fn one(line: &str) -> Result<Step, ScriptError> {
    let mut steps = parse_script(line)?;
    assert_eq!(steps.len(), 1, "expected one step from {line:?}");
    Ok(steps.remove(0))
}

fn ctx(prompt: &[u8], attempt: Option<&str>) -> Context {
    let (attempt, task) = (attempt.map(String::from), Some("t-42".into()));
    Context {
        prompt: prompt.to_vec(),
        attempt,
        task,
    }
}

/// A fresh directory under the system temp dir; each test removes its own.
fn scratch(name: &str) -> PathBuf {
    let nanos = now_nanos().expect("clock");
    let unique = format!("ns-testagent-{name}-{}-{nanos}", std::process::id());
    let dir = std::env::temp_dir().join(unique);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn parses_every_verb() {
    let (p, s) = (PathBuf::from, String::from);
    let cases = [
        ("@say hello  world", Step::Say(s("hello  world"))),
        ("@sleep 250ms", Step::Sleep(Duration::from_millis(250))),
        ("@write a/b x  y", Step::Write(p("a/b"), s("x  y"))),
        ("@write empty.txt", Step::Write(p("empty.txt"), s(""))),
        ("@append l {attempt}", Step::Append(p("l"), s("{attempt}"))),
        ("@commit fix: $(x) `y`", Step::Commit(s("fix: $(x) `y`"))),
        ("@ask Which colour?", Step::Ask(s("Which colour?"))),
        ("@error boom", Step::Error(s("boom"), 1)),
        ("@hang", Step::Hang),
        ("@exit 7", Step::Exit(7)),
        ("@exit -1", Step::Exit(-1)),
        ("@exit-on-attempt 1 3", Step::ExitOnAttempt(1, 3)),
        (
            "@sleep-on-attempt 1 2s",
            Step::SleepOnAttempt(1, Duration::from_secs(2)),
        ),
        ("@marker", Step::Marker(None)),
        ("@marker all good", Step::Marker(Some(s("all good")))),
        ("@done", Step::Done(false, None)),
        ("@done --fail", Step::Done(true, None)),
        ("@done --fail red", Step::Done(true, Some(s("red")))),
        ("@done shipped it", Step::Done(false, Some(s("shipped it")))),
        ("@record prompt.bin", Step::Record(p("prompt.bin"))),
        ("@stamp t.ns", Step::Stamp(p("t.ns"))),
        ("@env HOME env.txt", Step::Env(s("HOME"), p("env.txt"))),
        (
            "@hook Notification permission_prompt Needs Bash",
            Step::Hook(s("Notification"), s("permission_prompt Needs Bash")),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(one(line), Ok(want), "{line}");
    }
}

#[test]
fn bad_arguments_name_the_line() {
    let bad = "@sleep soon|@write|@append|@commit|@hang now|@exit x|@exit|@exit-on-attempt 1\
               |@exit-on-attempt x 1|@sleep-on-attempt 1|@sleep-on-attempt 1 x|@record|@record a b|@env N|@error e x0";
    for step in bad.split('|') {
        let err = parse_script(&format!("prose\n{step}\n@say later")).unwrap_err();
        let verb = step.split(' ').next().unwrap_or_default();
        let prefix = format!("bad step '{verb}' (");
        assert!(err.to_string().starts_with(&prefix), "{err}");
        assert_eq!(err.line, 2, "{step}");
    }
}

#[test]
fn error_repeat_suffix() {
    let cases = [
        ("build failed: E0308 x5", "build failed: E0308", 5),
        ("a\tx12", "a", 12),
        ("boom", "boom", 1),
        ("x5", "x5", 1),
        ("boomx5", "boomx5", 1),
        ("fix x-ray", "fix x-ray", 1),
        ("a x5x", "a x5x", 1),
        ("a x", "a x", 1),
        ("a x+5", "a x+5", 1),
    ];
    for (rest, text, count) in cases {
        assert_eq!(split_repeat(rest), (text, count), "{rest}");
    }
    let want = Step::Error("build failed: E0308".into(), 5);
    assert_eq!(one("@error build failed: E0308 x5"), Ok(want));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
    assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
    for bad in "|5|ms|1.5s|2d|-1s|1 s|1S|s1|99999999999999999999h".split('|') {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn unknown_verb_names_its_line() {
    let err = parse_script("Fix it.\n\n  @say hi\n\t@frobnicate now\n@say x").unwrap_err();
    let msg = err.to_string();
    assert_eq!(msg, "unknown step '@frobnicate' on prompt line 4");
    let bare = parse_script("@").unwrap_err().to_string();
    assert_eq!(bare, "unknown step '@' on prompt line 1");
}

#[test]
fn prose_is_ignored() {
    let prompt = "# Task\nMail me@example.com\n- [ ] `@say` quoted\n\n   @say indented\r\n\
                  NIGHTSHIFT_DONE\n";
    assert_eq!(parse_script(prompt), Ok(vec![Step::Say("indented".into())]));
    assert_eq!(parse_script(""), Ok(vec![]));
}

#[test]
fn expands_attempt_task_and_pid() {
    let vars = |attempt, task| [("attempt", attempt), ("task", task), ("pid", "42")];
    assert_eq!(expand("{attempt} of {task}", &vars("2", "t-1")), "2 of t-1");
    assert_eq!(expand("{task}{task}", &vars("1", "ab")), "abab");
    assert_eq!(expand("{task} {pid}", &vars("1", "ab")), "ab 42");
    let untouched = "{ {attempt {}} {Task} {";
    assert_eq!(expand(untouched, &vars("1", "t")), untouched);
    assert_eq!(expand("{attempt}", &vars("{task}", "t")), "{task}");
    assert_eq!(expand("ünï{{attempt}}", &vars("3", "")), "ünï{3}");
}

#[test]
fn exit_on_attempt_decision() {
    assert_eq!(exit_on_attempt(Some("1"), 1, 3), Some(3));
    assert_eq!(exit_on_attempt(Some("2\n"), 2, 0), Some(0));
    assert_eq!(exit_on_attempt(Some("2"), 1, 3), None);
    assert_eq!(exit_on_attempt(Some("one"), 1, 3), None);
    assert_eq!(exit_on_attempt(None, 1, 3), None);
}

#[test]
fn record_round_trips_hostile_bytes() {
    let dir = scratch("record");
    let path = dir.join("nested/prompt.bin");
    let mut prompt = b"$(touch pwned) `id` 'q' \"d\"; rm -rf ~ #{pane_id} {task}\n\r\n\
                       \xff\xfe\x00\ttab\n  @record "
        .to_vec();
    prompt.extend_from_slice(path.to_str().expect("utf-8 temp dir").as_bytes());
    prompt.extend_from_slice(b"\n\n");
    let steps = parse_script(&String::from_utf8_lossy(&prompt));
    let code = steps.map(|steps| execute(&steps, &ctx(&prompt, None)));
    let got = fs::read(&path);
    fs::remove_dir_all(&dir).expect("remove scratch dir");
    assert_eq!(code, Ok(0));
    assert_eq!(got.expect("read recorded prompt"), prompt);
    assert!(!Path::new("pwned").exists());
}

#[test]
fn execute_stops_at_exit_and_expands_appends() {
    let dir = scratch("append");
    let log = dir.join("starts.log");
    let script = format!(
        "@append {0} started {{attempt}} {{task}}\n@exit-on-attempt 1 9\n\
         @append {0} survived\n@exit 7\n@append {0} never\n",
        log.display()
    );
    let steps = parse_script(&script).expect("parse");
    let run = |attempt| execute(&steps, &ctx(b"", Some(attempt)));
    let codes = (run("1"), run("2"));
    let got = fs::read_to_string(&log);
    fs::remove_dir_all(&dir).expect("remove scratch dir");
    assert_eq!(codes, (9, 7));
    let want = "started 1 t-42\nstarted 2 t-42\nsurvived\n";
    assert_eq!(got.expect("read log"), want);
}

#[test]
fn stamp_env_and_write_produce_files() {
    let dir = scratch("stamp");
    let before = now_nanos().expect("clock");
    let steps = [
        Step::Stamp(dir.join("t.ns")),
        Step::Env("PATH".into(), dir.join("path.txt")),
        Step::Env("NS_TESTAGENT_SURELY_UNSET".into(), dir.join("unset.txt")),
        Step::Write(dir.join("w/x.txt"), "hi".into()),
    ];
    let code = execute(&steps, &ctx(b"", None));
    let read = |name| fs::read_to_string(dir.join(name)).unwrap_or_else(|e| e.to_string());
    let files = ["t.ns", "path.txt", "unset.txt", "w/x.txt"].map(read);
    let tmp_left = dir.join("t.ns.tmp").exists();
    fs::remove_dir_all(&dir).expect("remove scratch dir");
    assert_eq!(code, 0);
    assert!(!tmp_left);
    let stamp: u128 = files[0].parse().expect("stamp is an integer");
    let window = before..before + 60_000_000_000;
    assert!(window.contains(&stamp), "{stamp} not in {window:?}");
    let path = std::env::var("PATH").unwrap_or_default();
    assert_eq!(files[1..], [path, String::new(), "hi\n".into()]);
}
