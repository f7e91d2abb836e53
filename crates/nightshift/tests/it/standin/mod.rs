//! Scripted stand-ins for the model vendors' APIs, so the real agent CLIs run offline: one
//! HTTP server ([`FakeApi`]) whose answers come from a vendor script (a [`Script`]), such as
//! [`anthropic`] for Claude Code.
//!
//! Plain HTTP/1.1 with keep-alive over std threads. Every response has a `Content-Length`
//! (an event stream is built whole, then sent), which keeps the framing trivial; a reply may
//! wait before it is sent, to play a slow model.

pub(crate) mod anthropic;
pub(crate) mod chat;
pub(crate) mod gemini;
pub(crate) mod responses;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

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

/// A vendor's script: the reply to one request. `Send + Sync` so every connection's thread
/// can ask it.
pub(crate) type Script = dyn Fn(&Request, &Shared) -> Reply + Send + Sync;

/// One answer: status line, headers, body, and how long to wait before sending it.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: &'static str,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub(crate) fn new(status: &'static str, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn json(status: &'static str, value: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", value.to_string().into_bytes())
    }

    /// A whole event stream.
    pub(crate) fn sse(text: String) -> Reply {
        Reply::new("200 OK", "text/event-stream", text.into_bytes())
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub(crate) fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
pub(crate) struct Shared {
    requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
    pub(crate) next_id: AtomicU64,
}

/// The running server; dropping it stops accepting and ends idle connections.
pub(crate) struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeApi {
    /// The Anthropic Messages stand-in, for Claude Code.
    pub(crate) fn start() -> FakeApi {
        FakeApi::with_script(anthropic::respond)
    }

    /// A server that answers with `script`.
    pub(crate) fn with_script(
        script: impl Fn(&Request, &Shared) -> Reply + Send + Sync + 'static,
    ) -> FakeApi {
        let script: Arc<Script> = Arc::new(script);
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
                let script = script.clone();
                std::thread::spawn(move || serve(conn, &conn_shared, &*script));
            }
        });
        FakeApi { addr, shared }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL` and the like.
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
fn serve(mut conn: TcpStream, shared: &Shared, script: &Script) {
    // A short read timeout lets an idle connection notice the stop flag.
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(request) = read_request(&mut conn, &mut buf, shared) else {
            return;
        };
        eprintln!("[fake-api] {} {}", request.method, request.path);
        shared.requests.lock().unwrap().push(request.clone());
        let reply = script(&request, shared);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let extra: String = reply
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let head = format!(
            "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
             request-id: req_fake_{}\r\n{extra}connection: keep-alive\r\n\r\n",
            reply.status,
            reply.content_type,
            reply.body.len(),
            shared.next_id.fetch_add(1, Ordering::SeqCst)
        );
        if conn.write_all(head.as_bytes()).is_err()
            || (request.method != "HEAD" && conn.write_all(&reply.body).is_err())
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

#[cfg(test)]
mod tests {
    use super::anthropic::{FINAL_TEXT, TOOL_USE_ID};
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

    #[test]
    fn gemini_script_routes_calls_tools_and_fails_on_demand() {
        use super::gemini::{
            COMMIT_COMMAND, DAILY_QUOTA_SCENARIO, DONE_COMMAND, RATE_LIMIT_SCENARIO,
        };
        let api = FakeApi::with_script(super::gemini::respond);
        let stream = "/v1beta/models/gemini-x:streamGenerateContent?alt=sse";
        let turn = |contents: &str| {
            exchange(
                &api,
                &post(stream, &format!(r#"{{"contents":{contents}}}"#)),
            )
        };
        let router = exchange(
            &api,
            &post(
                "/v1beta/models/flash-lite:generateContent",
                r#"{"contents":[]}"#,
            ),
        );
        assert!(router.contains("complexity_score"), "{router}");
        let first = turn(r#"[{"role":"user","parts":[{"text":"fix it"}]}]"#);
        assert!(
            first.contains("data: {") && first.contains("run_shell_command"),
            "{first}"
        );
        assert!(
            first.contains(&serde_json::to_string(COMMIT_COMMAND).unwrap()),
            "{first}"
        );
        let result = r#"{"role":"user","parts":[{"functionResponse":{"name":"run_shell_command","response":{"output":"ok"}}}]}"#;
        let second = turn(&format!(
            r#"[{{"role":"user","parts":[{{"text":"fix it"}}]}},{{"role":"model","parts":[]}},{result}]"#
        ));
        assert!(
            second.contains(&serde_json::to_string(DONE_COMMAND).unwrap()[1..20]),
            "{second}"
        );
        let limited = turn(&format!(
            r#"[{{"role":"user","parts":[{{"text":"{RATE_LIMIT_SCENARIO}"}}]}}]"#
        ));
        assert!(limited.starts_with("HTTP/1.1 429"), "{limited}");
        assert!(
            limited.contains("retry-after: 2") && limited.contains("RetryInfo"),
            "{limited}"
        );
        let quota = turn(&format!(
            r#"[{{"role":"user","parts":[{{"text":"{DAILY_QUOTA_SCENARIO}"}}]}}]"#
        ));
        assert!(
            quota.contains("PerDay") && quota.contains("RESOURCE_EXHAUSTED"),
            "{quota}"
        );
    }

    #[test]
    fn chat_script_suggests_the_command_and_fails_on_demand() {
        use super::chat::{COMMIT_MESSAGE, DONE_SHELL, QUOTA_SCENARIO, RATE_LIMIT_SCENARIO};
        let api = FakeApi::with_script(super::chat::respond);
        let chat = |body: &str| exchange(&api, &post("/v1/chat/completions", body));
        let first = chat(r#"{"stream":true,"messages":[{"role":"user","content":"fix it"}]}"#);
        assert!(
            first.contains("```bash") && first.contains("data: [DONE]"),
            "{first}"
        );
        assert!(
            first.contains(&serde_json::to_string(DONE_SHELL).unwrap()[1..30]),
            "{first}"
        );
        let commit = chat(r#"{"messages":[{"role":"user","content":"diff"}]}"#);
        assert!(
            commit.contains(COMMIT_MESSAGE) && commit.contains("chat.completion"),
            "{commit}"
        );
        let limited = chat(&format!(
            r#"{{"stream":true,"messages":[{{"role":"user","content":"{RATE_LIMIT_SCENARIO}"}}]}}"#
        ));
        assert!(
            limited.starts_with("HTTP/1.1 429") && limited.contains("retry-after: 2"),
            "{limited}"
        );
        let quota = chat(&format!(
            r#"{{"stream":true,"messages":[{{"role":"user","content":"{QUOTA_SCENARIO}"}}]}}"#
        ));
        assert!(quota.contains("insufficient_quota"), "{quota}");
    }
}
