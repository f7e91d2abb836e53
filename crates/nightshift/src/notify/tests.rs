#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::webhook::header_value;
use super::worker::{Tuning, coalesce, tail};
use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use tokio::time::Instant;

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
            let answer =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
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
        file: None,
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
        command: Some(argv.iter().map(std::string::ToString::to_string).collect()),
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
fn default_events_are_attention_done_failed_held_limited_report() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let notifier = Notifier::start_with(&[webhook("http://127.0.0.1:9/", None)], FAST).unwrap();
    let events = &notifier.routes[0].events;
    assert_eq!(events.len(), 6);
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
