//! The Anthropic Messages API's script, for the real Claude Code CLI
//! (`ANTHROPIC_BASE_URL=http://127.0.0.1:<port>`).
//!
//! The script: the main conversation (a `/v1/messages` request that offers tools) first gets
//! a `tool_use` of the Bash tool running [`DONE_COMMAND`]; once the request carries that
//! tool's `tool_result`, it gets the text "All done." and `end_turn`. Side requests (titles,
//! summaries, quota checks: no tools) get a short text, so they never advance the script.
//! A prompt holding [`PERMISSION_SCENARIO`] first gets a Bash call of [`PERMISSION_COMMAND`],
//! which no rule allows, so Claude Code asks for permission.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Reply, Request, Shared};

/// The command the scripted model asks Claude Code to run.
pub(crate) const DONE_COMMAND: &str = r#"nightshift done --summary "fixed by claude""#;
/// The id of the scripted tool call, to recognise its result.
pub(crate) const TOOL_USE_ID: &str = "toolu_nightshift_fake_1";
/// In a prompt: start with a command that needs a person's permission.
pub(crate) const PERMISSION_SCENARIO: &str = "nightshift-scenario: permission";
/// The command that needs permission (file commands in the workdir may be allowed
/// without asking); it makes a commit with this subject.
pub(crate) const PERMISSION_COMMAND: &str = "git commit --allow-empty -m claude-was-here";
const PERMISSION_TOOL_USE_ID: &str = "toolu_nightshift_fake_perm";
/// In a prompt: edit a file, commit and signal done, wrongly at first; fix it once told that
/// the acceptance check failed.
pub(crate) const VERIFY_SCENARIO: &str = "nightshift-scenario: verify";
/// The first try (which fails the task's check) and the fix.
pub(crate) const VERIFY_FIRST: &str = "echo wrong > answer.txt && git add answer.txt && git commit -qm 'claude: first try' && nightshift done --summary 'first try'";
pub(crate) const VERIFY_FIX: &str = "echo right > answer.txt && git commit -qam 'claude: fix the answer' && nightshift done --summary 'fixed the answer'";
const VERIFY_FIRST_ID: &str = "toolu_nightshift_fake_verify_1";
const VERIFY_FIX_ID: &str = "toolu_nightshift_fake_verify_2";
/// The scripted final answer.
pub(crate) const FINAL_TEXT: &str = "All done.";
/// The reply to one request.
pub(crate) fn respond(req: &Request, shared: &Shared) -> Reply {
    let json_ok = |v: Value| Reply::json("200 OK", &v);
    match (req.method.as_str(), req.route()) {
        ("POST", "/v1/messages/count_tokens") => json_ok(json!({ "input_tokens": 42 })),
        ("POST", "/v1/messages") => {
            let Some(body) = req.json() else {
                return Reply::new(
                    "400 Bad Request",
                    "application/json",
                    api_error("invalid_request_error", "body is not JSON"),
                );
            };
            let (content, stop_reason) = script(&body);
            let id = format!("msg_fake_{}", shared.next_id.fetch_add(1, Ordering::SeqCst));
            let model = body["model"].as_str().unwrap_or("claude-fake").to_string();
            if body["stream"].as_bool() == Some(true) {
                Reply::sse(sse(&id, &model, &content, stop_reason))
            } else {
                json_ok(json!({
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": { "input_tokens": 42, "output_tokens": 7 },
                }))
            }
        }
        ("GET", _) => Reply::new(
            "404 Not Found",
            "application/json",
            api_error("not_found_error", "not in the fake API"),
        ),
        _ => json_ok(json!({})),
    }
}

fn api_error(kind: &str, message: &str) -> Vec<u8> {
    json!({ "type": "error", "error": { "type": kind, "message": message } })
        .to_string()
        .into_bytes()
}

/// The scripted answer: content blocks and the stop reason.
fn script(body: &Value) -> (Vec<Value>, &'static str) {
    let offers_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    if !offers_tools {
        // A side request: answer briefly, leave the script where it is.
        return (vec![json!({ "type": "text", "text": "OK." })], "end_turn");
    }
    if has_tool_result(body, TOOL_USE_ID) {
        return (
            vec![json!({ "type": "text", "text": FINAL_TEXT })],
            "end_turn",
        );
    }
    let first_user = body["messages"][0].to_string();
    if let Some(reply) = signals_script(body, &first_user) {
        return reply;
    }
    if first_user.contains(VERIFY_SCENARIO) {
        return verify_script(body);
    }
    if first_user.contains(PERMISSION_SCENARIO) && !has_tool_result(body, PERMISSION_TOOL_USE_ID) {
        return (
            vec![json!({
                "type": "tool_use",
                "id": PERMISSION_TOOL_USE_ID,
                "name": "Bash",
                "input": { "command": PERMISSION_COMMAND, "description": "Leave a mark" },
            })],
            "tool_use",
        );
    }
    (
        vec![json!({
            "type": "tool_use",
            "id": TOOL_USE_ID,
            "name": "Bash",
            "input": { "command": DONE_COMMAND, "description": "Tell nightshift the task is done" },
        })],
        "tool_use",
    )
}

/// The verify scenario: a wrong answer, then, once nightshift says the check failed, the fix.
fn verify_script(body: &Value) -> (Vec<Value>, &'static str) {
    let bash = |id: &str, command: &str| {
        (
            vec![json!({
                "type": "tool_use",
                "id": id,
                "name": "Bash",
                "input": { "command": command, "description": "Work on the task" },
            })],
            "tool_use",
        )
    };
    let text = |t: &str| (vec![json!({ "type": "text", "text": t })], "end_turn");
    let told = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .any(|m| {
            m["content"]
                .to_string()
                .contains("the acceptance check failed")
        });
    if has_tool_result(body, VERIFY_FIX_ID) {
        text(FINAL_TEXT)
    } else if told {
        bash(VERIFY_FIX_ID, VERIFY_FIX)
    } else if has_tool_result(body, VERIFY_FIRST_ID) {
        text("I think that is it.")
    } else {
        bash(VERIFY_FIRST_ID, VERIFY_FIRST)
    }
}

/// Whether the conversation already carries the result of the scripted tool call `id`.
fn has_tool_result(body: &Value, id: &str) -> bool {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .any(|b| b["type"] == "tool_result" && b["tool_use_id"] == id)
}

/// A whole Messages API event stream for one answer.
fn sse(id: &str, model: &str, content: &[Value], stop_reason: &str) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({
            "type": "message_start",
            "message": {
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": 42, "output_tokens": 1 },
            },
        }),
    );
    event("ping", json!({ "type": "ping" }));
    for (index, block) in content.iter().enumerate() {
        let (start, delta) = if block["type"] == "tool_use" {
            (
                json!({ "type": "tool_use", "id": block["id"], "name": block["name"], "input": {} }),
                json!({ "type": "input_json_delta", "partial_json": block["input"].to_string() }),
            )
        } else {
            (
                json!({ "type": "text", "text": "" }),
                json!({ "type": "text_delta", "text": block["text"] }),
            )
        };
        event(
            "content_block_start",
            json!({ "type": "content_block_start", "index": index, "content_block": start }),
        );
        event(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
        event(
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": index }),
        );
    }
    event(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": 7 },
        }),
    );
    event("message_stop", json!({ "type": "message_stop" }));
    out
}

/// In a prompt: run a command that takes [`SLOW_SECONDS`] (allowed), then signal done.
pub(crate) const SLOW_SCENARIO: &str = "nightshift-scenario: slow-tool";
pub(crate) const SLOW_SECONDS: u64 = 5;
/// In a prompt: run [`FAILING_COMMAND`] [`FAILING_TIMES`] times, then signal done.
pub(crate) const FAILING_SCENARIO: &str = "nightshift-scenario: failing";
pub(crate) const FAILING_COMMAND: &str = "cat /nonexistent/nightshift-missing.txt";
pub(crate) const FAILING_TIMES: usize = 6;
/// In a prompt: end the turn with [`MENU_TEXT`]; once answered, signal done.
pub(crate) const MENU_SCENARIO: &str = "nightshift-scenario: menu";
pub(crate) const MENU_TEXT: &str =
    "Which database should I use?\n1. PostgreSQL\n2. SQLite\n3. Skip";
/// In a prompt: say what was done as a numbered list, and signal done in the same answer.
pub(crate) const SUMMARY_SCENARIO: &str = "nightshift-scenario: summary";
pub(crate) const SUMMARY_TEXT: &str = "I did:\n1. Fixed the parser\n2. Added tests";

/// The scenarios for the attention signals; `None` for a prompt that holds none of them.
fn signals_script(body: &Value, first_user: &str) -> Option<(Vec<Value>, &'static str)> {
    let bash = |id: String, command: &str| {
        json!({
            "type": "tool_use",
            "id": id,
            "name": "Bash",
            "input": { "command": command, "description": "Work on the task" },
        })
    };
    let done = || bash(TOOL_USE_ID.into(), DONE_COMMAND);
    if first_user.contains(SLOW_SCENARIO) {
        let id = "toolu_nightshift_fake_slow";
        let next = if has_tool_result(body, id) {
            done()
        } else {
            bash(id.into(), &format!("sleep {SLOW_SECONDS}"))
        };
        return Some((vec![next], "tool_use"));
    }
    if first_user.contains(FAILING_SCENARIO) {
        let failed = (0..FAILING_TIMES)
            .filter(|n| has_tool_result(body, &format!("toolu_nightshift_fake_fail_{n}")))
            .count();
        let next = if failed < FAILING_TIMES {
            bash(
                format!("toolu_nightshift_fake_fail_{failed}"),
                FAILING_COMMAND,
            )
        } else {
            done()
        };
        return Some((vec![next], "tool_use"));
    }
    if first_user.contains(MENU_SCENARIO) {
        let asked =
            body["messages"].as_array().into_iter().flatten().any(|m| {
                m["role"] == "assistant" && m["content"].to_string().contains("PostgreSQL")
            });
        return Some(if asked {
            (vec![done()], "tool_use")
        } else {
            (
                vec![json!({ "type": "text", "text": MENU_TEXT })],
                "end_turn",
            )
        });
    }
    if first_user.contains(SUMMARY_SCENARIO) {
        let text = json!({ "type": "text", "text": SUMMARY_TEXT });
        return Some((vec![text, done()], "tool_use"));
    }
    None
}

/// Which wall the stand-in makes Claude Code hit, in [`limited_until`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// The plan's usage limit (the 5-hour window): a 429 whose `anthropic-ratelimit-unified-*`
    /// headers say "rejected" and when it resets. Claude Code 2.1.332 shows
    /// `5-hour limit reached · retrying in 13s (1:54pm) · attempt 6/10`.
    Usage,
    /// The API's per-minute rate limit: a 429 `rate_limit_error` with `retry-after`. Claude
    /// Code shows `429 Number of request tokens has exceeded your per-minute rate limit ·
    /// retrying in 5s · attempt 6/10`.
    Rate,
}

/// Claude Code's script, except that every Messages request is refused with `limit` until
/// `until` (wall clock); then the script goes on where it was.
pub(crate) fn limited_until(
    limit: Limit,
    until: std::time::SystemTime,
) -> impl Fn(&Request, &Shared) -> Reply + Send + Sync + 'static {
    move |req, shared| {
        let refused = req.method == "POST"
            && req.route() == "/v1/messages"
            && std::time::SystemTime::now() < until;
        if refused {
            limit_reply(limit, until)
        } else {
            respond(req, shared)
        }
    }
}

/// The 429 for `limit`, resetting at `until`.
fn limit_reply(limit: Limit, until: std::time::SystemTime) -> Reply {
    let reset = jiff::Timestamp::try_from(until).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let wait = until
        .duration_since(std::time::SystemTime::now())
        .map_or(1, |d| d.as_secs().max(1));
    match limit {
        Limit::Usage => Reply::new(
            "429 Too Many Requests",
            "application/json",
            api_error(
                "rate_limit_error",
                "This request would exceed your account's rate limit. Please try again later.",
            ),
        )
        .header("anthropic-ratelimit-unified-status", "rejected")
        .header(
            "anthropic-ratelimit-unified-reset",
            &reset.as_second().to_string(),
        )
        .header(
            "anthropic-ratelimit-unified-representative-claim",
            "five_hour",
        ),
        Limit::Rate => Reply::new(
            "429 Too Many Requests",
            "application/json",
            api_error(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
        )
        .header("retry-after", &wait.to_string())
        .header("anthropic-ratelimit-requests-reset", &reset.to_string()),
    }
}
