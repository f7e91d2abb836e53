//! The delivery worker: one tokio task per channel with its own queue, rate limit
//! (coalescing what arrives meanwhile) and retries with backoff.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::webhook::{self, Preset, WEBHOOK_TIMEOUT};
use super::{
    ChannelConfig, ChannelKind, DEFAULT_EVENTS, DEFAULT_MIN_INTERVAL, EventKind, MAX_BATCH,
    Notification, QUEUE_CAPACITY, command, desktop, validate,
};

/// Knobs that tests shrink; production uses [`Tuning::DEFAULT`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuning {
    /// First retry delay; doubles on each further failure.
    pub(super) backoff: Duration,
    /// Delivery attempts per message, including the first.
    pub(super) tries: u32,
    /// Honour HTTP(S)_PROXY / NO_PROXY (tests turn it off so loopback is never proxied).
    pub(super) env_proxy: bool,
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
    pub(super) routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub(super) struct Route {
    name: String,
    pub(super) events: HashSet<EventKind>,
    tx: mpsc::Sender<Notification>,
}

impl Notifier {
    /// Must be called inside a tokio runtime. Spawns one worker task per channel (an mpsc queue each).
    pub fn start(channels: &[ChannelConfig]) -> Result<Notifier, String> {
        Notifier::start_with(channels, Tuning::DEFAULT)
    }

    pub(super) fn start_with(
        channels: &[ChannelConfig],
        tuning: Tuning,
    ) -> Result<Notifier, String> {
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
pub(super) enum Outcome {
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
                nightshift_core::duration::parse(text).map_err(|e| format!("{name}: {e}"))?
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
            Sink::Desktop => desktop::send(n).await,
            Sink::Webhook { agent, url, preset } => {
                let (agent, url, preset, n) = (agent.clone(), url.clone(), *preset, n.clone());
                match tokio::task::spawn_blocking(move || webhook::post(&agent, &url, preset, &n))
                    .await
                {
                    Ok(Ok(())) => Outcome::Sent,
                    Ok(Err(e)) => Outcome::Failed(e),
                    Err(e) => Outcome::Failed(format!("webhook task failed: {e}")),
                }
            }
            Sink::Command { argv } => match command::run(argv, n).await {
                Ok(()) => Outcome::Sent,
                Err(e) => Outcome::Failed(e),
            },
        }
    }
}

/// Merges several notifications into one that lists every title and keeps every body.
pub(super) fn coalesce(mut batch: Vec<Notification>) -> Notification {
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
    // The newest report's page, if a report is among them.
    let file = batch.iter().rev().find_map(|n| n.file.clone());
    Notification {
        event,
        task_id,
        title,
        body,
        attach,
        at,
        file,
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
pub(super) fn tail(text: &str, max: usize) -> &str {
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(max.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    &text[start..]
}
