//! The webhook channel: a POST in one of three shapes (JSON, ntfy, Slack).

use std::time::Duration;

use super::{EventKind, Notification};

pub(super) const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Header values longer than this are cut (some servers reject huge headers).
const MAX_HEADER_CHARS: usize = 250;

pub(super) fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("`url` `{url}` does not parse: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("`url` `{url}` must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`url` `{url}` has no host"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Preset {
    Json,
    Ntfy,
    Slack,
}

impl Preset {
    pub(super) fn parse(text: &str) -> Result<Preset, String> {
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

/// A header value from free text: control characters (newlines!) become spaces, long text is cut.
pub(super) fn header_value(text: &str) -> ureq::http::HeaderValue {
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
        EventKind::Limited => "hourglass",
        EventKind::Report => "newspaper",
    }
}

fn ntfy_priority(event: EventKind) -> &'static str {
    match event {
        EventKind::Attention | EventKind::Failed | EventKind::Held => "high",
        EventKind::Limited => "default",
        EventKind::Done | EventKind::Report => "default",
        EventKind::Cleared | EventKind::Drained => "low",
    }
}

/// Blocking POST (run in `spawn_blocking`). Any non-2xx status is an error.
pub(super) fn post(
    agent: &ureq::Agent,
    url: &str,
    preset: Preset,
    n: &Notification,
) -> Result<(), String> {
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
