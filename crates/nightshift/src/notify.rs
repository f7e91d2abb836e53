//! Notification channels: desktop pop-ups, webhooks and user commands.
//!
//! [`Notifier::send`] only enqueues; one tokio task per channel delivers, rate-limits
//! (coalescing what arrives meanwhile) and retries with backoff, so a slow or broken
//! channel never blocks the daemon or the other channels.

use std::collections::HashSet;
use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// One `[[notify]]` entry in config.toml.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// "desktop", "webhook" or "command".
    pub kind: ChannelKind,
    /// webhook: the URL (http or https).
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: "json" (default: the Notification as JSON), "ntfy" (plain-text body,
    /// Title/Tags/Priority headers as ntfy.sh expects), "slack" (`{"text": ...}`).
    #[serde(default)]
    pub preset: Option<String>,
    /// command: argv, run directly (never a shell), with the event in NIGHTSHIFT_NOTIFY_* env vars.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Which events: any of "attention", "cleared", "done", "failed", "drained", "held".
    /// Default: attention, done, failed, held.
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
    /// At most one message per this interval per channel (messages in between are merged
    /// into the next). Default "5s".
    #[serde(default)]
    pub min_interval: Option<String>,
}

#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Desktop,
    Webhook,
    Command,
}

#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Attention,
    Cleared,
    Done,
    Failed,
    Drained,
    /// The queue is held: the home's disk is full.
    Held,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Attention => "attention",
            EventKind::Cleared => "cleared",
            EventKind::Done => "done",
            EventKind::Failed => "failed",
            EventKind::Drained => "drained",
            EventKind::Held => "held",
        }
    }

    /// Orders events when several are merged into one message: the merged one takes
    /// the most urgent kind, so e.g. ntfy's priority is not lowered by a trailing "done".
    fn urgency(self) -> u8 {
        match self {
            EventKind::Failed | EventKind::Held => 4,
            EventKind::Attention => 3,
            EventKind::Done => 2,
            EventKind::Drained => 1,
            EventKind::Cleared => 0,
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelKind::Desktop => "desktop",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Command => "command",
        })
    }
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Notification {
    pub event: EventKind,
    pub task_id: Option<String>,
    /// One line: what happened to which task, e.g. "nightshift: fix-bug needs attention (waiting)".
    pub title: String,
    /// Why, with the evidence, and the exact command to attach.
    pub body: String,
    /// e.g. "nightshift attach fix-bug" (None for drained).
    pub attach: Option<String>,
    pub at: jiff::Timestamp,
}

const DEFAULT_EVENTS: [EventKind; 4] = [
    EventKind::Attention,
    EventKind::Done,
    EventKind::Failed,
    EventKind::Held,
];
const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(5);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-channel queue; when full (a channel stuck for a long time) new messages are dropped
/// with a warning rather than growing memory or blocking the caller.
const QUEUE_CAPACITY: usize = 256;
/// At most this many queued messages are merged into one delivery.
const MAX_BATCH: usize = 50;
/// Header values longer than this are cut (some servers reject huge headers).
const MAX_HEADER_CHARS: usize = 250;

/// Validates channel configs (kind-specific fields present, URL parses as http/https,
/// command non-empty, durations parse); errors name the entry index and the problem.
pub fn validate(channels: &[ChannelConfig]) -> Result<(), String> {
    let mut errors = Vec::new();
    for (i, c) in channels.iter().enumerate() {
        let mut problem = |p: String| {
            errors.push(format!("[[notify]] entry {} ({}): {p}", i + 1, c.kind));
        };
        match c.kind {
            ChannelKind::Webhook => match c.url.as_deref() {
                None => problem("missing `url`".into()),
                Some(url) => {
                    if let Err(e) = check_url(url) {
                        problem(e);
                    }
                }
            },
            _ if c.url.is_some() => problem("`url` is only for kind = \"webhook\"".into()),
            _ => {}
        }
        match (c.kind, c.preset.as_deref()) {
            (ChannelKind::Webhook, Some(p)) => {
                if let Err(e) = Preset::parse(p) {
                    problem(e);
                }
            }
            (_, Some(_)) => problem("`preset` is only for kind = \"webhook\"".into()),
            _ => {}
        }
        match (c.kind, c.command.as_deref()) {
            (ChannelKind::Command, None) => problem("missing `command` (an argv list)".into()),
            (ChannelKind::Command, Some(argv)) if argv.first().is_none_or(|p| p.is_empty()) => {
                problem("`command` must start with a program name".into());
            }
            (ChannelKind::Command, Some(_)) => {}
            (_, Some(_)) => problem("`command` is only for kind = \"command\"".into()),
            _ => {}
        }
        if c.events.as_ref().is_some_and(|e| e.is_empty()) {
            problem("`events` is empty (leave it out for the default)".into());
        }
        if let Some(Err(e)) = c
            .min_interval
            .as_deref()
            .map(nightshift_core::task::parse_duration)
        {
            problem(format!("`min_interval`: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("`url` `{url}` does not parse: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("`url` `{url}` must start with http:// or https://")),
    }
    if uri.host().is_none_or(|h| h.is_empty()) {
        return Err(format!("`url` `{url}` has no host"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preset {
    Json,
    Ntfy,
    Slack,
}

impl Preset {
    fn parse(text: &str) -> Result<Preset, String> {
        match text {
            "json" => Ok(Preset::Json),
            "ntfy" => Ok(Preset::Ntfy),
            "slack" => Ok(Preset::Slack),
            other => Err(format!(
                "unknown `preset` `{other}` (expected \"json\", \"ntfy\" or \"slack\")"
            )),
        }
    }
}

/// Knobs that tests shrink; production uses [`Tuning::DEFAULT`].
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// First retry delay; doubles on each further failure.
    backoff: Duration,
    /// Delivery attempts per message, including the first.
    tries: u32,
    /// Honour HTTP(S)_PROXY / NO_PROXY (tests turn it off so loopback is never proxied).
    env_proxy: bool,
}

impl Tuning {
    const DEFAULT: Tuning = Tuning {
        backoff: Duration::from_secs(1),
        tries: 5,
        env_proxy: true,
    };
}

/// Sends notifications in the background. Never blocks the caller, never panics; a failing
/// channel is logged and retried with exponential backoff, and does not delay other channels.
#[derive(Debug, Clone)]
pub struct Notifier {
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    name: String,
    events: HashSet<EventKind>,
    tx: mpsc::Sender<Notification>,
}

impl Notifier {
    /// Must be called inside a tokio runtime. Spawns one worker task per channel (an mpsc queue each).
    pub fn start(channels: &[ChannelConfig]) -> Result<Notifier, String> {
        Notifier::start_with(channels, Tuning::DEFAULT)
    }

    fn start_with(channels: &[ChannelConfig], tuning: Tuning) -> Result<Notifier, String> {
        validate(channels)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "notifications need a tokio runtime".to_string())?;
        let mut routes = Vec::with_capacity(channels.len());
        for (i, c) in channels.iter().enumerate() {
            let name = format!("notify[{}] {}", i + 1, c.kind);
            let channel = Channel::new(name.clone(), c, tuning)?;
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            runtime.spawn(channel.run(rx));
            let events = c
                .events
                .as_deref()
                .unwrap_or(&DEFAULT_EVENTS)
                .iter()
                .copied()
                .collect();
            routes.push(Route { name, events, tx });
        }
        Ok(Notifier { routes })
    }

    /// Enqueues `n` to each channel that wants `n.event`.
    pub fn send(&self, n: Notification) {
        for route in self.routes.iter().filter(|r| r.events.contains(&n.event)) {
            match route.tx.try_send(n.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(channel = %route.name, title = %n.title, "notification queue full; dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::warn!(channel = %route.name, "notification worker gone; dropped");
                }
            }
        }
    }
}

enum Sink {
    Desktop,
    Webhook {
        agent: ureq::Agent,
        url: String,
        preset: Preset,
    },
    Command {
        argv: Vec<String>,
    },
}

/// Result of one delivery attempt.
enum Outcome {
    Sent,
    /// Worth retrying.
    Failed(String),
    /// The tool is not installed: retrying can't help.
    Unavailable(String),
}

struct Channel {
    name: String,
    sink: Sink,
    min_interval: Duration,
    tuning: Tuning,
    warned_unavailable: bool,
}

impl Channel {
    fn new(name: String, c: &ChannelConfig, tuning: Tuning) -> Result<Channel, String> {
        let min_interval = match &c.min_interval {
            Some(text) => {
                nightshift_core::task::parse_duration(text).map_err(|e| format!("{name}: {e}"))?
            }
            None => DEFAULT_MIN_INTERVAL,
        };
        let sink = match c.kind {
            ChannelKind::Desktop => Sink::Desktop,
            ChannelKind::Webhook => {
                let url = c
                    .url
                    .clone()
                    .ok_or_else(|| format!("{name}: missing url"))?;
                let preset = Preset::parse(c.preset.as_deref().unwrap_or("json"))?;
                let mut config = ureq::Agent::config_builder()
                    .timeout_global(Some(WEBHOOK_TIMEOUT))
                    // Statuses are judged here, so the error names the status.
                    .http_status_as_error(false)
                    .user_agent(concat!("nightshift/", env!("CARGO_PKG_VERSION")));
                if !tuning.env_proxy {
                    config = config.proxy(None);
                }
                Sink::Webhook {
                    agent: config.build().new_agent(),
                    url,
                    preset,
                }
            }
            ChannelKind::Command => Sink::Command {
                argv: c.command.clone().unwrap_or_default(),
            },
        };
        Ok(Channel {
            name,
            sink,
            min_interval,
            tuning,
            warned_unavailable: false,
        })
    }

    /// The worker: ends when every [`Notifier`] clone is dropped and the queue is empty.
    async fn run(mut self, mut rx: mpsc::Receiver<Notification>) {
        let mut last: Option<Instant> = None;
        while let Some(first) = rx.recv().await {
            if let Some(last) = last {
                tokio::time::sleep_until(last + self.min_interval).await;
            }
            // Whatever queued up while we waited goes out as one message. Without a rate
            // limit each message goes out on its own.
            let mut batch = vec![first];
            while !self.min_interval.is_zero() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(n) => batch.push(n),
                    Err(_) => break,
                }
            }
            let n = coalesce(batch);
            self.deliver(&n).await;
            // Measured from the end, so retries also count against the interval.
            last = Some(Instant::now());
        }
    }

    async fn deliver(&mut self, n: &Notification) {
        let tries = self.tuning.tries.max(1);
        for attempt in 1..=tries {
            match self.attempt(n).await {
                Outcome::Sent => return,
                Outcome::Unavailable(why) => {
                    if !self.warned_unavailable {
                        self.warned_unavailable = true;
                        tracing::warn!(channel = %self.name, "desktop notifications unavailable: {why}");
                    }
                    return;
                }
                Outcome::Failed(why) if attempt == tries => {
                    tracing::warn!(channel = %self.name, title = %n.title, "notification failed {tries} times, giving up: {why}");
                    return;
                }
                Outcome::Failed(why) => {
                    let delay = self
                        .tuning
                        .backoff
                        .saturating_mul(1 << (attempt - 1).min(16));
                    tracing::warn!(channel = %self.name, "notification failed (try {attempt}/{tries}), retrying in {delay:?}: {why}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, n: &Notification) -> Outcome {
        match &self.sink {
            Sink::Desktop => desktop(n).await,
            Sink::Webhook { agent, url, preset } => {
                let (agent, url, preset, n) = (agent.clone(), url.clone(), *preset, n.clone());
                match tokio::task::spawn_blocking(move || post(&agent, &url, preset, &n)).await {
                    Ok(Ok(())) => Outcome::Sent,
                    Ok(Err(e)) => Outcome::Failed(e),
                    Err(e) => Outcome::Failed(format!("webhook task failed: {e}")),
                }
            }
            Sink::Command { argv } => match run_command(argv, n).await {
                Ok(()) => Outcome::Sent,
                Err(e) => Outcome::Failed(e),
            },
        }
    }
}

/// Merges several notifications into one that lists every title and keeps every body.
fn coalesce(mut batch: Vec<Notification>) -> Notification {
    if batch.len() <= 1
        && let Some(n) = batch.pop()
    {
        return n;
    }
    let count = batch.len();
    let titles: Vec<&str> = batch
        .iter()
        .map(|n| n.title.strip_prefix("nightshift: ").unwrap_or(&n.title))
        .collect();
    let title = format!("nightshift: {count} events: {}", titles.join("; "));
    let body = batch
        .iter()
        .map(|n| format!("{}\n{}", n.title, n.body))
        .collect::<Vec<_>>()
        .join("\n\n");
    let event = batch
        .iter()
        .map(|n| n.event)
        .max_by_key(|e| e.urgency())
        .unwrap_or(EventKind::Attention);
    let task_id = common(batch.iter().map(|n| &n.task_id));
    let attach = common(batch.iter().map(|n| &n.attach));
    let at = batch
        .last()
        .map(|n| n.at)
        .unwrap_or_else(jiff::Timestamp::now);
    Notification {
        event,
        task_id,
        title,
        body,
        attach,
        at,
    }
}

/// The value every item shares, or None.
fn common<'a>(mut values: impl Iterator<Item = &'a Option<String>>) -> Option<String> {
    let first = values.next()?.as_deref()?;
    values
        .all(|v| v.as_deref() == Some(first))
        .then(|| first.to_string())
}

/// The last `max` characters of `text`, trimmed.
fn tail(text: &str, max: usize) -> &str {
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(max.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    &text[start..]
}

/// A header value from free text: control characters (newlines!) become spaces, long text is cut.
fn header_value(text: &str) -> ureq::http::HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_HEADER_CHARS)
        .collect();
    // UTF-8 bytes are valid header octets (ntfy decodes them); fall back just in case.
    ureq::http::HeaderValue::from_bytes(clean.trim().as_bytes())
        .unwrap_or_else(|_| ureq::http::HeaderValue::from_static("nightshift"))
}

fn ntfy_tags(event: EventKind) -> &'static str {
    match event {
        EventKind::Attention => "warning",
        EventKind::Cleared => "ok",
        EventKind::Done => "white_check_mark",
        EventKind::Failed => "x",
        EventKind::Drained => "checkered_flag",
        EventKind::Held => "floppy_disk",
    }
}

fn ntfy_priority(event: EventKind) -> &'static str {
    match event {
        EventKind::Attention | EventKind::Failed | EventKind::Held => "high",
        EventKind::Done => "default",
        EventKind::Cleared | EventKind::Drained => "low",
    }
}

/// Blocking POST (run in `spawn_blocking`). Any non-2xx status is an error.
fn post(agent: &ureq::Agent, url: &str, preset: Preset, n: &Notification) -> Result<(), String> {
    let request = agent.post(url);
    let sent = match preset {
        Preset::Json => {
            let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
            request
                .header("Content-Type", "application/json")
                .send(&body[..])
        }
        Preset::Slack => {
            let text = format!("{}\n{}", n.title, n.body);
            let body = serde_json::to_vec(&serde_json::json!({ "text": text }))
                .map_err(|e| e.to_string())?;
            request
                .header("Content-Type", "application/json")
                .send(&body[..])
        }
        Preset::Ntfy => request
            .header("Title", header_value(&n.title))
            .header("Tags", ntfy_tags(n.event))
            .header("Priority", ntfy_priority(n.event))
            .header("Content-Type", "text/plain; charset=utf-8")
            .send(n.body.as_str()),
    };
    match sent {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("{url} answered HTTP {}", response.status())),
        Err(e) => Err(format!("POST {url}: {e}")),
    }
}

async fn run_command(argv: &[String], n: &Notification) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let json = serde_json::to_string(n).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("NIGHTSHIFT_NOTIFY_EVENT", n.event.as_str())
        .env("NIGHTSHIFT_NOTIFY_TASK", n.task_id.as_deref().unwrap_or(""))
        .env("NIGHTSHIFT_NOTIFY_TITLE", &n.title)
        .env("NIGHTSHIFT_NOTIFY_BODY", &n.body)
        .env(
            "NIGHTSHIFT_NOTIFY_ATTACH",
            n.attach.as_deref().unwrap_or(""),
        )
        .env("NIGHTSHIFT_NOTIFY_JSON", json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // On timeout the future is dropped, which kills the child.
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Err(_) => return Err(format!("`{program}` timed out after {COMMAND_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("`{program}`: {e}")),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "`{program}` exited with {}: {}",
        output.status,
        tail(&stderr, 300)
    ))
}

/// Desktop pop-up through the OS tool; title and body go as argv, never into a script.
async fn desktop(n: &Notification) -> Outcome {
    let (program, mut cmd) = if cfg!(target_os = "macos") {
        let mut cmd = tokio::process::Command::new("osascript");
        cmd.args([
            "-e",
            "on run argv",
            "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e",
            "end run",
        ]);
        ("osascript", cmd)
    } else {
        let mut cmd = tokio::process::Command::new("notify-send");
        // `--` so a title starting with `-` is not taken for an option.
        cmd.arg("--");
        ("notify-send", cmd)
    };
    cmd.arg(&n.title)
        .arg(&n.body)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Unavailable(format!("`{program}` is not on PATH"));
        }
        Err(e) => return Outcome::Failed(format!("cannot run `{program}`: {e}")),
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Err(_) => Outcome::Failed(format!("`{program}` timed out")),
        Ok(Err(e)) => Outcome::Failed(format!("`{program}`: {e}")),
        Ok(Ok(out)) if out.status.success() => Outcome::Sent,
        Ok(Ok(out)) => Outcome::Failed(format!(
            "`{program}` exited with {}: {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 300)
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::path::Path;

    const DEADLINE: Duration = Duration::from_secs(30);

    /// Small delays so retry tests run fast; never proxy loopback.
    const FAST: Tuning = Tuning {
        backoff: Duration::from_millis(20),
        tries: 5,
        env_proxy: false,
    };

    #[derive(Debug)]
    struct Request {
        request_line: String,
        /// Lower-cased names.
        headers: Vec<(String, String)>,
        body: String,
        at: std::time::Instant,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A real HTTP server on loopback: answers the given statuses in order, then 200.
    fn receiver(statuses: Vec<u16>) -> (String, tokio::sync::mpsc::UnboundedReceiver<Request>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap();
                    headers.push((name.trim().to_lowercase(), value.trim().to_string()));
                }
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let status = statuses.next().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(answer.as_bytes()).unwrap();
                let request = Request {
                    request_line: request_line.trim_end().to_string(),
                    headers,
                    body: String::from_utf8(body).unwrap(),
                    at: std::time::Instant::now(),
                };
                if tx.send(request).is_err() {
                    break;
                }
            }
        });
        (url, rx)
    }

    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Request>) -> Request {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("no request within the deadline")
            .expect("receiver thread ended")
    }

    fn note(event: EventKind, task: &str) -> Notification {
        Notification {
            event,
            task_id: Some(task.to_string()),
            title: format!("nightshift: {task} {}", event.as_str()),
            body: format!("why {task}\nattach: nightshift attach {task}"),
            attach: Some(format!("nightshift attach {task}")),
            at: jiff::Timestamp::now(),
        }
    }

    fn webhook(url: &str, preset: Option<&str>) -> ChannelConfig {
        ChannelConfig {
            kind: ChannelKind::Webhook,
            url: Some(url.to_string()),
            preset: preset.map(str::to_string),
            command: None,
            events: None,
            min_interval: Some("0s".into()),
        }
    }

    fn command(argv: &[&str], events: Option<Vec<EventKind>>) -> ChannelConfig {
        ChannelConfig {
            kind: ChannelKind::Command,
            url: None,
            preset: None,
            command: Some(argv.iter().map(|s| s.to_string()).collect()),
            events,
            min_interval: Some("0s".into()),
        }
    }

    async fn wait_for_file(path: &Path, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if pred(&text) {
                return text;
            }
            assert!(
                Instant::now() < end,
                "{} never matched: {text:?}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn webhook_json_posts_the_notification() {
        let (url, mut rx) = receiver(vec![]);
        let notifier = Notifier::start_with(&[webhook(&url, None)], FAST).unwrap();
        notifier.send(note(EventKind::Attention, "fix-bug"));
        let req = next(&mut rx).await;
        assert_eq!(req.request_line, "POST /hook HTTP/1.1");
        assert_eq!(req.header("content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(json["title"], "nightshift: fix-bug attention");
        assert_eq!(json["event"], "attention");
        assert_eq!(json["task_id"], "fix-bug");
        assert_eq!(json["attach"], "nightshift attach fix-bug");
    }

    #[tokio::test]
    async fn webhook_ntfy_preset_sends_plain_text_with_headers() {
        let (url, mut rx) = receiver(vec![]);
        let notifier = Notifier::start_with(&[webhook(&url, Some("ntfy"))], FAST).unwrap();
        notifier.send(note(EventKind::Failed, "fix-bug"));
        let req = next(&mut rx).await;
        assert_eq!(req.header("title"), Some("nightshift: fix-bug failed"));
        assert_eq!(req.header("priority"), Some("high"));
        assert_eq!(req.header("tags"), Some("x"));
        assert!(
            req.header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(req.body, "why fix-bug\nattach: nightshift attach fix-bug");
    }

    #[tokio::test]
    async fn webhook_slack_preset_sends_text() {
        let (url, mut rx) = receiver(vec![]);
        let notifier = Notifier::start_with(&[webhook(&url, Some("slack"))], FAST).unwrap();
        notifier.send(note(EventKind::Done, "fix-bug"));
        let req = next(&mut rx).await;
        let json: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), 1, "{json}");
        let text = obj["text"].as_str().unwrap();
        assert!(text.starts_with("nightshift: fix-bug done\n"), "{text}");
        assert!(text.contains("nightshift attach fix-bug"), "{text}");
    }

    #[tokio::test]
    async fn webhook_retries_after_server_errors() {
        let (url, mut rx) = receiver(vec![500, 500]);
        let notifier = Notifier::start_with(&[webhook(&url, None)], FAST).unwrap();
        notifier.send(note(EventKind::Done, "retry-me"));
        for _ in 0..3 {
            let req = next(&mut rx).await;
            assert!(
                req.body.contains("nightshift: retry-me done"),
                "{}",
                req.body
            );
        }
    }

    #[tokio::test]
    async fn failing_channel_does_not_delay_others() {
        // Port of a closed listener: connection refused on every try.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", l.local_addr().unwrap())
        };
        let slow = Tuning {
            backoff: Duration::from_secs(3600),
            ..FAST
        };
        let (url, mut rx) = receiver(vec![]);
        let notifier =
            Notifier::start_with(&[webhook(&dead, None), webhook(&url, None)], slow).unwrap();
        notifier.send(note(EventKind::Done, "a"));
        notifier.send(note(EventKind::Failed, "b"));
        let first = next(&mut rx).await;
        assert!(first.body.contains("nightshift: a done"), "{}", first.body);
    }

    #[tokio::test]
    async fn command_gets_event_in_env_and_body_literally() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events.txt");
        let body_file = dir.path().join("body.txt");
        let pwned = dir.path().join("pwned");
        // Paths go in as $0/$1, not into the script text.
        let script = r#"printf '%s|%s\n' "$NIGHTSHIFT_NOTIFY_EVENT" "$NIGHTSHIFT_NOTIFY_TITLE" >> "$0"; printf '%s' "$NIGHTSHIFT_NOTIFY_BODY" > "$1"; printf '%s' "$NIGHTSHIFT_NOTIFY_JSON" > "$1.json""#;
        let argv = [
            "sh",
            "-c",
            script,
            out.to_str().unwrap(),
            body_file.to_str().unwrap(),
        ];
        let notifier = Notifier::start_with(&[command(&argv, None)], FAST).unwrap();
        let mut n = note(EventKind::Attention, "fix-bug");
        let evil = format!(
            "a $(touch {p}) b `touch {p}` c; touch {p}",
            p = pwned.display()
        );
        n.body = evil.clone();
        notifier.send(n);
        let text = wait_for_file(&out, |t| t.ends_with('\n')).await;
        assert_eq!(text, "attention|nightshift: fix-bug attention\n");
        let body = wait_for_file(&body_file, |t| !t.is_empty()).await;
        assert_eq!(body, evil);
        let json_path = dir.path().join("body.txt.json");
        let json = wait_for_file(&json_path, |t| !t.is_empty()).await;
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["body"], evil.as_str());
        assert!(!pwned.exists(), "the body was executed");
    }

    #[tokio::test]
    async fn command_retries_on_nonzero_exit() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count.txt");
        // Fails twice (appending a line each time), succeeds on the third run.
        let script = r#"echo x >> "$0"; [ "$(wc -l < "$0")" -ge 3 ]"#;
        let argv = ["sh", "-c", script, count.to_str().unwrap()];
        let notifier = Notifier::start_with(&[command(&argv, None)], FAST).unwrap();
        notifier.send(note(EventKind::Done, "t"));
        wait_for_file(&count, |t| t.lines().count() >= 3).await;
    }

    #[tokio::test]
    async fn events_filter_skips_unwanted_events() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events.txt");
        let script = r#"printf '%s\n' "$NIGHTSHIFT_NOTIFY_EVENT" >> "$0""#;
        let argv = ["sh", "-c", script, out.to_str().unwrap()];
        let notifier =
            Notifier::start_with(&[command(&argv, Some(vec![EventKind::Failed]))], FAST).unwrap();
        notifier.send(note(EventKind::Done, "a"));
        notifier.send(note(EventKind::Failed, "b"));
        // The queue is FIFO: had "done" been enqueued it would be delivered first or merged.
        let text = wait_for_file(&out, |t| t.ends_with('\n')).await;
        assert_eq!(text, "failed\n");
    }

    #[test]
    fn default_events_are_attention_done_failed_held() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let notifier = Notifier::start_with(&[webhook("http://127.0.0.1:9/", None)], FAST).unwrap();
        let events = &notifier.routes[0].events;
        assert_eq!(events.len(), 4);
        for e in DEFAULT_EVENTS {
            assert!(events.contains(&e));
        }
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        let err = Notifier::start(&[]).unwrap_err();
        assert!(err.contains("tokio"), "{err}");
    }

    #[tokio::test]
    async fn rate_limit_spaces_deliveries_and_merges() {
        let (url, mut rx) = receiver(vec![]);
        let mut cfg = webhook(&url, None);
        cfg.min_interval = Some("300ms".into());
        let interval = Duration::from_millis(300);
        let notifier = Notifier::start_with(&[cfg], FAST).unwrap();
        let names = ["one", "two", "three"];
        for name in names {
            notifier.send(note(EventKind::Done, name));
        }
        let mut deliveries: Vec<Request> = Vec::new();
        let all_seen = |ds: &[Request]| {
            names.iter().all(|name| {
                ds.iter()
                    .any(|d| d.body.contains(&format!("nightshift: {name} done")))
            })
        };
        while !all_seen(&deliveries) {
            deliveries.push(next(&mut rx).await);
        }
        assert!(deliveries.len() <= 3);
        for pair in deliveries.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap >= interval, "two deliveries {gap:?} apart");
        }
        // One more once the first is out: it must wait for the interval.
        let before = deliveries.last().unwrap().at;
        notifier.send(note(EventKind::Failed, "four"));
        let req = next(&mut rx).await;
        assert!(req.body.contains("nightshift: four failed"));
        assert!(req.at - before >= interval);
    }

    #[test]
    fn coalesce_lists_titles_and_keeps_bodies() {
        let merged = coalesce(vec![
            note(EventKind::Done, "a"),
            note(EventKind::Failed, "b"),
        ]);
        assert_eq!(merged.title, "nightshift: 2 events: a done; b failed");
        assert!(merged.body.contains("why a") && merged.body.contains("why b"));
        assert_eq!(merged.event, EventKind::Failed);
        assert_eq!(merged.task_id, None);
        assert_eq!(merged.attach, None);
        let same = coalesce(vec![
            note(EventKind::Attention, "a"),
            note(EventKind::Cleared, "a"),
        ]);
        assert_eq!(same.task_id.as_deref(), Some("a"));
        assert_eq!(same.event, EventKind::Attention);
    }

    #[test]
    fn header_value_strips_newlines_and_keeps_utf8() {
        let v = header_value("a\nb ✓");
        assert_eq!(v.as_bytes(), "a b ✓".as_bytes());
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("  abcdé  ", 3), "cdé");
        assert_eq!(tail("ab", 5), "ab");
    }

    #[test]
    fn validate_reports_entry_and_problem() {
        let ok = [
            webhook("https://ntfy.sh/topic", Some("ntfy")),
            command(&["/usr/bin/true"], None),
            ChannelConfig {
                kind: ChannelKind::Desktop,
                url: None,
                preset: None,
                command: None,
                events: Some(vec![EventKind::Attention]),
                min_interval: Some("1m".into()),
            },
        ];
        validate(&ok).unwrap();

        let mut no_url = webhook("x", None);
        no_url.url = None;
        let err = validate(&[no_url]).unwrap_err();
        assert!(
            err.contains("entry 1 (webhook)") && err.contains("url"),
            "{err}"
        );

        for bad in ["ftp://host/x", "not a url", "http://"] {
            let err = validate(&[ok[0].clone(), webhook(bad, None)]).unwrap_err();
            assert!(
                err.contains("entry 2 (webhook)") && err.contains(bad),
                "{err}"
            );
        }

        let mut no_argv = command(&[], None);
        let err = validate(&[no_argv.clone()]).unwrap_err();
        assert!(err.contains("entry 1 (command)"), "{err}");
        no_argv.command = None;
        let err = validate(&[no_argv]).unwrap_err();
        assert!(err.contains("missing `command`"), "{err}");

        let err = validate(&[webhook("http://h/", Some("discord"))]).unwrap_err();
        assert!(err.contains("unknown `preset` `discord`"), "{err}");

        let mut bad_interval = webhook("http://h/", None);
        bad_interval.min_interval = Some("soon".into());
        let err = validate(&[bad_interval]).unwrap_err();
        assert!(err.contains("min_interval"), "{err}");

        let mut stray = command(&["x"], None);
        stray.url = Some("http://h/".into());
        assert!(validate(&[stray]).unwrap_err().contains("only for"));

        // start() refuses what validate() refuses.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(Notifier::start(&[webhook("gopher://h/", None)]).is_err());
    }

    #[test]
    fn config_parses_from_toml() {
        #[derive(serde::Deserialize)]
        struct File {
            notify: Vec<ChannelConfig>,
        }
        let text = r#"
            [[notify]]
            kind = "webhook"
            url = "https://ntfy.sh/mine"
            preset = "ntfy"
            events = ["attention", "failed", "drained"]
            min_interval = "10s"

            [[notify]]
            kind = "command"
            command = ["/usr/local/bin/page-me", "--loud"]

            [[notify]]
            kind = "desktop"
        "#;
        let file: File = toml::from_str(text).unwrap();
        assert_eq!(file.notify.len(), 3);
        assert_eq!(file.notify[0].kind, ChannelKind::Webhook);
        assert_eq!(
            file.notify[0].events.as_deref(),
            Some(&[EventKind::Attention, EventKind::Failed, EventKind::Drained][..])
        );
        validate(&file.notify).unwrap();
        let unknown = "[[notify]]\nkind = \"desktop\"\nsound = true\n";
        assert!(toml::from_str::<File>(unknown).is_err());
    }
}
