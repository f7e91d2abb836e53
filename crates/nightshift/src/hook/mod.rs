//! Claude Code hooks: precise "needs a person" and "working again" signals, with the screen
//! as the fallback.
//!
//! Each run of a profile whose command has `{hook_settings}` gets its own settings file,
//! passed with `--settings`; the user's `~/.claude/settings.json` is never edited. Every hook
//! runs `nightshift hook --run-dir DIR`, which appends what matters of the event to the
//! run's `hooks.jsonl`. The daemon follows that file like the transcript, so an event is seen
//! through a file notification, and nothing is lost while the daemon is down.

pub mod codex;
pub mod gemini;

use std::io::Read;
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::run::{self, RunDir};
use crate::tmux::shell_quote;
use nightshift_core::attention::{self, Hook};

/// Whose hook vocabulary an event is in. Other agents' events are translated into Claude
/// Code's (the first and richest) before they are recorded, so the daemon reads one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Dialect {
    #[default]
    Claude,
    Codex,
    Gemini,
}

impl Dialect {
    /// The CLI's name in flags, when it is not Claude Code (whose records carry none).
    fn agent(self) -> Option<&'static str> {
        match self {
            Dialect::Claude => None,
            Dialect::Codex => Some("Codex"),
            Dialect::Gemini => Some("Gemini CLI"),
        }
    }

    /// The event in Claude Code's vocabulary (`hook_event_name` and its fields), or `None`
    /// when nightshift has no use for it.
    fn translate(self, input: Value) -> Option<Value> {
        match self {
            Dialect::Claude => Some(input),
            Dialect::Codex => codex::translate(input),
            Dialect::Gemini => gemini::translate(input),
        }
    }

    /// The agent CLI a profile runs, by its program's file name, else the profile's name
    /// (a wrapper script): it decides what nightshift writes for `{hook_settings}`.
    pub fn for_agent(program: &str, profile_name: &str) -> Dialect {
        let program = Path::new(program)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(program);
        [program, profile_name]
            .iter()
            .find_map(|name| match *name {
                "codex" => Some(Dialect::Codex),
                "gemini" => Some(Dialect::Gemini),
                "claude" => Some(Dialect::Claude),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The name of the per-run file `{hook_settings}` stands for.
    pub fn settings_file(self) -> &'static str {
        match self {
            // Gemini CLI reads a policy only from a `.toml` file.
            Dialect::Gemini => gemini::POLICY_FILE,
            Dialect::Claude | Dialect::Codex => run::HOOK_SETTINGS,
        }
    }

    /// What `{hook_settings}` holds for a run: Claude Code's settings with nightshift's
    /// hooks, or Gemini CLI's policy that lets `nightshift done` run unasked.
    pub fn settings_contents(self, exe: &Path, run_dir: &Path) -> Vec<u8> {
        match self {
            Dialect::Gemini => gemini::policy().into_bytes(),
            Dialect::Claude | Dialect::Codex => {
                serde_json::to_vec_pretty(&settings(exe, run_dir)).unwrap_or_default()
            }
        }
    }
}

/// Hook events nightshift registers, and the Notification types that mean "needs a person".
const EVENTS: &[&str] = &[
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "Notification",
    "Stop",
    "StopFailure",
];
const NEEDS_INPUT: &[&str] = &["permission_prompt", "elicitation_dialog", "idle_prompt"];

/// The most of a hook's input that is read; tool results can be large and are not kept.
const MAX_INPUT: u64 = 8 * 1024 * 1024;
/// Texts kept from an event are cut to this many characters.
const MAX_TEXT: usize = 2000;

/// What is kept of one hook event. Tool inputs and results are not: they may hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    pub at: Timestamp,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_type: Option<String>,
    /// The notification's message, the error, or the last assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// A failed tool's error, as a bounded fingerprint (one normalised line, see
    /// [`attention::error_fingerprint`]), for the repeated-error signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The agent CLI that sent it, when not Claude Code (the event was translated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// The agent's own session, as its SessionStart hook reported it (for resuming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: String,
    #[serde(default)]
    pub transcript_path: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    pub at: Timestamp,
}

impl HookRecord {
    /// Picks the fields nightshift uses out of a hook's JSON input.
    pub fn from_input(input: &Value, at: Timestamp) -> Option<HookRecord> {
        let field = |name: &str| input.get(name).and_then(Value::as_str).map(cut);
        let event = input.get("hook_event_name")?.as_str()?.to_string();
        let text = match event.as_str() {
            "Notification" => field("message"),
            "StopFailure" => field("error").or_else(|| field("error_details")),
            "Stop" => field("last_assistant_message"),
            _ => None,
        };
        // An interrupt (Esc) is a person's doing, not the tool's error.
        let interrupted = input.get("is_interrupt").and_then(Value::as_bool) == Some(true);
        let error = (event == "PostToolUseFailure" && !interrupted)
            .then(|| input.get("error").and_then(Value::as_str))
            .flatten()
            .and_then(attention::error_fingerprint);
        Some(HookRecord {
            at,
            error,
            session_id: field("session_id"),
            notification_type: field("notification_type"),
            text,
            tool: field("tool_name"),
            permission_mode: field("permission_mode"),
            agent: None,
            event,
        })
    }

    /// What the event tells about the agent, if anything.
    pub fn observation(&self) -> Option<Hook> {
        let text = self.text.clone().unwrap_or_default();
        let agent = self.agent.as_deref().unwrap_or("Claude Code");
        match self.event.as_str() {
            "PreToolUse" => Some(Hook::ToolRequested(
                self.tool.clone().unwrap_or_else(|| "a tool".into()),
            )),
            "PostToolUseFailure" => Some(match &self.error {
                Some(print) => Hook::ToolFailed(match &self.tool {
                    Some(tool) => format!("{tool}: {print}"),
                    None => print.clone(),
                }),
                None => Hook::Working,
            }),
            "UserPromptSubmit" | "PostToolUse" => Some(Hook::Working),
            "Notification" => {
                let kind = self.notification_type.as_deref().unwrap_or_default();
                if NEEDS_INPUT.contains(&kind) {
                    let what = if text.is_empty() {
                        kind.replace('_', " ")
                    } else {
                        text
                    };
                    Some(Hook::NeedsInput(format!("{agent}: {what} ({kind})")))
                } else if kind == "elicitation_response" {
                    Some(Hook::Working)
                } else {
                    None
                }
            }
            "Stop" => Some(Hook::TurnEnded(text)),
            "StopFailure" => Some(Hook::TurnFailed(format!(
                "{agent}: an API error ended the turn: {text}"
            ))),
            _ => None,
        }
    }
}

/// The `--settings` JSON for one run: every event in [`EVENTS`] runs `nightshift hook`.
pub fn settings(exe: &Path, run_dir: &Path) -> Value {
    let command = format!(
        "{} hook --run-dir {}",
        shell_quote(&exe.to_string_lossy()),
        shell_quote(&run_dir.to_string_lossy())
    );
    let handler = json!([{ "hooks": [{ "type": "command", "command": command, "timeout": 10 }] }]);
    let hooks: serde_json::Map<String, Value> = EVENTS
        .iter()
        .map(|e| (e.to_string(), handler.clone()))
        .collect();
    json!({ "hooks": hooks })
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `nightshift hook`: records the event on stdin for the run in `run_dir` (or
/// `$NIGHTSHIFT_RUN_DIR`). Always exits 0 and prints nothing to stdout, so it can never
/// block or steer the agent; problems go to stderr.
pub fn run_cli(run_dir: Option<&Path>, dialect: Dialect, payload: Option<&str>) -> i32 {
    if let Err(e) = record(run_dir, dialect, payload) {
        eprintln!("nightshift hook: {e}");
    }
    0
}

fn record(run_dir: Option<&Path>, dialect: Dialect, payload: Option<&str>) -> Result<(), String> {
    let from_env = std::env::var_os("NIGHTSHIFT_RUN_DIR").map(std::path::PathBuf::from);
    let Some(dir) = run_dir.map(Path::to_path_buf).or(from_env) else {
        // Not started by nightshift: nothing to tell.
        return Ok(());
    };
    let dir = RunDir::new(&dir);
    // Only ever write into a real run folder.
    if !dir.file(run::SPAWN).is_file() {
        return Err(format!(
            "{} is not a nightshift run folder",
            dir.path().display()
        ));
    }
    let input = match payload {
        Some(p) => p.as_bytes().to_vec(),
        None => read_stdin()?,
    };
    let value: Value =
        serde_json::from_slice(&input).map_err(|e| format!("the hook input is not JSON: {e}"))?;
    let Some(value) = dialect.translate(value) else {
        return Ok(());
    };
    let now = Timestamp::now();
    let Some(mut record) = HookRecord::from_input(&value, now) else {
        return Err("the hook input has no hook_event_name".into());
    };
    record.agent = dialect.agent().map(str::to_string);
    if record.event == "SessionStart"
        && let Some(session_id) = &record.session_id
    {
        let session = SessionRecord {
            session_id: session_id.clone(),
            transcript_path: value
                .get("transcript_path")
                .and_then(Value::as_str)
                .map(str::to_string),
            source: value
                .get("source")
                .and_then(Value::as_str)
                .map(str::to_string),
            at: now,
        };
        dir.write(run::SESSION, &session)
            .map_err(|e| format!("cannot record the session: {e}"))?;
    }
    let line = serde_json::to_string(&record).map_err(|e| e.to_string())?;
    nightshift_store::fsutil::append_line(&dir.file(run::HOOKS), &line, 0o600)
        .map_err(|e| format!("cannot append to {}: {e}", dir.file(run::HOOKS).display()))
}

fn read_stdin() -> Result<Vec<u8>, String> {
    let mut input = Vec::new();
    let mut stdin = std::io::stdin().lock();
    (&mut stdin)
        .take(MAX_INPUT)
        .read_to_end(&mut input)
        .map_err(|e| format!("reading the hook input: {e}"))?;
    // Drain the rest so the agent never sees a broken pipe.
    let _ = std::io::copy(&mut stdin, &mut std::io::sink());
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(input: Value) -> HookRecord {
        HookRecord::from_input(&input, Timestamp::UNIX_EPOCH).expect("a record")
    }

    #[test]
    fn events_map_to_attention() {
        let permission = rec(json!({
            "hook_event_name": "Notification", "session_id": "s1",
            "notification_type": "permission_prompt",
            "message": "Claude needs your permission to use Bash"
        }));
        assert_eq!(
            permission.observation(),
            Some(Hook::NeedsInput(
                "Claude Code: Claude needs your permission to use Bash (permission_prompt)".into()
            ))
        );
        for (event, hook) in [
            ("UserPromptSubmit", Hook::Working),
            ("PreToolUse", Hook::ToolRequested("Bash".into())),
            ("PostToolUse", Hook::Working),
            ("PostToolUseFailure", Hook::Working),
        ] {
            let r = rec(json!({ "hook_event_name": event, "tool_name": "Bash",
                                "tool_input": { "command": "echo secret" } }));
            assert_eq!(r.observation(), Some(hook));
            // Tool inputs are never kept.
            assert!(!serde_json::to_string(&r).unwrap().contains("secret"));
        }
        let stop = rec(
            json!({ "hook_event_name": "Stop", "stop_hook_active": false,
                               "last_assistant_message": "Shall I go on?" }),
        );
        assert_eq!(
            stop.observation(),
            Some(Hook::TurnEnded("Shall I go on?".into()))
        );
        let failed = rec(json!({ "hook_event_name": "StopFailure", "error": "rate_limit" }));
        assert!(
            matches!(failed.observation(), Some(Hook::TurnFailed(e)) if e.contains("rate_limit"))
        );
        for quiet in [
            json!({ "hook_event_name": "SessionStart", "source": "startup" }),
            json!({ "hook_event_name": "Notification", "notification_type": "auth_success" }),
            json!({ "hook_event_name": "SubagentStop" }),
        ] {
            assert_eq!(rec(quiet).observation(), None);
        }
        assert!(HookRecord::from_input(&json!({ "x": 1 }), Timestamp::UNIX_EPOCH).is_none());
    }

    #[test]
    fn settings_quote_paths_for_the_shell() {
        let s = settings(
            Path::new("/opt/it's here/nightshift"),
            Path::new("/h/runs/t/1"),
        );
        let command = s["hooks"]["Notification"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            command,
            r"'/opt/it'\''s here/nightshift' hook --run-dir '/h/runs/t/1'"
        );
        for event in EVENTS {
            assert!(s["hooks"][event].is_array(), "{event}");
        }
    }

    #[test]
    fn a_failed_tool_keeps_a_fingerprint_of_its_error_never_its_input() {
        let failed = rec(json!({
            "hook_event_name": "PostToolUseFailure", "tool_name": "Bash",
            "tool_input": { "command": "cat /srv/secret-token-123/x.txt" },
            "error": format!("Exit code 1\ncat: /tmp/abc/x.txt: No such file or directory 42\n{}",
                             "more ".repeat(1000)),
            "is_interrupt": false
        }));
        let print = "cat: <tmp>/x.txt: No such file or directory N";
        assert_eq!(failed.error.as_deref(), Some(print));
        assert_eq!(
            failed.observation(),
            Some(Hook::ToolFailed(format!("Bash: {print}")))
        );
        let line = serde_json::to_string(&failed).unwrap();
        assert!(!line.contains("secret") && !line.contains("more"), "{line}");
        // Esc is not an error of the tool's.
        let interrupted = rec(json!({
            "hook_event_name": "PostToolUseFailure", "tool_name": "Bash",
            "error": "Interrupted by user", "is_interrupt": true
        }));
        assert_eq!(interrupted.error, None);
        assert_eq!(interrupted.observation(), Some(Hook::Working));
        let long = rec(json!({ "hook_event_name": "PostToolUseFailure",
                               "error": "y".repeat(10_000) }));
        assert_eq!(
            long.error.map(|e| e.chars().count()),
            Some(attention::MAX_FINGERPRINT + 1)
        );
    }

    #[test]
    fn long_texts_are_cut() {
        let long = "x".repeat(MAX_TEXT + 10);
        let r = rec(json!({ "hook_event_name": "Stop", "last_assistant_message": long }));
        assert_eq!(r.text.map(|t| t.chars().count()), Some(MAX_TEXT + 1));
    }
}
