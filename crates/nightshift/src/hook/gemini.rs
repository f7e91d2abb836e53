//! Gemini CLI's hooks (0.61), translated into Claude Code's vocabulary.
//!
//! Gemini CLI runs a hook with the event as JSON on stdin, with `hook_event_name`,
//! `session_id`, `transcript_path` and `cwd` in every event, like Claude Code; the names and
//! a few fields differ. Its hooks come only from its settings files, and the system ones are
//! read only when root owns them and every folder above them, so nightshift cannot hand a
//! run its own hooks; the user registers `nightshift hook --agent gemini` once in
//! `~/.gemini/settings.json` ([`user_settings`]), and outside nightshift it does nothing.
//!
//! What a run does get from nightshift is a policy file (`--policy {hook_settings}`,
//! [`policy`]) that lets `nightshift done` run without asking, while every other tool call
//! keeps Gemini CLI's own approval prompt, which nightshift flags.

use serde_json::{Value, json};

/// The run's policy file (`{hook_settings}`); Gemini CLI ignores one not named `*.toml`.
pub const POLICY_FILE: &str = "gemini-policy.toml";

/// The events nightshift reads, as Gemini CLI names them.
pub const EVENTS: &[&str] = &[
    "SessionStart",
    "BeforeAgent",
    "BeforeTool",
    "AfterTool",
    "AfterAgent",
    "Notification",
];

/// The event in Claude Code's vocabulary, or `None` when nightshift has no use for it.
pub(super) fn translate(mut input: Value) -> Option<Value> {
    let event = input.get("hook_event_name")?.as_str()?.to_string();
    let name = match event.as_str() {
        "SessionStart" => "SessionStart",
        "BeforeAgent" => "UserPromptSubmit",
        "BeforeTool" => "PreToolUse",
        "AfterTool" => match tool_failure(&input) {
            Some(error) => {
                input["error"] = Value::String(error);
                "PostToolUseFailure"
            }
            None => "PostToolUse",
        },
        "AfterAgent" => {
            let said = input.get("prompt_response").cloned().unwrap_or(Value::Null);
            input["last_assistant_message"] = said;
            "Stop"
        }
        // The approval box; other notifications are not about a person.
        "Notification" if input["notification_type"] == "ToolPermission" => {
            input["notification_type"] = json!("permission_prompt");
            "Notification"
        }
        _ => return None,
    };
    input["hook_event_name"] = json!(name);
    Some(input)
}

/// The error of a tool call that failed: Gemini CLI's own `error`, or the output of a shell
/// command that exited non-zero (`Exit Code: N` in what the model is sent).
fn tool_failure(input: &Value) -> Option<String> {
    let response = input.get("tool_response")?;
    match response.get("error") {
        Some(Value::String(e)) if !e.is_empty() => return Some(e.clone()),
        Some(Value::Object(e)) => {
            if let Some(message) = e.get("message").and_then(Value::as_str) {
                return Some(message.to_string());
            }
        }
        _ => {}
    }
    let content = response.get("llmContent")?.as_str()?;
    let code = content
        .lines()
        .find_map(|l| l.trim().strip_prefix("Exit Code:"))?
        .trim();
    if code == "0" {
        return None;
    }
    let output: Vec<&str> = content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('<'))
        .filter(|l| !l.starts_with("Exit Code:") && !l.starts_with("Process Group PGID:"))
        .map(|l| l.strip_prefix("Output:").map_or(l, str::trim))
        .filter(|l| !l.is_empty())
        .collect();
    Some(if output.is_empty() {
        format!("exit code {code}")
    } else {
        output.join("\n")
    })
}

/// The policy a run is started with: `nightshift done` runs without a prompt; nothing else
/// changes (rules of higher priority, the user's or an admin's, still win).
pub fn policy() -> String {
    "# nightshift: signalling done needs no approval.\n\
     [[rule]]\n\
     toolName = \"run_shell_command\"\n\
     commandPrefix = \"nightshift done\"\n\
     decision = \"allow\"\n\
     priority = 100\n"
        .to_string()
}

/// What a user adds to `~/.gemini/settings.json` so that nightshift hears Gemini CLI's
/// hooks: every event in [`EVENTS`] runs `nightshift hook --agent gemini`, which finds the
/// run through `$NIGHTSHIFT_RUN_DIR` (and does nothing without it).
pub fn user_settings() -> Value {
    let handler = json!([{ "hooks": [{
        "type": "command",
        "name": "nightshift",
        "command": "nightshift hook --agent gemini",
        "timeout": 10000,
    }] }]);
    let hooks: serde_json::Map<String, Value> = EVENTS
        .iter()
        .map(|e| (e.to_string(), handler.clone()))
        .collect();
    json!({ "hooks": hooks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::HookRecord;
    use jiff::Timestamp;
    use nightshift_core::attention::Hook;
    use std::path::Path;

    fn observe(input: Value) -> Option<Hook> {
        let value = translate(input)?;
        let mut record = HookRecord::from_input(&value, Timestamp::UNIX_EPOCH)?;
        record.agent = Some("Gemini CLI".into());
        record.observation()
    }

    fn event(input: Value) -> Option<String> {
        translate(input).map(|v| v["hook_event_name"].as_str().unwrap_or_default().into())
    }

    const SESSION: &str = "674d389e-199b-4afd-894d-7d7ba9b3f4c3";

    #[test]
    fn events_seen_on_gemini_0_61_map_to_claude_codes() {
        // Payloads as Gemini CLI 0.61 sent them (cut).
        let start = json!({"session_id": SESSION, "transcript_path": "/h/.gemini/tmp/repo/chats/s.jsonl",
            "cwd": "/r", "hook_event_name": "SessionStart", "timestamp": "2026-12-06T12:25:32.915Z", "source": "startup"});
        let start = translate(start).unwrap();
        assert_eq!(start["hook_event_name"], "SessionStart");
        assert_eq!(start["session_id"], SESSION);
        assert_eq!(start["source"], "startup");

        assert_eq!(
            event(json!({"hook_event_name": "BeforeAgent", "prompt": "p"})).as_deref(),
            Some("UserPromptSubmit")
        );
        let before = json!({"hook_event_name": "BeforeTool", "tool_name": "run_shell_command",
            "tool_input": {"command": "echo secret", "description": "d"}});
        assert_eq!(
            observe(before.clone()),
            Some(Hook::ToolRequested("run_shell_command".into()))
        );
        let record = HookRecord::from_input(&translate(before).unwrap(), Timestamp::UNIX_EPOCH);
        let record = serde_json::to_string(&record).unwrap();
        assert!(
            record.contains("PreToolUse") && !record.contains("secret"),
            "{record}"
        );

        let permission = json!({"hook_event_name": "Notification", "notification_type": "ToolPermission",
            "message": "Tool Confirm Shell Command requires execution",
            "details": {"type": "exec", "title": "Confirm Shell Command", "command": "git commit"}});
        assert!(matches!(
            observe(permission),
            Some(Hook::NeedsInput(m)) if m.starts_with("Gemini CLI: Tool Confirm Shell Command requires execution")
                && m.contains("permission_prompt")
        ));

        let stop = json!({"hook_event_name": "AfterAgent", "prompt": "p",
            "prompt_response": "Which database should I use?", "stop_hook_active": false});
        assert_eq!(
            observe(stop),
            Some(Hook::TurnEnded("Which database should I use?".into()))
        );

        for quiet in ["SessionEnd", "BeforeModel", "AfterModel", "PreCompress"] {
            assert_eq!(event(json!({ "hook_event_name": quiet })), None, "{quiet}");
        }
        assert_eq!(
            event(json!({"hook_event_name": "Notification", "notification_type": "Other"})),
            None
        );
        assert_eq!(event(json!({ "no": "name" })), None);
    }

    #[test]
    fn a_failed_shell_command_is_a_tool_failure_with_its_output() {
        let after = |content: &str| {
            json!({"hook_event_name": "AfterTool", "tool_name": "run_shell_command",
                "tool_input": {"command": "git commit"},
                "tool_response": {"llmContent": content, "returnDisplay": []}})
        };
        let failed = translate(after(
            "<untrusted_context>\nOutput: Author identity unknown\n\nfatal: unable to auto-detect email address\nExit Code: 128\nProcess Group PGID: 28589\n</untrusted_context>",
        ))
        .unwrap();
        assert_eq!(failed["hook_event_name"], "PostToolUseFailure");
        assert_eq!(
            failed["error"],
            "Author identity unknown\nfatal: unable to auto-detect email address"
        );
        let ok = translate(after("Output: ok\nExit Code: 0\n")).unwrap();
        assert_eq!(ok["hook_event_name"], "PostToolUse");
        let plain = translate(after("file written")).unwrap();
        assert_eq!(plain["hook_event_name"], "PostToolUse");
        let denied = translate(json!({"hook_event_name": "AfterTool",
            "tool_response": {"error": {"message": "Tool execution denied by policy."}}}))
        .unwrap();
        assert_eq!(denied["hook_event_name"], "PostToolUseFailure");
        assert_eq!(denied["error"], "Tool execution denied by policy.");
    }

    #[test]
    fn a_gemini_profile_gets_the_policy_file() {
        use crate::hook::Dialect;
        assert_eq!(
            Dialect::for_agent("/opt/bin/gemini", "mine"),
            Dialect::Gemini
        );
        assert_eq!(Dialect::for_agent("./wrap.sh", "gemini"), Dialect::Gemini);
        assert_eq!(Dialect::for_agent("claude", "gemini"), Dialect::Claude);
        assert_eq!(Dialect::for_agent("aider", "aider"), Dialect::Claude);
        assert_eq!(Dialect::Gemini.settings_file(), "gemini-policy.toml");
        let written = Dialect::Gemini.settings_contents(Path::new("/x"), Path::new("/r"));
        assert_eq!(String::from_utf8_lossy(&written), policy());
        assert_eq!(Dialect::Claude.settings_file(), crate::run::HOOK_SETTINGS);
    }

    #[test]
    fn the_user_settings_cover_every_event_with_the_same_command() {
        let s = user_settings();
        for e in EVENTS {
            assert_eq!(
                s["hooks"][e][0]["hooks"][0]["command"],
                "nightshift hook --agent gemini"
            );
        }
        assert!(policy().contains("commandPrefix = \"nightshift done\""));
    }
}
