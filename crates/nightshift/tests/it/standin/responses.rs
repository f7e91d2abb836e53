//! The OpenAI Responses API's script, for the real Codex CLI (a custom `model_providers`
//! entry with `base_url = "http://127.0.0.1:<port>/v1"` and `wire_api = "responses"`).
//!
//! A marker in the prompt picks the scenario ([`Scenario::of`]). The scripted model answers
//! with text, or with one `exec_command` call and, once the request carries that call's
//! `function_call_output`, with [`FINAL_TEXT`]. Codex's side requests (the title of the
//! session: no tools) get a short text and never advance the script. Errors are the API's
//! own: 500s, 429s with `retry-after`, `usage_limit_reached` with `resets_at`, and
//! `insufficient_quota`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{Reply, Request, Shared};

/// The scripted final answer after a tool call.
pub(crate) const FINAL_TEXT: &str = "All done.";
/// The title the side request gets.
pub(crate) const TITLE: &str = "Scripted task";
/// The default scenario's command: signal done.
pub(crate) const DONE_COMMAND: &str = r#"nightshift done --summary "fixed by codex""#;
/// The commit scenario's command: edit, commit, signal done.
pub(crate) const COMMIT_COMMAND: &str = "echo codex > codex.txt && git add codex.txt && \
     git commit -qm 'codex: commit' && nightshift done --summary 'committed by codex'";
/// The question the question scenario ends its turn with.
pub(crate) const QUESTION: &str = "Which database should I use? 1. PostgreSQL 2. SQLite";
/// How far ahead the usage-limit scenario's reset is.
pub(crate) const USAGE_RESETS_IN: Duration = Duration::from_secs(90 * 60);
/// The approval scenario's first command, outside the sandbox (which keeps `.git`
/// read-only), and the justification it carries (Codex shows it as `Reason:`).
pub(crate) const APPROVAL_COMMAND: &str = "git commit --allow-empty -qm 'codex: approved'";
pub(crate) const JUSTIFICATION: &str = "Commit the change";
const CALL_ID: &str = "call_nightshift_fake_1";
const APPROVAL_CALL_ID: &str = "call_nightshift_fake_approval";

/// What the scripted model does, picked by `nightshift-scenario: NAME` in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Runs [`DONE_COMMAND`] in the sandbox (no marker).
    Done,
    /// Runs [`COMMIT_COMMAND`].
    Commit,
    /// Runs [`APPROVAL_COMMAND`] asking for escalated permissions, so Codex asks a person;
    /// then [`DONE_COMMAND`].
    Approval,
    /// Ends the turn with [`QUESTION`]; once a user message follows it (an answer, or
    /// nightshift's "carry on" after a resume), runs [`DONE_COMMAND`].
    Question,
    /// HTTP 500 to every request.
    ServerError,
    /// HTTP 429 with `retry-after: 2`.
    RateLimit,
    /// HTTP 429 `usage_limit_reached`, resetting in [`USAGE_RESETS_IN`].
    UsageLimit,
    /// HTTP 429 `insufficient_quota`.
    Quota,
    /// A text answer after 30 s.
    Slow,
}

impl Scenario {
    const ALL: [(&'static str, Scenario); 8] = [
        ("commit", Scenario::Commit),
        ("approval", Scenario::Approval),
        ("question", Scenario::Question),
        ("http-500", Scenario::ServerError),
        ("rate-limit", Scenario::RateLimit),
        ("usage-limit", Scenario::UsageLimit),
        ("quota", Scenario::Quota),
        ("slow", Scenario::Slow),
    ];

    /// The marker that picks this scenario, to put in a prompt.
    pub(crate) fn marker(self) -> String {
        let name = Scenario::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("done", |(n, _)| n);
        format!("nightshift-scenario: {name}")
    }

    /// The scenario the user's text asks for.
    fn of(user_text: &str) -> Scenario {
        Scenario::ALL
            .iter()
            .find(|(name, _)| user_text.contains(&format!("nightshift-scenario: {name}")))
            .map_or(Scenario::Done, |(_, s)| *s)
    }
}

/// The reply to one request.
pub(crate) fn respond(req: &Request, _shared: &Shared) -> Reply {
    match (req.method.as_str(), req.route()) {
        ("POST", "/v1/responses") => {
            let Some(body) = req.json() else {
                return api_error(
                    "400 Bad Request",
                    "invalid_request_error",
                    "body is not JSON",
                );
            };
            script(&body)
        }
        // Codex tries a WebSocket first with the built-in provider; a 404 sends it to POST.
        _ => api_error("404 Not Found", "not_found", "not in the fake API"),
    }
}

fn script(body: &Value) -> Reply {
    let offers_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    if !offers_tools {
        // The title side request.
        return Reply::sse(stream(&[message(TITLE)]));
    }
    if has_output(body, CALL_ID) {
        return Reply::sse(stream(&[message(FINAL_TEXT)]));
    }
    match Scenario::of(&user_texts(body).join("\n")) {
        Scenario::Done => Reply::sse(stream(&[exec(DONE_COMMAND, CALL_ID, false)])),
        Scenario::Commit => Reply::sse(stream(&[exec(COMMIT_COMMAND, CALL_ID, false)])),
        Scenario::Approval if has_output(body, APPROVAL_CALL_ID) => {
            Reply::sse(stream(&[exec(DONE_COMMAND, CALL_ID, false)]))
        }
        Scenario::Approval => Reply::sse(stream(&[exec(APPROVAL_COMMAND, APPROVAL_CALL_ID, true)])),
        Scenario::Question if answered(body) => {
            Reply::sse(stream(&[exec(DONE_COMMAND, CALL_ID, false)]))
        }
        Scenario::Question => Reply::sse(stream(&[message(QUESTION)])),
        Scenario::Slow => {
            Reply::sse(stream(&[message("Slowly done.")])).after(Duration::from_secs(30))
        }
        Scenario::ServerError => api_error(
            "500 Internal Server Error",
            "server_error",
            "scripted failure",
        ),
        Scenario::RateLimit => api_error(
            "429 Too Many Requests",
            "rate_limit_exceeded",
            "Rate limit reached for requests",
        )
        .header("retry-after", "2"),
        Scenario::UsageLimit => usage_limit(USAGE_RESETS_IN),
        Scenario::Quota => api_error(
            "429 Too Many Requests",
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
        ),
    }
}

/// The ChatGPT plan's usage-limit error, resetting `after` from now.
pub(crate) fn usage_limit(after: Duration) -> Reply {
    let resets_at = SystemTime::now()
        .checked_add(after)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Reply::json(
        "429 Too Many Requests",
        &json!({ "error": {
            "type": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "plan_type": "plus",
            "resets_at": resets_at,
        }}),
    )
}

fn api_error(status: &'static str, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": { "type": kind, "code": kind, "message": message, "param": null } }),
    )
}

/// Every `input_text` of the user's messages in a request body.
pub(crate) fn user_texts(body: &Value) -> Vec<String> {
    body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["type"] == "message" && m["role"] == "user")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|c| c["type"] == "input_text")
        .filter_map(|c| c["text"].as_str().map(String::from))
        .collect()
}

/// Whether a user message follows the scripted question in the conversation.
fn answered(body: &Value) -> bool {
    let items = body["input"].as_array().cloned().unwrap_or_default();
    let asked = items.iter().position(|i| {
        i["type"] == "message"
            && i["role"] == "assistant"
            && i["content"].to_string().contains(QUESTION)
    });
    asked.is_some_and(|at| {
        items[at + 1..]
            .iter()
            .any(|i| i["type"] == "message" && i["role"] == "user")
    })
}

/// Whether the request carries the output of the scripted call `id`.
fn has_output(body: &Value, id: &str) -> bool {
    body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|i| i["type"] == "function_call_output" && i["call_id"] == id)
}

/// The outputs of the scripted tool calls a request carries (what the command printed).
pub(crate) fn tool_outputs(body: &Value) -> Vec<Value> {
    body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| i["output"].clone())
        .collect()
}

fn message(text: &str) -> Value {
    json!({
        "type": "message", "role": "assistant", "id": "msg_fake_1",
        "content": [{ "type": "output_text", "text": text }],
    })
}

/// Codex's shell tool. `escalated` asks to run outside the sandbox, which Codex's default
/// approval mode puts to a person.
fn exec(command: &str, call_id: &str, escalated: bool) -> Value {
    let mut arguments = json!({ "cmd": command });
    if escalated {
        arguments["sandbox_permissions"] = json!("require_escalated");
        arguments["justification"] = json!(JUSTIFICATION);
    }
    json!({
        "type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
        "name": "exec_command", "arguments": arguments.to_string(),
    })
}

/// A whole Responses event stream: created, one `output_item.done` per item, completed.
fn stream(items: &[Value]) -> String {
    let mut out = String::new();
    let mut event = |data: Value| {
        let name = data["type"].as_str().unwrap_or_default().to_string();
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(json!({ "type": "response.created", "response": { "id": "resp_fake_1" } }));
    for item in items {
        event(json!({ "type": "response.output_item.done", "item": item }));
    }
    event(json!({
        "type": "response.completed",
        "response": { "id": "resp_fake_1", "usage": {
            "input_tokens": 42, "input_tokens_details": null, "output_tokens": 7,
            "output_tokens_details": null, "total_tokens": 49,
        }},
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Request {
        Request {
            method: "POST".into(),
            path: "/v1/responses".into(),
            body: body.to_string().into_bytes(),
        }
    }

    fn user(text: &str) -> Value {
        json!({ "type": "message", "role": "user",
                "content": [{ "type": "input_text", "text": text }] })
    }

    fn answer(body: Value) -> Reply {
        respond(&request(body), &Shared::default())
    }

    #[test]
    fn the_script_calls_the_tool_then_answers() {
        let tools = json!([{ "type": "function", "name": "exec_command" }]);
        let first = answer(json!({ "tools": tools, "input": [user("fix it")] }));
        let text = String::from_utf8_lossy(&first.body).into_owned();
        assert_eq!(first.status, "200 OK");
        assert!(text.contains("event: response.completed"), "{text}");
        assert!(
            text.contains("exec_command") && text.contains("nightshift done"),
            "{text}"
        );

        let output = json!({ "type": "function_call_output", "call_id": CALL_ID, "output": "ok" });
        let second = answer(json!({ "tools": tools, "input": [user("fix it"), output] }));
        assert!(String::from_utf8_lossy(&second.body).contains(FINAL_TEXT));

        let title = answer(json!({ "tools": [], "input": [user("Generate a title")] }));
        assert!(String::from_utf8_lossy(&title.body).contains(TITLE));

        let approval = answer(json!({ "tools": tools,
            "input": [user(&Scenario::Approval.marker())] }));
        assert!(String::from_utf8_lossy(&approval.body).contains("require_escalated"));
    }

    #[test]
    fn errors_carry_what_codex_reads() {
        let tools = json!([{ "type": "function", "name": "exec_command" }]);
        let ask = |s: Scenario| answer(json!({ "tools": tools, "input": [user(&s.marker())] }));
        let limited = ask(Scenario::RateLimit);
        assert_eq!(limited.status, "429 Too Many Requests");
        assert_eq!(limited.headers, vec![("retry-after".into(), "2".into())]);
        let usage: Value = serde_json::from_slice(&ask(Scenario::UsageLimit).body).unwrap();
        assert_eq!(usage["error"]["type"], "usage_limit_reached");
        assert!(
            usage["error"]["resets_at"]
                .as_u64()
                .is_some_and(|t| t > 1_700_000_000)
        );
        let quota: Value = serde_json::from_slice(&ask(Scenario::Quota).body).unwrap();
        assert_eq!(quota["error"]["type"], "insufficient_quota");
        assert!(ask(Scenario::ServerError).status.starts_with("500"));
        assert_eq!(ask(Scenario::Slow).delay, Duration::from_secs(30));
    }
}
