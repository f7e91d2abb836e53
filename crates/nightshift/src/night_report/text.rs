//! The report as plain text: what `nightshift report` prints and what command and webhook
//! channels get. Text from agents is cleaned for a terminal (`clean_line`).

use std::fmt::Write;
use std::time::Duration;

use super::NightReport;
use crate::local_time::local;
use crate::term_text::clean_line;
use nightshift_core::duration::format as dur;
use nightshift_core::night::Outcome;

fn secs(s: f64) -> String {
    if s < 0.5 {
        return "under a second".into();
    }
    dur(Duration::from_secs_f64(s.max(0.0).round()))
}

/// The whole summary, several lines.
pub fn render(r: &NightReport) -> String {
    let mut out = String::new();
    let _ = write_all(&mut out, r);
    out
}

fn write_all(out: &mut String, r: &NightReport) -> std::fmt::Result {
    writeln!(
        out,
        "nightshift report: {} to {}",
        local(r.window.since),
        local(r.window.until)
    )?;
    writeln!(out, "{}", headline(r))?;
    let t = &r.totals;
    if t.input_tokens + t.output_tokens > 0 || t.cost_usd.is_some() {
        let cost = t.cost_usd.map(|c| format!(", ${c:.2}")).unwrap_or_default();
        writeln!(
            out,
            "tokens: {} in, {} out{cost}",
            t.input_tokens, t.output_tokens
        )?;
    }
    if r.attempts.is_empty() {
        writeln!(out, "\nno attempts in this window")?;
    } else {
        writeln!(out, "\nattempts:")?;
    }
    for a in &r.attempts {
        writeln!(
            out,
            "  {:<9} {} #{}  {}  ({}, {} to {})",
            a.outcome.as_str(),
            clean_line(&a.task_id, true),
            a.attempt,
            clean_line(&a.title, true),
            secs(a.duration_secs),
            local(a.start),
            local(a.end),
        )?;
        if a.outcome != Outcome::Done {
            writeln!(out, "            why: {}", clean_line(&a.reason, true))?;
        }
        if let Some(b) = &a.branch {
            let stat = a
                .diffstat
                .as_ref()
                .map(|d| {
                    format!(
                        ", {} files changed, +{} -{}",
                        d.files, d.insertions, d.deletions
                    )
                })
                .unwrap_or_default();
            writeln!(
                out,
                "            branch {}: {} commits{stat}",
                clean_line(b, true),
                a.commits.len()
            )?;
        }
        for v in &a.verify {
            let verdict = if v.passed { "passed" } else { "failed" };
            writeln!(out, "            checks round {}: {verdict}", v.round)?;
        }
        for f in &a.attention {
            let answered = match &f.answered {
                Some(ans) => format!("{} at {}", ans.how, local(ans.at)),
                None => "nobody came".into(),
            };
            let cleared = if f.cleared_at.is_some() {
                "cleared"
            } else {
                "never cleared"
            };
            writeln!(
                out,
                "            needed a person ({}) for {}, {cleared}, {answered}",
                clean_line(&f.signal, true),
                secs(f.waited_secs)
            )?;
        }
        if let Some(u) = &a.usage {
            let cost = u.cost_usd.map(|c| format!(", ${c:.2}")).unwrap_or_default();
            writeln!(
                out,
                "            tokens: {} in, {} out{cost}",
                u.input_tokens, u.output_tokens
            )?;
        }
    }
    if !r.lanes.is_empty() {
        writeln!(out, "\ntime per slot:")?;
        for l in &r.lanes {
            writeln!(
                out,
                "  {} slot {}: busy {} ({} attempts)",
                clean_line(&l.host, true),
                l.slot,
                secs(l.busy_secs),
                l.attempts
            )?;
        }
    }
    for (label, gaps) in [
        ("idle (nothing ran)", &r.idle),
        ("blocked (every agent waited for a person)", &r.blocked),
    ] {
        if gaps.is_empty() {
            continue;
        }
        writeln!(out, "\n{label}:")?;
        for g in gaps.iter() {
            let len = g.to.duration_since(g.from).as_secs_f64();
            writeln!(
                out,
                "  {} to {} ({})",
                local(g.from),
                local(g.to),
                secs(len)
            )?;
        }
    }
    if !r.fires.is_empty() {
        writeln!(out, "\nschedules:")?;
        for f in &r.fires {
            writeln!(
                out,
                "  {} at {}: {}",
                clean_line(&f.schedule, true),
                local(f.slot),
                f.what
            )?;
        }
    }
    if r.waiting.is_empty() {
        writeln!(out, "\nnothing is queued")?;
    } else {
        writeln!(out, "\nstill queued:")?;
        for w in &r.waiting {
            writeln!(
                out,
                "  {}  {}: {}",
                clean_line(&w.task_id, true),
                clean_line(&w.title, true),
                clean_line(&w.why, true)
            )?;
        }
    }
    Ok(())
}

/// One line: the counts.
pub fn headline(r: &NightReport) -> String {
    let t = &r.totals;
    let mut parts = vec![format!("{} done", t.done), format!("{} failed", t.failed)];
    for (n, what) in [
        (t.retried, "retried"),
        (t.cancelled, "cancelled"),
        (t.running, "running"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if t.flags > 0 {
        parts.push(format!(
            "{} needed a person ({} answered, {} waiting in all)",
            t.flags,
            t.flags_answered,
            secs(t.waited_secs)
        ));
    }
    parts.push(format!("{} queued", r.waiting.len()));
    parts.join(", ")
}
