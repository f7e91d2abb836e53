//! Scriptable fake coding agent (`nightshift test-agent`).
//!
//! Integration tests, the demo and the benchmark run this in place of a real
//! agent CLI. `@verb` lines inside the prompt decide what it does, so a task
//! file alone fully describes the "agent" behaviour.

use std::env::var;
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod script;

use script::{Step, parse_script, split_word};

/// Completion marker line the daemon scrapes from the pane.
pub const DEFAULT_MARKER: &str = "NIGHTSHIFT_DONE";

/// Arguments of `nightshift test-agent`; exactly one field must be set.
#[derive(Debug, clap::Args)]
pub struct TestAgentArgs {
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    pub prompt: Option<String>,
    /// Read the prompt from stdin: to its end (`stdin`), or typed into its terminal in raw
    /// mode with bracketed paste on, up to an Enter outside the paste, the way a terminal UI
    /// takes typed input (`typed`; see `read_pasted`).
    #[arg(long)]
    pub prompt_from: Option<String>,
    /// Claude Code-style hook settings: `@hook` runs the command they register, through
    /// `sh -c`, as Claude Code does.
    #[arg(long)]
    pub hook_settings: Option<PathBuf>,
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
        Step::SleepOnAttempt(n, d) => {
            let current = ctx
                .attempt
                .as_deref()
                .and_then(|a| a.trim().parse::<u32>().ok());
            if current == Some(*n) {
                thread::sleep(*d);
            }
        }
        Step::Write(path, text) => put(path, format!("{text}\n").as_bytes(), false)?,
        Step::Append(path, text) => {
            let pid = std::process::id().to_string();
            let vars = [
                ("attempt", ctx.attempt.as_deref().unwrap_or("")),
                ("task", ctx.task.as_deref().unwrap_or("")),
                ("pid", pid.as_str()),
            ];
            let line = expand(text, &vars);
            put(path, format!("{line}\n").as_bytes(), true)?;
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
            put(path, &value.unwrap_or_default(), false)?;
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
/// `@hook StopFailure ERROR`, `@hook PostToolUseFailure ERROR`, `@hook PreToolUse`: the
/// JSON Claude Code would send.
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
        "PostToolUseFailure" => {
            input["tool_name"] = "Bash".into();
            input["error"] = rest.into();
        }
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
mod tests;
