//! OpenAI Chat Completions' script, for the real Aider (`--openai-api-base
//! http://…/v1`, `OPENAI_API_KEY`).
//!
//! Aider 0.86 streams each turn (`POST /v1/chat/completions`, `stream: true`) and asks for
//! commit messages without streaming. Its replies carry shell commands as ```bash blocks (it
//! asks `Run shell command?` before running one) and edits as SEARCH/REPLACE blocks. The
//! main turn follows the scenario named in the user's messages ([`scenario`]); by default
//! it suggests [`DONE_SHELL`], a commit and `nightshift done`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Reply, Request, Shared};

/// The shell command the scripted model suggests by default.
pub(crate) const DONE_SHELL: &str =
    r#"git commit --allow-empty -m aider-was-here && nightshift done --summary "fixed by aider""#;
/// In a prompt: reply with the done marker, and nothing to edit or run. (A marker in a reply
/// that also edits would race the edit: aider prints the whole reply before it applies it.)
pub(crate) const MARKER_SCENARIO: &str = "nightshift-scenario: marker";
pub(crate) const MARKER_SUMMARY: &str = "nothing needed changing";
/// The commit message the stand-in gives aider for its own commits.
pub(crate) const COMMIT_MESSAGE: &str = "aider: add the answer";
/// In a prompt: end the turn with a question to the user.
pub(crate) const QUESTION_SCENARIO: &str = "nightshift-scenario: question";
pub(crate) const QUESTION: &str = "Which database should I use, PostgreSQL or SQLite?";
/// In a prompt: every turn fails with HTTP 500.
pub(crate) const ERROR_500_SCENARIO: &str = "nightshift-scenario: error-500";
/// In a prompt: every turn is rate limited (429 `rate_limit_exceeded`, `retry-after: 2`).
pub(crate) const RATE_LIMIT_SCENARIO: &str = "nightshift-scenario: rate-limit";
/// In a prompt: the account's quota is spent (429 `insufficient_quota`).
pub(crate) const QUOTA_SCENARIO: &str = "nightshift-scenario: quota";
/// In a prompt: every turn answers only after [`SLOW_DELAY`].
pub(crate) const SLOW_SCENARIO: &str = "nightshift-scenario: slow";
pub(crate) const SLOW_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    ShellDone,
    Marker,
    Question,
    Error500,
    RateLimit,
    Quota,
    Slow,
}

/// The scenario named in the user's messages; by default, the shell command.
pub(crate) fn scenario(body: &Value) -> Scenario {
    let text = user_texts(body).join("\n");
    [
        (MARKER_SCENARIO, Scenario::Marker),
        (QUESTION_SCENARIO, Scenario::Question),
        (ERROR_500_SCENARIO, Scenario::Error500),
        (RATE_LIMIT_SCENARIO, Scenario::RateLimit),
        (QUOTA_SCENARIO, Scenario::Quota),
        (SLOW_SCENARIO, Scenario::Slow),
    ]
    .into_iter()
    .find(|(marker, _)| text.contains(marker))
    .map_or(Scenario::ShellDone, |(_, s)| s)
}

/// The reply to one request.
pub(crate) fn respond(req: &Request, _shared: &Shared) -> Reply {
    let Some(body) = req.json() else {
        return error_reply(
            "400 Bad Request",
            "invalid_request_error",
            "body is not JSON",
        );
    };
    if req.method != "POST" || req.route() != "/v1/chat/completions" {
        return error_reply(
            "404 Not Found",
            "invalid_request_error",
            "not in the stand-in",
        );
    }
    if body["stream"] != true {
        // A commit message.
        return Reply::json("200 OK", &completion(COMMIT_MESSAGE));
    }
    let text = match scenario(&body) {
        Scenario::Error500 => {
            return error_reply(
                "500 Internal Server Error",
                "server_error",
                "stand-in internal error",
            );
        }
        Scenario::RateLimit => {
            return error_reply_code(
                "429 Too Many Requests",
                "requests",
                "rate_limit_exceeded",
                "Rate limit reached for requests. Please try again in 2s.",
            )
            .header("retry-after", "2");
        }
        Scenario::Quota => {
            return error_reply_code(
                "429 Too Many Requests",
                "insufficient_quota",
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details.",
            );
        }
        Scenario::Slow => return Reply::sse(sse("All done.")).after(SLOW_DELAY),
        Scenario::Question => QUESTION.to_string(),
        Scenario::Marker => {
            format!(
                "I checked the code: it is right as it is.\n\nNIGHTSHIFT_DONE: {MARKER_SUMMARY}\n"
            )
        }
        Scenario::ShellDone if !said_before(&body, "aider-was-here") => {
            format!("I will commit and signal done.\n\n```bash\n{DONE_SHELL}\n```\n")
        }
        Scenario::ShellDone => "All done.".to_string(),
    };
    Reply::sse(sse(&text))
}

/// Whether an assistant message of the conversation holds `text` (the script's own earlier
/// reply; aider's prompt also has example exchanges, so they are not counted).
fn said_before(body: &Value, text: &str) -> bool {
    messages(body, "assistant").any(|m| m.contains(text))
}

fn messages<'a>(body: &'a Value, role: &'a str) -> impl Iterator<Item = String> + 'a {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |m| m["role"] == role)
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        })
}

/// The texts of the user's messages.
pub(crate) fn user_texts(body: &Value) -> Vec<String> {
    messages(body, "user").collect()
}

fn completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "stand-in",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop",
        }],
        "usage": { "prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49 },
    })
}

/// A whole stream: the role, the text, the finish with usage, then `[DONE]`.
fn sse(text: &str) -> String {
    let chunk = |choice: Value, usage: Option<Value>| {
        let mut c = json!({
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "stand-in",
            "choices": [choice],
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        format!("data: {c}\n\n")
    };
    [
        chunk(
            json!({ "index": 0, "delta": { "role": "assistant", "content": "" } }),
            None,
        ),
        chunk(json!({ "index": 0, "delta": { "content": text } }), None),
        chunk(
            json!({ "index": 0, "delta": {}, "finish_reason": "stop" }),
            Some(json!({ "prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49 })),
        ),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat()
}

fn error_reply(status: &'static str, kind: &str, message: &str) -> Reply {
    error_reply_code(status, kind, kind, message)
}

/// An OpenAI API error body.
fn error_reply_code(status: &'static str, kind: &str, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": { "message": message, "type": kind, "param": null, "code": code } }),
    )
}
