//! The Gemini API's script, for the real Gemini CLI (`GOOGLE_GEMINI_BASE_URL=http://…`,
//! `GEMINI_API_KEY`).
//!
//! Gemini CLI 0.61 sends two kinds of requests: a router's side query
//! (`POST /v1beta/models/<flash-lite>:generateContent`, JSON out) that picks the model, and
//! the main turn (`POST /v1beta/models/<model>:streamGenerateContent?alt=sse`). The side query
//! always gets a low complexity score. The main turn follows the scenario named in the
//! conversation's text ([`scenario`]); by default it is [`COMMIT_COMMAND`] through the
//! `run_shell_command` tool, then [`DONE_COMMAND`], then the text [`FINAL_TEXT`].

use std::time::Duration;

use serde_json::{Value, json};

use super::{Reply, Request, Shared};

/// The scripted model's first command: a commit (needs approval unless a policy allows it).
pub(crate) const COMMIT_COMMAND: &str = "git commit --allow-empty -m gemini-was-here";
/// Its second: signalling done (the built-in profile's policy allows it).
pub(crate) const DONE_COMMAND: &str = r#"nightshift done --summary "fixed by gemini""#;
pub(crate) const FINAL_TEXT: &str = "All done.";
/// In a prompt: end the first turn with a question to the user.
pub(crate) const QUESTION_SCENARIO: &str = "nightshift-scenario: question";
pub(crate) const QUESTION: &str = "Which database should I use, PostgreSQL or SQLite?";
/// In a prompt: every main turn fails with HTTP 500.
pub(crate) const ERROR_500_SCENARIO: &str = "nightshift-scenario: error-500";
/// In a prompt: every main turn is rate limited (per-minute 429, `RetryInfo` 2 s).
pub(crate) const RATE_LIMIT_SCENARIO: &str = "nightshift-scenario: rate-limit";
/// In a prompt: the daily quota is spent (429 with a per-day `QuotaFailure`).
pub(crate) const DAILY_QUOTA_SCENARIO: &str = "nightshift-scenario: daily-quota";
/// In a prompt: every main turn answers only after [`SLOW_DELAY`].
pub(crate) const SLOW_SCENARIO: &str = "nightshift-scenario: slow";
pub(crate) const SLOW_DELAY: Duration = Duration::from_secs(30);

/// What the conversation asks the script to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    CommitThenDone,
    Question,
    Error500,
    RateLimit,
    DailyQuota,
    Slow,
}

/// The scenario named anywhere in the conversation's text; by default, commit then done.
pub(crate) fn scenario(body: &Value) -> Scenario {
    let text = body["contents"].to_string();
    [
        (QUESTION_SCENARIO, Scenario::Question),
        (ERROR_500_SCENARIO, Scenario::Error500),
        (RATE_LIMIT_SCENARIO, Scenario::RateLimit),
        (DAILY_QUOTA_SCENARIO, Scenario::DailyQuota),
        (SLOW_SCENARIO, Scenario::Slow),
    ]
    .into_iter()
    .find(|(marker, _)| text.contains(marker))
    .map_or(Scenario::CommitThenDone, |(_, s)| s)
}

/// The reply to one request.
pub(crate) fn respond(req: &Request, _shared: &Shared) -> Reply {
    let Some(body) = req.json() else {
        return error_reply(
            "400 Bad Request",
            400,
            "INVALID_ARGUMENT",
            "body is not JSON",
            &[],
        );
    };
    let route = req.route();
    if req.method != "POST" || !route.starts_with("/v1beta/models/") {
        return error_reply(
            "404 Not Found",
            404,
            "NOT_FOUND",
            "not in the stand-in",
            &[],
        );
    }
    if route.ends_with(":generateContent") {
        // The router's side query: a simple task, for the default model.
        let answer = r#"{"complexity_reasoning":"stand-in","complexity_score":10}"#;
        return Reply::json("200 OK", &response(vec![json!({ "text": answer })]));
    }
    if !route.ends_with(":streamGenerateContent") {
        return error_reply(
            "404 Not Found",
            404,
            "NOT_FOUND",
            "not in the stand-in",
            &[],
        );
    }
    let answered = function_responses(&body);
    let parts = match scenario(&body) {
        Scenario::Error500 => {
            return error_reply(
                "500 Internal Server Error",
                500,
                "INTERNAL",
                "stand-in internal error",
                &[],
            );
        }
        Scenario::RateLimit => {
            return error_reply(
                "429 Too Many Requests",
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                &[json!({
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "2s",
                })],
            )
            .header("retry-after", "2");
        }
        Scenario::DailyQuota => {
            return error_reply(
                "429 Too Many Requests",
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                &[json!({
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                        "quotaDimensions": { "location": "global", "model": "gemini-3.1-pro" },
                        "quotaValue": "250",
                    }],
                })],
            );
        }
        Scenario::Slow => {
            return Reply::sse(sse(&[json!({ "text": FINAL_TEXT })])).after(SLOW_DELAY);
        }
        Scenario::Question => vec![json!({ "text": QUESTION })],
        Scenario::CommitThenDone => match answered {
            0 => vec![shell_call(COMMIT_COMMAND)],
            1 => vec![shell_call(DONE_COMMAND)],
            _ => vec![json!({ "text": FINAL_TEXT })],
        },
    };
    Reply::sse(sse(&parts))
}

fn shell_call(command: &str) -> Value {
    json!({ "functionCall": {
        "name": "run_shell_command",
        "args": { "command": command, "description": "Work on the task" },
    } })
}

/// How many tool results the conversation already carries.
pub(crate) fn function_responses(body: &Value) -> usize {
    user_parts(body)
        .filter(|p| p.get("functionResponse").is_some())
        .count()
}

/// Every part of the user's turns.
pub(crate) fn user_parts(body: &Value) -> impl Iterator<Item = &Value> {
    body["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["role"] == "user")
        .filter_map(|c| c["parts"].as_array())
        .flatten()
}

/// The texts of the user's turns.
pub(crate) fn user_texts(body: &Value) -> Vec<String> {
    user_parts(body)
        .filter_map(|p| p["text"].as_str().map(String::from))
        .collect()
}

/// The shell commands the conversation's tool results answer, with their output.
pub(crate) fn tool_results(body: &Value) -> Vec<Value> {
    user_parts(body)
        .filter_map(|p| p.get("functionResponse").cloned())
        .collect()
}

fn response(parts: Vec<Value>) -> Value {
    json!({
        "candidates": [{
            "content": { "role": "model", "parts": parts },
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": { "promptTokenCount": 42, "candidatesTokenCount": 7, "totalTokenCount": 49 },
        "modelVersion": "stand-in",
    })
}

/// A whole event stream of one chunk.
fn sse(parts: &[Value]) -> String {
    format!("data: {}\n\n", response(parts.to_vec()))
}

/// A Google API error (`google.rpc.Status`).
fn error_reply(
    status: &'static str,
    code: u16,
    kind: &str,
    message: &str,
    details: &[Value],
) -> Reply {
    let mut error = json!({ "code": code, "message": message, "status": kind });
    if !details.is_empty() {
        error["details"] = Value::Array(details.to_vec());
    }
    Reply::json(status, &json!({ "error": error }))
}
