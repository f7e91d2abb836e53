//! A scripted stand-in for the Anthropic Messages API, so the real Claude Code CLI can run
//! offline (`ANTHROPIC_BASE_URL=http://127.0.0.1:<port>`).
//!
//! The script: the main conversation (a `/v1/messages` request that offers tools) first gets
//! a `tool_use` of the Bash tool running [`DONE_COMMAND`]; once the request carries that
//! tool's `tool_result`, it gets the text "All done." and `end_turn`. Side requests (titles,
//! summaries, quota checks: no tools) get a short text, so they never advance the script.
//! A prompt holding [`PERMISSION_SCENARIO`] first gets a Bash call of [`PERMISSION_COMMAND`],
//! which no rule allows, so Claude Code asks for permission.
//!
//! Plain HTTP/1.1 with keep-alive over std threads. Every response has a `Content-Length`
//! (an SSE stream is built whole, then sent), which keeps the framing trivial.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// The command the scripted model asks Claude Code to run.
pub(crate) const DONE_COMMAND: &str = r#"nightshift done --summary "fixed by claude""#;
/// The id of the scripted tool call, to recognise its result.
const TOOL_USE_ID: &str = "toolu_nightshift_fake_1";
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
/// Requests bigger than this are refused: nothing Claude Code sends comes close.
const MAX_BODY: usize = 64 << 20;

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// With the query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub(crate) fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
    next_id: AtomicU64,
}

/// The running server; dropping it stops accepting and ends idle connections.
pub(crate) struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeApi {
    pub(crate) fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake API");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept_shared = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let conn_shared = accept_shared.clone();
                std::thread::spawn(move || serve(conn, &conn_shared));
            }
        });
        FakeApi { addr, shared }
    }

    /// For `ANTHROPIC_BASE_URL`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// `METHOD path` per request, for failure messages.
    pub(crate) fn log(&self) -> String {
        self.requests()
            .iter()
            .map(|r| format!("{} {} ({} bytes)\n", r.method, r.path, r.body.len()))
            .collect()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one keep-alive connection until the client closes it or the server stops.
fn serve(mut conn: TcpStream, shared: &Shared) {
    // A short read timeout lets an idle connection notice the stop flag.
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(request) = read_request(&mut conn, &mut buf, shared) else {
            return;
        };
        eprintln!("[fake-api] {} {}", request.method, request.path);
        shared.requests.lock().unwrap().push(request.clone());
        let (status, content_type, body) = respond(&request, shared);
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             request-id: req_fake_{}\r\nconnection: keep-alive\r\n\r\n",
            body.len(),
            shared.next_id.fetch_add(1, Ordering::SeqCst)
        );
        if conn.write_all(head.as_bytes()).is_err()
            || (request.method != "HEAD" && conn.write_all(&body).is_err())
            || conn.flush().is_err()
        {
            return;
        }
    }
}

/// Reads one request (head and body, `Content-Length` or chunked). `None` when the
/// connection ended, is malformed, or the server stopped.
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        fill(conn, buf, shared)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let mut length = 0usize;
    let mut chunked = false;
    let mut expect_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok()?,
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if expect_continue {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let body = if chunked {
        read_chunked(conn, buf, shared)?
    } else {
        if length > MAX_BODY {
            return None;
        }
        while buf.len() < length {
            fill(conn, buf, shared)?;
        }
        buf.drain(..length).collect()
    };
    Some(Request { method, path, body })
}

fn read_chunked(conn: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            fill(conn, buf, shared)?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers (normally none) end with an empty line.
            loop {
                if let Some(i) = find(buf, b"\r\n") {
                    buf.drain(..i + 2);
                    if i == 0 {
                        return Some(body);
                    }
                } else {
                    fill(conn, buf, shared)?;
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return None;
        }
        while buf.len() < size + 2 {
            fill(conn, buf, shared)?;
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// Reads more bytes into `buf`; `None` on EOF, error, or stop.
fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Some(());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status line, content type and body for a request.
fn respond(req: &Request, shared: &Shared) -> (&'static str, &'static str, Vec<u8>) {
    let json_ok = |v: Value| ("200 OK", "application/json", v.to_string().into_bytes());
    match (req.method.as_str(), req.route()) {
        ("POST", "/v1/messages/count_tokens") => json_ok(json!({ "input_tokens": 42 })),
        ("POST", "/v1/messages") => {
            let Some(body) = req.json() else {
                return (
                    "400 Bad Request",
                    "application/json",
                    api_error("invalid_request_error", "body is not JSON"),
                );
            };
            let (content, stop_reason) = script(&body);
            let id = format!("msg_fake_{}", shared.next_id.fetch_add(1, Ordering::SeqCst));
            let model = body["model"].as_str().unwrap_or("claude-fake").to_string();
            if body["stream"].as_bool() == Some(true) {
                (
                    "200 OK",
                    "text/event-stream",
                    sse(&id, &model, &content, stop_reason).into_bytes(),
                )
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
        ("GET", _) => (
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One raw HTTP exchange with the server; returns the response text.
    fn exchange(api: &FakeApi, request: &str) -> String {
        let mut conn = TcpStream::connect(api.addr).unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until the whole Content-Length body is in.
        loop {
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed early");
            out.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                if body.len() >= len {
                    return text.into_owned();
                }
            }
        }
    }

    fn post(path: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn fake_api_follows_the_script() {
        let api = FakeApi::start();
        let tools = r#"[{"name":"Bash","input_schema":{}}]"#;
        let first = exchange(
            &api,
            &post(
                "/v1/messages?beta=true",
                &format!(
                    r#"{{"stream":true,"tools":{tools},"messages":[{{"role":"user","content":"hi"}}]}}"#
                ),
            ),
        );
        assert!(first.contains("event: message_start"), "{first}");
        assert!(first.contains(r#""stop_reason":"tool_use""#), "{first}");
        assert!(first.contains("nightshift done --summary"), "{first}");

        let second = exchange(
            &api,
            &post(
                "/v1/messages",
                &format!(
                    r#"{{"stream":false,"tools":{tools},"messages":[{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"{TOOL_USE_ID}","content":"ok"}}]}}]}}"#
                ),
            ),
        );
        assert!(second.contains(FINAL_TEXT), "{second}");
        assert!(second.contains(r#""stop_reason":"end_turn""#), "{second}");

        let side = exchange(
            &api,
            &post(
                "/v1/messages",
                r#"{"messages":[{"role":"user","content":"title?"}]}"#,
            ),
        );
        assert!(side.contains(r#""text":"OK.""#), "{side}");

        let count = exchange(&api, &post("/v1/messages/count_tokens", "{}"));
        assert!(count.contains("input_tokens"), "{count}");
        let other = exchange(&api, "GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");

        let routes: Vec<String> = api.requests().iter().map(|r| r.route().into()).collect();
        assert_eq!(
            routes,
            [
                "/v1/messages",
                "/v1/messages",
                "/v1/messages",
                "/v1/messages/count_tokens",
                "/v1/models"
            ]
        );
    }
}
