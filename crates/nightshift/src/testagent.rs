//! Scriptable fake coding agent (`nightshift test-agent`).
//!
//! Integration tests, the demo and the benchmark run this in place of a real
//! agent CLI. `@verb` lines inside the prompt decide what it does, so a task
//! file alone fully describes the "agent" behaviour.

use std::env::var;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Completion marker line the daemon scrapes from the pane.
pub const DEFAULT_MARKER: &str = "NIGHTSHIFT_DONE";

/// Arguments of `nightshift test-agent`; exactly one field must be set.
pub struct TestAgentArgs {
    pub prompt_file: Option<PathBuf>,
    pub prompt: Option<String>,
    /// Read the prompt from stdin: to its end (`stdin`), or typed into its terminal in raw
    /// mode with bracketed paste on, up to an Enter outside the paste, the way a terminal UI
    /// takes typed input (`typed`; see `read_pasted`).
    pub prompt_from: Option<String>,
    /// Claude Code-style hook settings: `@hook` runs the command they register, through
    /// `sh -c`, as Claude Code does.
    pub hook_settings: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Say(String),
    Sleep(Duration),
    Write(PathBuf, String),
    Append(PathBuf, String),
    Commit(String),
    Ask(String),
    /// Text and how many times to print it.
    Error(String, u32),
    Hang,
    Exit(i32),
    /// Attempt number and exit code.
    ExitOnAttempt(u32, i32),
    Marker(Option<String>),
    /// `--fail` flag and summary.
    Done(bool, Option<String>),
    Record(PathBuf),
    Stamp(PathBuf),
    /// Variable name and output path.
    Env(String, PathBuf),
    /// Reports a hook event the way Claude Code does: `nightshift hook` with its JSON on
    /// stdin. Event name and the rest of the line.
    Hook(String, String),
}

/// A script line that cannot run, e.g. "unknown step '@foo'", plus its
/// 1-based prompt line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScriptError {
    what: String,
    line: usize,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on prompt line {}", self.what, self.line)
    }
}

/// What steps read besides their arguments: from the environment in `run`,
/// built by hand in tests.
struct Context {
    prompt: Vec<u8>,
    attempt: Option<String>,
    task: Option<String>,
}

/// A failed step: exit code plus a message for stderr.
type Failure = (i32, String);

/// Runs the script found in the prompt and returns the process exit code.
pub fn run(args: TestAgentArgs) -> i32 {
    let prompt = match (args.prompt_file, args.prompt, args.prompt_from.as_deref()) {
        (Some(path), None, None) => match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => return fail(2, &format!("cannot read {}: {e}", path.display())),
        },
        (None, Some(prompt), None) => prompt.into_bytes(),
        (None, None, Some("stdin")) => {
            let mut bytes = Vec::new();
            if let Err(e) = io::Read::read_to_end(&mut io::stdin(), &mut bytes) {
                return fail(2, &format!("cannot read stdin: {e}"));
            }
            bytes
        }
        (None, None, Some("typed")) => match read_pasted() {
            Ok(bytes) => bytes,
            Err(e) => return fail(2, &format!("cannot read the typed prompt: {e}")),
        },
        // Never fall back to stdin unasked: it is the pane's terminal and would block.
        _ => {
            return fail(
                2,
                "exactly one of --prompt-file PATH, PROMPT or --prompt-from stdin|typed is required",
            );
        }
    };
    if let Some(settings) = args.hook_settings {
        HOOK_SETTINGS.with(|h| *h.borrow_mut() = Some(settings));
    }
    echo(&prompt);
    say("--- test-agent: running script ---");
    let steps = match parse_script(&String::from_utf8_lossy(&prompt)) {
        Ok(steps) => steps,
        Err(e) => return fail(2, &e.to_string()),
    };
    let ctx = Context {
        prompt,
        attempt: var("NIGHTSHIFT_ATTEMPT").ok(),
        task: var("NIGHTSHIFT_TASK_ID").ok(),
    };
    execute(&steps, &ctx)
}

thread_local! {
    static HOOK_SETTINGS: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Waits at a prompt for a message, the way a terminal UI takes typed input: in raw mode,
/// with bracketed paste on. Pasted text and typed keys fill an input box; Enter outside a
/// paste submits it. Like Claude Code's bash mode, a box that starts with a *typed* `!`
/// runs the rest in a shell on Enter instead: that is the harm keys arriving outside the
/// paste can do.
fn read_pasted() -> io::Result<Vec<u8>> {
    crossterm::terminal::enable_raw_mode()?;
    let read = read_message();
    let restored = crossterm::terminal::disable_raw_mode();
    let message = read?;
    restored?;
    let mut out = io::stdout();
    writeln!(out, "\x1b[?2004l")?;
    out.flush()?;
    Ok(message)
}

fn read_message() -> io::Result<Vec<u8>> {
    const START: &[u8] = b"\x1b[200~";
    const END: &[u8] = b"\x1b[201~";
    let mut out = io::stdout();
    // Ask the terminal for bracketed paste, then show a prompt.
    write!(out, "\x1b[?2004h> ")?;
    out.flush()?;
    let mut input_box = Vec::new();
    let mut in_paste = false;
    let mut shell_mode = false;
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    let mut byte = [0u8; 1];
    while io::Read::read(&mut stdin, &mut byte)? != 0 {
        let b = byte[0];
        if !in_paste && matches!(b, b'\r' | b'\n') {
            if shell_mode {
                let line = String::from_utf8_lossy(&input_box[1..]).into_owned();
                let _ = Command::new("sh")
                    .args(["-c", &line])
                    .stdin(Stdio::null())
                    .status();
                input_box.clear();
                shell_mode = false;
                continue;
            }
            if input_box.is_empty() {
                continue;
            }
            break;
        }
        if !in_paste && b == b'!' && input_box.is_empty() {
            shell_mode = true;
        }
        input_box.push(b);
        for (mark, pasting) in [(START, true), (END, false)] {
            if input_box.ends_with(mark) {
                input_box.truncate(input_box.len() - mark.len());
                in_paste = pasting;
            }
        }
    }
    // A paste sends every line end as CR.
    Ok(input_box
        .into_iter()
        .map(|b| if b == b'\r' { b'\n' } else { b })
        .collect())
}

/// Prints the prompt line by line, flushing each, like an agent UI would.
fn echo(prompt: &[u8]) {
    if prompt.is_empty() {
        return;
    }
    let mut out = io::stdout().lock();
    let body = prompt.strip_suffix(b"\n").unwrap_or(prompt);
    for line in body.split(|&b| b == b'\n') {
        // Output errors are ignored: if the pane is gone nobody can read it.
        let _ = out.write_all(line).and_then(|()| out.write_all(b"\n"));
        let _ = out.flush();
    }
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Reports on stderr (without `eprintln!`, which panics if stderr is closed).
fn fail(code: i32, message: &str) -> i32 {
    let _ = writeln!(io::stderr(), "test-agent: {message}");
    code
}

fn parse_script(prompt: &str) -> Result<Vec<Step>, ScriptError> {
    let lines = prompt.lines().enumerate();
    let steps = lines.filter_map(|(i, raw)| Some((i + 1, raw.trim().strip_prefix('@')?)));
    steps.map(|(line, body)| parse_step(body, line)).collect()
}

fn parse_step(body: &str, line: usize) -> Result<Step, ScriptError> {
    let (verb, rest) = split_word(body);
    let bad = |why: &str| ScriptError {
        what: format!("bad step '@{verb}' ({why})"),
        line,
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let code = |s: &str| s.parse().map_err(|_| bad("expected an integer exit code"));
    let path = |p: &str| match p {
        "" => Err(bad("missing PATH")),
        p => Ok(PathBuf::from(p)),
    };
    let single_path = || match words[..] {
        [p] => path(p),
        _ => Err(bad("expected exactly one PATH")),
    };
    let text = rest.to_string();
    Ok(match verb {
        "say" => Step::Say(text),
        "sleep" => Step::Sleep(parse_duration(rest).ok_or(bad("expected e.g. 250ms, 2s, 1m, 1h"))?),
        "write" => Step::Write(path(split_word(rest).0)?, split_word(rest).1.to_string()),
        "append" => Step::Append(path(split_word(rest).0)?, split_word(rest).1.to_string()),
        // git refuses an empty commit message, so reject it while parsing.
        "commit" if rest.is_empty() => return Err(bad("missing MESSAGE")),
        "commit" => Step::Commit(text),
        "ask" => Step::Ask(text),
        "error" => match split_repeat(rest) {
            (_, 0) => return Err(bad("repeat count must be at least 1")),
            (text, count) => Step::Error(text.to_string(), count),
        },
        "hang" if rest.is_empty() => Step::Hang,
        "exit" => Step::Exit(code(rest)?),
        "exit-on-attempt" => match words[..] {
            [n, c] => {
                let attempt = n.parse().map_err(|_| bad("expected an attempt number"))?;
                Step::ExitOnAttempt(attempt, code(c)?)
            }
            _ => return Err(bad("expected N CODE")),
        },
        "marker" => Step::Marker(Some(text).filter(|t| !t.is_empty())),
        "done" => {
            let (fail, summary) = match split_word(rest) {
                ("--fail", summary) => (true, summary),
                _ => (false, rest),
            };
            let summary = Some(summary.to_string()).filter(|s| !s.is_empty());
            Step::Done(fail, summary)
        }
        "record" => Step::Record(single_path()?),
        "stamp" => Step::Stamp(single_path()?),
        "env" => match words[..] {
            [name, p] => Step::Env(name.to_string(), path(p)?),
            _ => return Err(bad("expected NAME PATH")),
        },
        "hook" if rest.is_empty() => return Err(bad("missing EVENT")),
        "hook" => Step::Hook(
            split_word(rest).0.to_string(),
            split_word(rest).1.to_string(),
        ),
        "hang" => return Err(bad("takes no arguments")),
        _ => {
            let what = format!("unknown step '@{verb}'");
            return Err(ScriptError { what, line });
        }
    })
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

/// Splits an optional trailing ` xN` repeat count off `@error` text.
fn split_repeat(rest: &str) -> (&str, u32) {
    if let Some((text, last)) = rest.rsplit_once(char::is_whitespace)
        && let Some(digits) = last.strip_prefix('x')
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(count) = digits.parse()
    {
        return (text.trim_end(), count);
    }
    (rest, 1)
}

/// Parses `250ms`, `2s`, `1m`, `1h` (whole numbers only).
fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// Expands `{attempt}`, `{task}` and `{pid}` (the agent's own process id) in one pass, so
/// that substituted values are never expanded again.
fn expand(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let found = vars.iter().find_map(|(name, value)| {
            let after = rest
                .strip_prefix('{')?
                .strip_prefix(name)?
                .strip_prefix('}')?;
            Some((*value, after))
        });
        let (value, after) = found.unwrap_or(("{", &rest[1..]));
        out.push_str(value);
        rest = after;
    }
    out + rest
}

/// Exit code for `@exit-on-attempt N CODE`, or `None` to keep going. An
/// unset or unparsable attempt never matches.
fn exit_on_attempt(current: Option<&str>, n: u32, code: i32) -> Option<i32> {
    let current: u32 = current?.trim().parse().ok()?;
    (current == n).then_some(code)
}

fn execute(steps: &[Step], ctx: &Context) -> i32 {
    for step in steps {
        let result = match step {
            Step::Exit(code) => return *code,
            Step::ExitOnAttempt(attempt, code) => {
                match exit_on_attempt(ctx.attempt.as_deref(), *attempt, *code) {
                    Some(code) => return code,
                    None => Ok(()),
                }
            }
            step => run_step(step, ctx),
        };
        if let Err((code, message)) = result {
            return fail(code, &message);
        }
    }
    0
}

fn run_step(step: &Step, ctx: &Context) -> Result<(), Failure> {
    match step {
        Step::Say(text) => say(text),
        Step::Sleep(d) => thread::sleep(*d),
        Step::Write(path, text) => put(path, format!("{text}\n").as_bytes(), false)?,
        Step::Append(path, text) => {
            let pid = std::process::id().to_string();
            let vars = [
                ("attempt", ctx.attempt.as_deref().unwrap_or("")),
                ("task", ctx.task.as_deref().unwrap_or("")),
                ("pid", pid.as_str()),
            ];
            let line = expand(text, &vars);
            put(path, format!("{line}\n").as_bytes(), true)?
        }
        Step::Commit(message) => {
            commit(message).map_err(|e| (3, e))?;
            say(&format!("committed: {message}"));
        }
        Step::Ask(question) => {
            say(question);
            let mut line = Vec::new();
            match io::stdin().lock().read_until(b'\n', &mut line) {
                Ok(0) => return Err((4, "stdin closed while waiting for an answer".into())),
                Err(e) => return Err((4, format!("cannot read the answer: {e}"))),
                Ok(_) => {}
            }
            let answer = String::from_utf8_lossy(&line);
            let answer = answer.trim_end_matches(['\r', '\n']);
            say(&format!("answer: {answer}"));
        }
        Step::Error(text, count) => {
            for i in 0..*count {
                if i > 0 {
                    thread::sleep(Duration::from_millis(100));
                }
                say(&format!("error: {text}"));
            }
        }
        Step::Hang => loop {
            thread::sleep(Duration::from_secs(3600));
        },
        Step::Marker(None) => say(DEFAULT_MARKER),
        Step::Marker(Some(text)) => say(&format!("{DEFAULT_MARKER} {text}")),
        Step::Done(fail, summary) => signal_done(*fail, summary.as_deref()).map_err(|e| (5, e))?,
        Step::Record(path) => put(path, &ctx.prompt, false)?,
        Step::Stamp(path) => stamp(path)?,
        Step::Env(name, path) => {
            let value = std::env::var_os(name).map(OsString::into_encoded_bytes);
            put(path, &value.unwrap_or_default(), false)?
        }
        Step::Hook(event, rest) => report_hook(event, rest).map_err(|e| (5, e))?,
        Step::Exit(_) | Step::ExitOnAttempt(..) => {} // handled by `execute`
    }
    Ok(())
}

/// Writes or appends `bytes` in one call (so concurrent appenders never
/// interleave within a line), creating parent directories.
fn put(path: &Path, bytes: &[u8], append: bool) -> Result<(), Failure> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_fail(dir))?;
    }
    let file = match append {
        true => fs::OpenOptions::new().create(true).append(true).open(path),
        false => fs::File::create(path),
    };
    let written = file.and_then(|mut f| f.write_all(bytes));
    written.map_err(io_fail(path))
}

fn io_fail(path: &Path) -> impl FnOnce(io::Error) -> Failure + '_ {
    move |e| (1, format!("{}: {e}", path.display()))
}

fn now_nanos() -> Result<u128, Failure> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    let nanos = now.map(|d| d.as_nanos());
    nanos.map_err(|e| (1, format!("clock before 1970: {e}")))
}

/// Writes the time then renames, so a polling reader never sees a partial file.
fn stamp(path: &Path) -> Result<(), Failure> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    put(Path::new(&tmp), now_nanos()?.to_string().as_bytes(), false)?;
    fs::rename(&tmp, path).map_err(io_fail(path))
}

fn commit(message: &str) -> Result<(), String> {
    let (file, line) = (
        Path::new("nightshift-test-agent.txt"),
        format!("{message}\n"),
    );
    put(file, line.as_bytes(), true).map_err(|(_, e)| e)?;
    git(&["add", "-A"])?;
    // Fresh CI machines often lack a git identity; a fallback keeps tests from
    // failing for reasons unrelated to nightshift.
    let mut args = vec![];
    if git(&["config", "user.name"])
        .and(git(&["config", "user.email"]))
        .is_err()
    {
        args.extend("-c user.name=test-agent -c user.email=test-agent@invalid".split(' '));
    }
    args.extend(["commit", "-q", "-m", message]);
    git(&args)
}

fn git(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("git");
    let out = cmd.args(args).stdin(Stdio::null()).output();
    let out = out.map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let (cmd, stderr) = (args.join(" "), String::from_utf8_lossy(&out.stderr));
    let (status, stderr) = (out.status, stderr.trim());
    Err(format!("git {cmd} failed ({status}): {stderr}"))
}

/// Runs `<our binary> done [--fail] [--summary S]`, the official signal.
fn signal_done(fail: bool, summary: Option<&str>) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("done").args(fail.then_some("--fail"));
    cmd.args(summary.map(|s| ["--summary", s]).into_iter().flatten());
    // stdin is the pane: the child must not swallow answers meant for @ask.
    let status = cmd.stdin(Stdio::null()).status();
    match status.map_err(|e| format!("cannot run `done`: {e}"))? {
        s if s.success() => Ok(()),
        s => Err(format!("`done` failed: {s}")),
    }
}

/// `@hook Notification permission_prompt MESSAGE`, `@hook Stop LAST WORDS`,
/// `@hook StopFailure ERROR`, `@hook PreToolUse`: the JSON Claude Code would send.
fn hook_input(event: &str, rest: &str) -> serde_json::Value {
    let mut input = serde_json::json!({
        "hook_event_name": event,
        "session_id": "test-agent-session",
        "cwd": std::env::current_dir().unwrap_or_default(),
    });
    let (kind, message) = split_word(rest);
    match event {
        "Notification" => {
            input["notification_type"] = kind.into();
            input["message"] = message.into();
        }
        "Stop" => input["last_assistant_message"] = rest.into(),
        "StopFailure" => input["error"] = rest.into(),
        _ => input["tool_name"] = "Bash".into(),
    }
    input
}

fn report_hook(event: &str, rest: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut command = Command::new(exe);
    command.arg("hook");
    if let Some(settings) = HOOK_SETTINGS.with(|h| h.borrow().clone()) {
        // Exactly what Claude Code runs: the registered command line, through a shell.
        let text = fs::read(&settings).map_err(|e| format!("{}: {e}", settings.display()))?;
        let json: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", settings.display()))?;
        let line = json["hooks"][event][0]["hooks"][0]["command"]
            .as_str()
            .ok_or_else(|| format!("{} registers no hook for {event}", settings.display()))?
            .to_string();
        command = Command::new("sh");
        command.arg("-c").arg(line);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the hook: {e}"))?;
    let input = hook_input(event, rest).to_string();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("cannot write the hook input: {e}"))?;
    }
    match child.wait().map_err(|e| format!("`hook` failed: {e}"))? {
        s if s.success() => Ok(()),
        s => Err(format!("`hook` failed: {s}")),
    }
}

#[cfg(test)]
mod tests {
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
                   |@exit-on-attempt x 1|@record|@record a b|@env N|@error e x0";
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
}
