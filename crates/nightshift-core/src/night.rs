//! The night report's decisions: which window it covers, how an attempt ended, how the
//! attempts are laid out in lanes (one per slot that ran at once, per host), how long each
//! lane was busy, when the whole fleet sat idle or every running agent waited for a person,
//! and where a moment falls on the timeline picture. No I/O: the binary gathers the records.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// How far back a report looks when no `--since` is given.
pub const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The stretch of time a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub since: Timestamp,
    pub until: Timestamp,
}

impl Window {
    pub fn secs(&self) -> f64 {
        self.until.duration_since(self.since).as_secs_f64().max(0.0)
    }

    /// Whether `[start, end]` touches the window.
    pub fn overlaps(&self, start: Timestamp, end: Timestamp) -> bool {
        start <= self.until && end >= self.since
    }

    fn clamp(&self, t: Timestamp) -> Timestamp {
        t.clamp(self.since, self.until)
    }
}

/// `--since`: a duration back from `now` (`12h`, `90m`), an RFC 3339 moment, or a civil
/// date-time (`2026-12-05T18:00`, `2026-12-05 18:00`) in `tz`.
pub fn parse_since(raw: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp, String> {
    let raw = raw.trim();
    if let Ok(d) = crate::duration::parse(raw) {
        let back = SignedDuration::try_from(d).map_err(|e| format!("`{raw}`: {e}"))?;
        return now.checked_sub(back).map_err(|e| format!("`{raw}`: {e}"));
    }
    if let Ok(t) = raw.parse::<Timestamp>() {
        return Ok(t);
    }
    let civil = raw.replacen(' ', "T", 1);
    match civil.parse::<jiff::civil::DateTime>() {
        Ok(dt) => tz.to_timestamp(dt).map_err(|e| format!("`{raw}`: {e}")),
        Err(_) => Err(format!(
            "`{raw}` is neither a duration (12h) nor a time (2026-12-05T18:00)"
        )),
    }
}

/// How an attempt ended, for the colours and the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done,
    Failed,
    /// Failed, and the task is tried again.
    Retried,
    /// A person cancelled it.
    Cancelled,
    /// Still going.
    Running,
    /// No report and not running: the records end without an outcome.
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Retried => "retried",
            Outcome::Cancelled => "cancelled",
            Outcome::Running => "running",
            Outcome::Unknown => "unknown",
        }
    }
}

/// The outcome of an attempt from its report's `outcome` and `reason` (`None`: no report
/// yet), and whether it is the running attempt of a running task.
pub fn classify(outcome: Option<&str>, reason: &str, running: bool) -> Outcome {
    match outcome {
        Some("done") => Outcome::Done,
        Some("retry") => Outcome::Retried,
        Some(_) if reason.contains("cancelled") => Outcome::Cancelled,
        Some(_) => Outcome::Failed,
        None if running => Outcome::Running,
        None => Outcome::Unknown,
    }
}

/// One attempt's stretch on the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub host: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// A lane of the timeline: the `index`-th slot of `host` (slots are not recorded, so an
/// attempt takes the first lane of its host that is free when it starts).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Lane {
    pub host: String,
    pub index: usize,
}

/// The lane of each span (same order as `spans`), and the lanes in display order.
pub fn lay_out(spans: &[Span]) -> (Vec<usize>, Vec<Lane>) {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].host.clone(), spans[i].start, spans[i].end));
    let mut lanes: Vec<Lane> = Vec::new();
    // Per lane: when it is free again.
    let mut free_at: Vec<Timestamp> = Vec::new();
    let mut of_span = vec![0; spans.len()];
    for i in order {
        let s = &spans[i];
        let free = (0..lanes.len()).find(|&l| lanes[l].host == s.host && free_at[l] <= s.start);
        let lane = free.unwrap_or_else(|| {
            let index = lanes.iter().filter(|l| l.host == s.host).count();
            lanes.push(Lane {
                host: s.host.clone(),
                index,
            });
            free_at.push(s.start);
            lanes.len() - 1
        });
        free_at[lane] = s.end.max(s.start);
        of_span[i] = lane;
    }
    (of_span, lanes)
}

/// Seconds each lane was busy inside the window, by lane number.
pub fn busy_secs(spans: &[Span], lane_of: &[usize], lanes: usize, window: &Window) -> Vec<f64> {
    let mut busy = vec![0.0; lanes];
    for (s, &l) in spans.iter().zip(lane_of) {
        if let Some(b) = busy.get_mut(l) {
            *b += window
                .clamp(s.end)
                .duration_since(window.clamp(s.start))
                .as_secs_f64()
                .max(0.0);
        }
    }
    busy
}

/// A stretch of the window, e.g. when nothing ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// When no attempt ran at all, inside the window: stretches of at least `min`.
pub fn idle_gaps(spans: &[Span], window: &Window, min: std::time::Duration) -> Vec<Gap> {
    let busy: Vec<Gap> = spans
        .iter()
        .map(|s| Gap {
            from: s.start,
            to: s.end,
        })
        .collect();
    complement(&busy, window)
        .into_iter()
        .filter(|g| g.to.duration_since(g.from).as_secs_f64() >= min.as_secs_f64())
        .collect()
}

/// When every running attempt waited for a person: `flags` are the flagged stretches of
/// each span (by span number). Stretches of at least `min`.
pub fn blocked_gaps(
    spans: &[Span],
    flags: &[(usize, Gap)],
    window: &Window,
    min: std::time::Duration,
) -> Vec<Gap> {
    // Sweep the moments where something changes; between two, count running and flagged.
    let mut moments: Vec<Timestamp> = spans
        .iter()
        .flat_map(|s| [s.start, s.end])
        .chain(flags.iter().flat_map(|(_, g)| [g.from, g.to]))
        .map(|t| window.clamp(t))
        .collect();
    moments.sort();
    moments.dedup();
    let mut out: Vec<Gap> = Vec::new();
    for pair in moments.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let running: Vec<usize> = (0..spans.len())
            .filter(|&i| spans[i].start <= a && spans[i].end >= b)
            .collect();
        let all_flagged = !running.is_empty()
            && running.iter().all(|&i| {
                flags
                    .iter()
                    .any(|(s, g)| *s == i && g.from <= a && g.to >= b)
            });
        if !all_flagged {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.to == a => last.to = b,
            _ => out.push(Gap { from: a, to: b }),
        }
    }
    out.retain(|g| g.to.duration_since(g.from).as_secs_f64() >= min.as_secs_f64());
    out
}

/// The parts of the window that no gap in `busy` covers.
fn complement(busy: &[Gap], window: &Window) -> Vec<Gap> {
    let mut sorted: Vec<Gap> = busy
        .iter()
        .filter(|g| window.overlaps(g.from, g.to))
        .copied()
        .collect();
    sorted.sort_by_key(|g| g.from);
    let mut out = Vec::new();
    let mut cursor = window.since;
    for g in sorted {
        if g.from > cursor {
            out.push(Gap {
                from: cursor,
                to: g.from,
            });
        }
        cursor = cursor.max(g.to);
    }
    if cursor < window.until {
        out.push(Gap {
            from: cursor,
            to: window.until,
        });
    }
    out
}

/// The file name of the page of a report that ends at `until`.
pub fn page_name(until: Timestamp) -> String {
    format!("report-{}.html", until.strftime("%Y%m%dT%H%M%SZ"))
}

/// Where `t` falls on a picture `width` wide that shows the window (clamped to its edges).
pub fn x_of(t: Timestamp, window: &Window, width: f64) -> f64 {
    let total = window.secs();
    if total <= 0.0 {
        return 0.0;
    }
    let at = window.clamp(t).duration_since(window.since).as_secs_f64();
    (at / total * width * 10.0).round() / 10.0
}

/// Evenly spaced tick marks for the time axis: about `count` of them on round minutes,
/// hours or days.
pub fn ticks(window: &Window, count: usize) -> Vec<Timestamp> {
    let total = window.secs();
    if total <= 0.0 || count == 0 {
        return Vec::new();
    }
    let steps: [i64; 16] = [
        1, 2, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 86400,
    ];
    let want = total / count as f64;
    let step = steps
        .iter()
        .copied()
        .find(|&s| s as f64 >= want)
        .unwrap_or(86400);
    let first = window.since.as_second().div_euclid(step) * step + step;
    (0..)
        .map(|i| first + i * step)
        .map_while(|s| {
            Timestamp::from_second(s)
                .ok()
                .filter(|t| *t <= window.until)
        })
        .collect()
}

/// Counts of outcomes, for the headline.
pub fn tally<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> BTreeMap<Outcome, usize> {
    let mut counts = BTreeMap::new();
    for o in outcomes {
        *counts.entry(*o).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn span(host: &str, a: i64, b: i64) -> Span {
        Span {
            host: host.into(),
            start: t(a),
            end: t(b),
        }
    }

    #[test]
    fn since_takes_a_duration_a_moment_or_a_local_time() {
        let now: Timestamp = "2026-12-06T07:00:00Z".parse().unwrap();
        let tz = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(
            parse_since("12h", now, &tz).unwrap(),
            "2026-12-05T19:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_since("2026-12-05T18:00", now, &tz).unwrap(),
            "2026-12-05T17:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_since("2026-12-05T18:00:00Z", now, &tz).unwrap(),
            "2026-12-05T18:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(
            parse_since("yesterday", now, &tz)
                .unwrap_err()
                .contains("yesterday")
        );
    }

    #[test]
    fn outcomes_are_classified_from_the_report() {
        assert_eq!(classify(Some("done"), "", false), Outcome::Done);
        assert_eq!(classify(Some("retry"), "exited 1", false), Outcome::Retried);
        assert_eq!(
            classify(Some("failed"), "cancelled by user", false),
            Outcome::Cancelled
        );
        assert_eq!(classify(Some("failed"), "exited 1", false), Outcome::Failed);
        assert_eq!(classify(None, "", true), Outcome::Running);
        assert_eq!(classify(None, "", false), Outcome::Unknown);
    }

    #[test]
    fn overlapping_attempts_take_separate_lanes_per_host() {
        let spans = [
            span("a", 0, 100),
            span("a", 50, 150),
            span("a", 100, 200),
            span("b", 0, 300),
        ];
        let (lane_of, lanes) = lay_out(&spans);
        assert_eq!(lane_of, [0, 1, 0, 2]);
        assert_eq!(
            lanes,
            [
                Lane {
                    host: "a".into(),
                    index: 0
                },
                Lane {
                    host: "a".into(),
                    index: 1
                },
                Lane {
                    host: "b".into(),
                    index: 0
                },
            ]
        );
        let window = Window {
            since: t(0),
            until: t(250),
        };
        assert_eq!(
            busy_secs(&spans, &lane_of, lanes.len(), &window),
            [200.0, 100.0, 250.0]
        );
    }

    #[test]
    fn idle_and_blocked_stretches() {
        let window = Window {
            since: t(0),
            until: t(1000),
        };
        let spans = [
            span("a", 100, 400),
            span("a", 300, 500),
            span("a", 800, 900),
        ];
        assert_eq!(
            idle_gaps(&spans, &window, std::time::Duration::from_secs(60)),
            [
                Gap {
                    from: t(0),
                    to: t(100)
                },
                Gap {
                    from: t(500),
                    to: t(800)
                },
                Gap {
                    from: t(900),
                    to: t(1000)
                },
            ]
        );
        // The first waits 200..450, the second 350..500: all that run wait from 200 until
        // the second starts at 300, and again from 350 (the first has ended at 400, so from
        // there the second alone counts).
        let flags = [
            (
                0,
                Gap {
                    from: t(200),
                    to: t(450),
                },
            ),
            (
                1,
                Gap {
                    from: t(350),
                    to: t(500),
                },
            ),
        ];
        assert_eq!(
            blocked_gaps(&spans, &flags, &window, std::time::Duration::ZERO),
            [
                Gap {
                    from: t(200),
                    to: t(300)
                },
                Gap {
                    from: t(350),
                    to: t(500)
                }
            ]
        );
    }

    #[test]
    fn positions_and_ticks_stay_inside_the_window() {
        let window = Window {
            since: t(0),
            until: t(3600),
        };
        assert_eq!(x_of(t(-5), &window, 1000.0), 0.0);
        assert_eq!(x_of(t(1800), &window, 1000.0), 500.0);
        assert_eq!(x_of(t(9999), &window, 1000.0), 1000.0);
        let ticks = ticks(&window, 6);
        assert!(ticks.len() >= 5 && ticks.len() <= 7, "{ticks:?}");
        assert!(
            ticks
                .iter()
                .all(|x| *x >= window.since && *x <= window.until)
        );
        assert_eq!(ticks[0].as_second() % 600, 0);
    }
}
