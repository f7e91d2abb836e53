//! The Codex CLI's hooks and `notify`, in Claude Code's vocabulary, and the `-c` override
//! that registers nightshift's hooks for one run.
//!
//! Codex's hooks are Claude-style (same event names, JSON on stdin). The differences: a
//! permission dialog is its own event (`PermissionRequest`, not a `Notification`), and
//! `notify` runs a program with one JSON argument at the end of each turn. Codex runs hooks
//! only once they are trusted: the override also carries the trust of exactly these hooks
//! (their hashes), for this run only, so no dialog asks and no other hook is trusted.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What each hook runs. Static: the pane has `nightshift` on PATH and `NIGHTSHIFT_RUN_DIR`
/// in its environment, and a static command keeps the trust hashes stable.
pub const HOOK_COMMAND: &str = "nightshift hook --agent codex";
/// Seconds Codex gives a hook; the handler returns at once.
const HOOK_TIMEOUT: u64 = 10;
/// The events nightshift registers: Codex's name, and the name its trust keys use.
const EVENTS: &[(&str, &str)] = &[
    ("SessionStart", "session_start"),
    ("UserPromptSubmit", "user_prompt_submit"),
    ("PreToolUse", "pre_tool_use"),
    ("PermissionRequest", "permission_request"),
    ("PostToolUse", "post_tool_use"),
    ("Stop", "stop"),
];
/// Where Codex says hooks from `-c` overrides come from, in their trust keys.
const SESSION_FLAGS_SOURCE: &str = "/<session-flags>/config.toml";
/// How the request for the session's title starts: Codex runs it as a turn of its own, and
/// its `notify` must not read as the task's turn ending.
const TITLE_REQUEST: &str = "Generate a concise, single-line task title";

/// The `-c` value (`hooks={…}`) that registers nightshift's hooks and trusts exactly them.
pub fn config_override() -> String {
    let handler = |_: &str| {
        format!(
            "[{{hooks=[{{type=\"command\",command=\"{HOOK_COMMAND}\",timeout={HOOK_TIMEOUT}}}]}}]"
        )
    };
    let mut parts: Vec<String> = EVENTS
        .iter()
        .map(|(event, _)| format!("{event}={}", handler(event)))
        .collect();
    let trust: Vec<String> = EVENTS
        .iter()
        .map(|(_, key)| {
            format!(
                "\"{SESSION_FLAGS_SOURCE}:{key}:0:0\"={{trusted_hash=\"{}\"}}",
                trust_hash(key, HOOK_COMMAND, HOOK_TIMEOUT)
            )
        })
        .collect();
    parts.push(format!("state={{{}}}", trust.join(",")));
    format!("hooks={{{}}}", parts.join(","))
}

/// The hash Codex trusts a hook by: SHA-256 over the compact JSON (keys sorted) of the
/// event, and its one command handler with Codex's defaults filled in.
fn trust_hash(event_key: &str, command: &str, timeout: u64) -> String {
    // serde_json's map is sorted (no `preserve_order`), which is the order Codex hashes.
    let identity = json!({
        "event_name": event_key,
        "hooks": [{ "async": false, "command": command, "timeout": timeout, "type": "command" }],
    });
    let digest = Sha256::digest(identity.to_string().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Codex's hook or notify payload in Claude Code's vocabulary; `None` for what nightshift
/// has no use for.
pub(super) fn translate(input: Value) -> Option<Value> {
    if input.get("type").and_then(Value::as_str) == Some("agent-turn-complete") {
        return notify_turn_complete(&input);
    }
    match input.get("hook_event_name")?.as_str()? {
        // The approval dialog is on screen: what Claude Code says with a Notification.
        "PermissionRequest" => {
            let tool = input
                .get("tool_name")
                .and_then(Value::as_str)
                .unwrap_or("a tool");
            Some(json!({
                "hook_event_name": "Notification",
                "notification_type": "permission_prompt",
                "message": format!("needs your approval to use {tool}"),
                "session_id": input.get("session_id"),
                "permission_mode": input.get("permission_mode"),
            }))
        }
        // Same names and fields as Claude Code's.
        "SessionStart" | "UserPromptSubmit" | "PreToolUse" | "PostToolUse" | "Stop" => Some(input),
        _ => None,
    }
}

/// `notify`'s end of a turn, as a Stop; the title's side turn is not the task's.
fn notify_turn_complete(input: &Value) -> Option<Value> {
    let side_turn = input
        .get("input-messages")
        .and_then(Value::as_array)
        .is_some_and(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .any(|t| t.starts_with(TITLE_REQUEST))
        });
    if side_turn {
        return None;
    }
    Some(json!({
        "hook_event_name": "Stop",
        "session_id": input.get("thread-id"),
        "last_assistant_message": input.get("last-assistant-message"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_hashes_match_what_codex_wrote() {
        // Written by codex 0.171.0 into config.toml when "Trust all and continue" was
        // chosen for hooks given with `-c` (no timeout: Codex's default of 600 s).
        assert_eq!(
            trust_hash("stop", "/tmp/cx/hook.sh", 600),
            "sha256:0f7c4fda2031d1194b92d313e39ff0710dcf87f04ddf1cf85831f16ad6b072c4"
        );
        assert_eq!(
            trust_hash("pre_tool_use", "/tmp/cx/hook.sh", 600),
            "sha256:edf92581ffca3d7f9860c86e297c59e2ed31bb9a18998fd600f34b43abee14d0"
        );
    }

    #[test]
    fn the_override_is_toml_with_a_hook_and_its_trust_per_event() {
        let text = config_override();
        let value: toml::Table = toml::from_str(&text).expect("TOML");
        let hooks = &value["hooks"];
        for (event, key) in EVENTS {
            assert_eq!(
                hooks[event][0]["hooks"][0]["command"].as_str(),
                Some(HOOK_COMMAND)
            );
            let trusted = &hooks["state"][&format!("{SESSION_FLAGS_SOURCE}:{key}:0:0")];
            assert_eq!(
                trusted["trusted_hash"].as_str(),
                Some(trust_hash(key, HOOK_COMMAND, HOOK_TIMEOUT).as_str())
            );
        }
    }

    #[test]
    fn events_become_claude_code_events() {
        let permission = translate(json!({
            "hook_event_name": "PermissionRequest", "session_id": "s1", "tool_name": "Bash",
            "tool_input": { "command": "git commit", "description": "secret reason" },
            "permission_mode": "default",
        }))
        .unwrap();
        assert_eq!(permission["hook_event_name"], "Notification");
        assert_eq!(permission["notification_type"], "permission_prompt");
        assert_eq!(permission["session_id"], "s1");
        // The tool's input is not carried over.
        assert!(!permission.to_string().contains("secret"), "{permission}");

        let stop = json!({ "hook_event_name": "Stop", "last_assistant_message": "Which one?" });
        assert_eq!(translate(stop.clone()), Some(stop));
        assert_eq!(translate(json!({ "hook_event_name": "SessionEnd" })), None);
        assert_eq!(translate(json!({ "no": "event" })), None);
    }

    #[test]
    fn notify_ends_the_turn_but_not_for_the_title() {
        let turn = translate(json!({
            "type": "agent-turn-complete", "thread-id": "t1", "turn-id": "u1",
            "input-messages": ["fix it"], "last-assistant-message": "Done?",
        }))
        .unwrap();
        assert_eq!(turn["hook_event_name"], "Stop");
        assert_eq!(turn["session_id"], "t1");
        assert_eq!(turn["last_assistant_message"], "Done?");
        let title = json!({
            "type": "agent-turn-complete", "thread-id": "t2",
            "input-messages": [format!("{TITLE_REQUEST} of at most 36 characters…")],
            "last-assistant-message": "Fix it",
        });
        assert_eq!(translate(title), None);
    }
}
