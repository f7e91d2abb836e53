//! The report as one self-contained HTML page (inline CSS, inline SVG timeline, no script),
//! rendered by minijinja from `report.html.j2`'s template; auto-escaping is on for `.html`
//! templates, so every title, reason and output from an agent is text, never markup.

use serde::Serialize;

use super::{Attempt, Details, NightReport};
use crate::local_time::local;
use nightshift_core::duration::format as dur;
use nightshift_core::night::{self, Window};

const TEMPLATE: &str = include_str!("report.html.j2");
/// The timeline's drawing area, in SVG units.
const WIDTH: f64 = 1000.0;
const LABEL: f64 = 150.0;
const LANE: f64 = 34.0;
const AXIS: f64 = 26.0;

/// The page, ready to write.
pub fn render(r: &NightReport) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    // Every string is cleaned of terminal escapes and control characters before it is
    // escaped for HTML: agents' titles, reasons and outputs carry both.
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(text) if text.contains(|c: char| c.is_control() && c != '\n' && c != '\t') => {
            let clean = crate::term_text::clean_text(text);
            minijinja::escape_formatter(out, state, &minijinja::Value::from(clean))
        }
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.add_template("report.html", TEMPLATE)?;
    env.get_template("report.html")?
        .render(minijinja::Value::from(minijinja::value::Serde(page(r))))
}

#[derive(Serialize)]
struct Page {
    since: String,
    until: String,
    host: String,
    headline: String,
    tokens: Option<String>,
    timeline: Timeline,
    tasks: Vec<Row>,
    waiting: Vec<super::Waiting>,
    lanes: Vec<LaneRow>,
}

#[derive(Serialize)]
struct Timeline {
    width: f64,
    height: f64,
    label: f64,
    axis_y: f64,
    lanes: Vec<LaneLabel>,
    bars: Vec<Bar>,
    flags: Vec<FlagMark>,
    fires: Vec<Mark>,
    ticks: Vec<Mark>,
    idle: Vec<Stretch>,
    blocked: Vec<Stretch>,
}

#[derive(Serialize)]
struct LaneLabel {
    y: f64,
    text: String,
}

#[derive(Serialize)]
struct Bar {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    outcome: &'static str,
    anchor: String,
    tip: String,
}

#[derive(Serialize)]
struct FlagMark {
    x: f64,
    y: f64,
    /// Where it cleared, if it did inside the window.
    cleared_x: Option<f64>,
    tip: String,
}

#[derive(Serialize)]
struct Mark {
    x: f64,
    text: String,
}

#[derive(Serialize)]
struct Stretch {
    x: f64,
    w: f64,
    tip: String,
}

#[derive(Serialize)]
struct LaneRow {
    name: String,
    busy: String,
    share: String,
    attempts: usize,
}

/// One row of the task table and its detail section.
#[derive(Serialize)]
struct Row {
    anchor: String,
    a: Attempt,
    start: String,
    end: String,
    duration: String,
    flags: Vec<FlagRow>,
    checks: Vec<CheckRow>,
    details: Details,
}

#[derive(Serialize)]
struct CheckRow {
    round: u32,
    passed: bool,
    command: String,
    verdict: String,
    output: String,
}

#[derive(Serialize)]
struct FlagRow {
    signal: String,
    evidence: String,
    raised: String,
    waited: String,
    cleared: Option<String>,
    answered: Option<String>,
}

fn secs(s: f64) -> String {
    if s < 0.5 {
        return "under a second".into();
    }
    dur(std::time::Duration::from_secs_f64(s.max(0.0).round()))
}

fn lane_name(host: &str, slot: usize, hosts: usize) -> String {
    if hosts > 1 {
        format!("{host} · slot {slot}")
    } else {
        format!("slot {slot}")
    }
}

fn page(r: &NightReport) -> Page {
    let w = &r.window;
    let hosts = {
        let mut h: Vec<&str> = r.lanes.iter().map(|l| l.host.as_str()).collect();
        h.dedup();
        h.len()
    };
    let t = &r.totals;
    let tokens = (t.input_tokens + t.output_tokens > 0 || t.cost_usd.is_some()).then(|| {
        let cost = t.cost_usd.map(|c| format!(", ${c:.2}")).unwrap_or_default();
        format!("{} in, {} out{cost}", t.input_tokens, t.output_tokens)
    });
    Page {
        since: local(w.since),
        until: local(w.until),
        host: r.host.clone(),
        headline: super::text::headline(r),
        tokens,
        timeline: timeline(r, hosts),
        tasks: r
            .attempts
            .iter()
            .enumerate()
            .map(|(i, a)| row(i, a))
            .collect(),
        waiting: r.waiting.clone(),
        lanes: r
            .lanes
            .iter()
            .map(|l| LaneRow {
                name: lane_name(&l.host, l.slot, hosts),
                busy: secs(l.busy_secs),
                share: format!("{:.0}%", 100.0 * l.busy_secs / w.secs().max(1.0)),
                attempts: l.attempts,
            })
            .collect(),
    }
}

fn timeline(r: &NightReport, hosts: usize) -> Timeline {
    let w: &Window = &r.window;
    let x = |t| LABEL + night::x_of(t, w, WIDTH - LABEL);
    let lane_y = |l: usize| AXIS + l as f64 * LANE;
    let lanes_h = r.lanes.len().max(1) as f64 * LANE;
    let stretch = |g: &night::Gap, what: &str| Stretch {
        x: x(g.from),
        w: (x(g.to) - x(g.from)).max(1.0),
        tip: format!("{what} {} to {}", local(g.from), local(g.to)),
    };
    Timeline {
        width: WIDTH,
        height: AXIS + lanes_h + 8.0,
        label: LABEL,
        axis_y: AXIS,
        lanes: r
            .lanes
            .iter()
            .enumerate()
            .map(|(i, l)| LaneLabel {
                y: lane_y(i) + LANE / 2.0 + 4.0,
                text: lane_name(&l.host, l.slot, hosts),
            })
            .collect(),
        bars: r
            .attempts
            .iter()
            .enumerate()
            .map(|(i, a)| Bar {
                x: x(a.start),
                y: lane_y(a.lane) + 6.0,
                w: (x(a.end) - x(a.start)).max(3.0),
                h: LANE - 12.0,
                outcome: a.outcome.as_str(),
                anchor: anchor(i),
                tip: format!(
                    "{} #{}: {} ({}), {}",
                    a.task_id,
                    a.attempt,
                    a.outcome.as_str(),
                    secs(a.duration_secs),
                    a.title
                ),
            })
            .collect(),
        flags: r
            .attempts
            .iter()
            .flat_map(|a| {
                a.attention.iter().map(move |f| FlagMark {
                    x: x(f.raised_at),
                    y: lane_y(a.lane) + 6.0,
                    cleared_x: f
                        .cleared_at
                        .filter(|c| *c <= w.until)
                        .map(|c| x(c).max(x(f.raised_at) + 2.0)),
                    tip: format!(
                        "{} needed a person ({}) at {}",
                        a.task_id,
                        f.signal,
                        local(f.raised_at)
                    ),
                })
            })
            .collect(),
        fires: r
            .fires
            .iter()
            .filter(|f| f.slot >= w.since && f.slot <= w.until)
            .map(|f| Mark {
                x: x(f.slot),
                text: format!("schedule {} at {}: {}", f.schedule, local(f.slot), f.what),
            })
            .collect(),
        ticks: {
            // Seconds only matter on a short window.
            let format = if w.secs() < 600.0 {
                "%H:%M:%S"
            } else {
                "%H:%M"
            };
            night::ticks(w, 8)
                .into_iter()
                // A label at the right edge would be cut off.
                .filter(|t| x(*t) <= WIDTH - 30.0)
                .map(|t| Mark {
                    x: x(t),
                    text: t
                        .to_zoned_datetime(jiff::tz::TimeZone::system())
                        .strftime(format)
                        .to_string(),
                })
                .collect()
        },
        idle: r.idle.iter().map(|g| stretch(g, "idle")).collect(),
        blocked: r
            .blocked
            .iter()
            .map(|g| stretch(g, "blocked: every agent waited for a person,"))
            .collect(),
    }
}

fn anchor(i: usize) -> String {
    format!("attempt-{}", i + 1)
}

fn row(i: usize, a: &Attempt) -> Row {
    Row {
        anchor: anchor(i),
        start: local(a.start),
        end: local(a.end),
        duration: secs(a.duration_secs),
        flags: a
            .attention
            .iter()
            .map(|f| FlagRow {
                signal: f.signal.clone(),
                evidence: f.evidence.clone(),
                raised: local(f.raised_at),
                waited: secs(f.waited_secs),
                cleared: f.cleared_at.map(local),
                answered: f
                    .answered
                    .as_ref()
                    .map(|ans| format!("{} at {}", ans.how, local(ans.at))),
            })
            .collect(),
        checks: a
            .verify
            .iter()
            .flat_map(|v| {
                v.results.iter().map(|c| CheckRow {
                    round: v.round,
                    passed: c.passed(),
                    command: c.command.clone(),
                    verdict: c.describe(),
                    output: crate::term_text::clean_text(&nightshift_core::completion::strip_ansi(
                        &c.output_tail,
                    )),
                })
            })
            .collect(),
        details: Details::read(a),
        a: a.clone(),
    }
}
