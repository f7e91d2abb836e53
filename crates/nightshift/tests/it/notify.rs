//! Notifications: each event reaches the configured channels once, saying what happened,
//! to which task, why, and how to attach.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::harness::{Env, Task, toml_str};

/// A command channel that appends `event|task|title` to a file, for every event kind.
fn command_channel(log: &std::path::Path) -> String {
    let script = format!(
        "printf '%s|%s|%s\\n' \"$NIGHTSHIFT_NOTIFY_EVENT\" \"$NIGHTSHIFT_NOTIFY_TASK\" \"$NIGHTSHIFT_NOTIFY_TITLE\" >> {}",
        log.display()
    );
    format!(
        "[[notify]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nevents = [\"attention\", \"cleared\", \"done\", \"failed\", \"drained\"]\nmin_interval = \"0s\"\n",
        toml_str(&script)
    )
}

#[test]
fn a_command_channel_hears_attention_clearing_outcomes_and_the_drained_queue() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("notified.log");
    let mut env = Env::builder()
        .config("max_agents", "1")
        .config_tail(&format!(
            "{}[attention]\nwaiting = true\ninput_debounce = \"200ms\"\n",
            command_channel(&log)
        ))
        .build();
    env.queue(
        "ask",
        &Task::script(["@ask Continue? (y/n)", "@sleep 300ms", "@done ok"]).front("priority: 2"),
    );
    env.queue("bad", &Task::script(["@exit 1"]));
    env.start_daemon();
    let read = |log: &std::path::Path| std::fs::read_to_string(log).unwrap_or_default();
    env.wait_until("the question is notified", |_| {
        read(&log).contains("attention|ask|")
    });
    env.run(&["send", "ask", "y"]);
    env.wait_until("everything is notified", |_| {
        read(&log).contains("drained||")
    });
    let text = read(&log);
    let lines: Vec<&str> = text.lines().collect();
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut p = l.split('|');
            format!("{}:{}", p.next().unwrap_or(""), p.next().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "attention:ask",
            "cleared:ask",
            "done:ask",
            "failed:bad",
            "drained:"
        ],
        "{text}"
    );
    assert!(lines[0].contains("needs attention (waiting)"), "{text}");
}

/// A one-shot HTTP receiver on loopback: returns its URL and the bodies it received.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[test]
fn a_webhook_receives_the_outcome_as_json() {
    let (url, bodies) = receiver();
    let mut env = Env::builder()
        .config_tail(&format!(
            "[[notify]]\nkind = \"webhook\"\nurl = {}\nevents = [\"done\"]\n",
            toml_str(&url)
        ))
        .build();
    env.queue("ship", &Task::script(["@done shipped it"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("ship"), "done");
    env.wait_until("the webhook is called", |_| {
        !bodies.lock().unwrap().is_empty()
    });
    let body = bodies.lock().unwrap()[0].clone();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["event"], "done", "{body}");
    assert_eq!(json["task_id"], "ship", "{body}");
    assert!(json["title"].as_str().unwrap().contains("ship"), "{body}");
    assert!(
        json["body"].as_str().unwrap().contains("shipped it"),
        "{body}"
    );
}

#[test]
fn a_flag_that_stays_is_notified_again_at_the_renotify_interval() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("notified.log");
    let mut env = Env::builder()
        .config_tail(&format!(
            "{}[attention]\nwaiting = true\nrenotify = \"1s\"\n",
            command_channel(&log)
        ))
        .build();
    env.queue(
        "blocked",
        &Task::script([
            "@hook Notification permission_prompt Claude needs your permission to use Bash",
            "@hang",
        ]),
    );
    env.start_daemon();
    let read = |log: &std::path::Path| std::fs::read_to_string(log).unwrap_or_default();
    env.wait_until("a reminder is sent", |_| {
        read(&log).contains("still needs attention")
    });
    let text = read(&log);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("attention|blocked|nightshift: blocked needs attention (waiting)"),
        "{text}"
    );
    assert!(
        lines[1]
            .starts_with("attention|blocked|nightshift: blocked still needs attention (waiting)"),
        "{text}"
    );
    env.run(&["cancel", "blocked"]).success();
}
