//! `nightshift bench --attention`: precision and recall of the attention flags, and how fast a
//! question on screen is flagged, measured on scripted scenarios run through a real daemon in
//! a sandbox. A measurement: wrong flags are reported, not fatal; only a scenario whose task
//! ends unexpectedly (a bug in the bench or the daemon, not the detectors) makes it exit 1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use jiff::Timestamp;

use crate::dev::sandbox::{self, Sandbox, unix_nanos};
use crate::exit::{self, CliError};
use crate::home::TaskState;
use crate::out::outln;
use crate::run::{self, RunDir};

mod scenarios;

use scenarios::{Outcome, Scenario, scenarios};

/// Enough slots for every scenario at once, so none waits for another.
const MAX_AGENTS: usize = 16;
/// Each scenario is watched this long from its enqueue; hanging ones are cancelled after it.
const WINDOW: Duration = Duration::from_secs(8);
/// Scenarios that should finish get this long before they count as stuck.
const FINISH_DEADLINE: Duration = Duration::from_secs(30);
const DEBOUNCE_MS: f64 = 500.0;

const CONFIG: &str = "max_agents = 16\ngrace_period = \"0s\"\n\n[attention]\n\
no_commits = \"3s\"\nsilence = \"2s\"\nretrying = \"2s\"\nrepeated_errors = 5\nrepeated_error_window = \"1m\"\n\
waiting = true\ninput_debounce = \"500ms\"\n";

/// A scenario's live state while the bench watches it.
struct Live {
    stamp: PathBuf,
    queued: Instant,
    /// Milliseconds from the stamp to `send` returning.
    answered_ms: Option<f64>,
    cancelled: bool,
    /// Final folder, once there.
    end: Option<TaskState>,
}

pub(super) fn run(keep: bool) -> anyhow::Result<i32> {
    sandbox::require_tools("bench")?;
    sandbox::catch_interrupts()?;
    let mut sb = Sandbox::create("bench-attention", keep, CONFIG)?;
    outln!(
        "nightshift bench --attention ({})",
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    )?;
    outln!(
        "setup: sandbox home, scripted test agent, one git repo per scenario, max_agents \
         {MAX_AGENTS}; [attention] no_commits 3s, silence 2s, repeated_errors 5 in 1m, \
         waiting on, input_debounce 500ms; window {} s",
        WINDOW.as_secs()
    )?;
    if keep {
        outln!("home:  {} (kept)", sb.home.root().display())?;
    }
    outln!()?;
    sb.start_daemon()?;
    let result = measure(&mut sb);
    if result.is_err() && sandbox::check_interrupted().is_ok() {
        sb.keep = true;
        eprintln!(
            "\nThe end of the daemon's log:\n{}Kept {} for inspection.",
            sb.log_tail(10),
            sb.root().display()
        );
    }
    let code = result?;
    if sb.keep {
        outln!("\nKept {}.", sb.root().display())?;
    }
    Ok(code)
}

fn measure(sb: &mut Sandbox) -> anyhow::Result<i32> {
    let list = scenarios();
    let mut live = Vec::new();
    for s in &list {
        let repo = sb.root().join("repos").join(s.id);
        sandbox::init_repo(&repo)?;
        let stamp = sb.root().join("stamps").join(format!("{}.ns", s.id));
        let mut text = format!("---\ntitle: {}\nworkdir: {}\n", s.id, repo.display());
        if !s.off.is_empty() {
            text.push_str("attention:\n");
            for key in s.off {
                text.push_str(&format!("  {key}: \"off\"\n"));
            }
        }
        text.push_str("---\n");
        for line in &s.script {
            text.push_str(&line.replace("{stamp}", &stamp.to_string_lossy()));
            text.push('\n');
        }
        sb.stage(s.id, &text)?;
        live.push(Live {
            stamp,
            queued: Instant::now(),
            answered_ms: None,
            cancelled: false,
            end: None,
        });
    }
    std::fs::create_dir_all(sb.root().join("stamps"))?;
    for (s, l) in list.iter().zip(&mut live) {
        sb.enqueue(s.id)?;
        l.queued = Instant::now();
    }

    // The bench (not the daemon) polls: it is a driver, and 20 ms is fine against 500 ms.
    loop {
        sandbox::check_interrupted()?;
        sb.check_daemon()?;
        let mut open = 0;
        for (s, l) in list.iter().zip(&mut live) {
            if l.end.is_some() {
                continue;
            }
            for state in [TaskState::Done, TaskState::Failed] {
                if sb.home.task_file(state, s.id).exists() {
                    l.end = Some(state);
                }
            }
            if l.end.is_some() {
                continue;
            }
            open += 1;
            if let Some(answer) = s.answer
                && l.answered_ms.is_none()
                && let Some(stamped) = read_stamp(&l.stamp)
            {
                ctl(sb, &["send", s.id, answer])?;
                l.answered_ms = Some(ms(stamped, unix_nanos(SystemTime::now())));
            }
            let age = l.queued.elapsed();
            let limit = match s.outcome {
                Outcome::Hangs => WINDOW,
                Outcome::Done => FINISH_DEADLINE,
            };
            if age >= limit && !l.cancelled {
                l.cancelled = true;
                ctl(sb, &["cancel", s.id])?;
            }
            if age >= FINISH_DEADLINE + Duration::from_secs(10) {
                anyhow::bail!("scenario {} did not end even after `cancel`", s.id);
            }
        }
        if open == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    report(sb, &list, &live)
}

fn report(sb: &Sandbox, list: &[Scenario], live: &[Live]) -> anyhow::Result<i32> {
    let (mut tp, mut fp, mut fne) = (0usize, 0usize, 0usize);
    let mut latencies = Vec::new();
    let mut unexpected = Vec::new();
    outln!(
        "{:<20} {:<16} {:<26} {:<10} {:<4} {:<4} {:<4} what",
        "scenario",
        "expected",
        "raised",
        "ended",
        "TP",
        "FP",
        "FN"
    )?;
    for (s, l) in list.iter().zip(live) {
        let events = attention_events(sb, s.id);
        let raised: BTreeSet<String> = events.iter().map(|(sig, _)| sig.clone()).collect();
        let expected = expected_for(s, l);
        let t = raised.intersection(&expected).count();
        let f = raised.difference(&expected).count();
        let n = expected.difference(&raised).count();
        tp += t;
        fp += f;
        fne += n;
        let ended = match (l.end, l.cancelled) {
            (Some(TaskState::Done), _) => "done",
            (_, true) => "cancelled",
            _ => "FAILED",
        };
        let ok_end = match s.outcome {
            Outcome::Done => l.end == Some(TaskState::Done),
            Outcome::Hangs => l.cancelled && l.end.is_some(),
        };
        if !ok_end {
            let reason = crate::status::find(&sb.home, &crate::config::Config::default(), s.id)
                .ok()
                .flatten()
                .and_then(|v| v.reason())
                .unwrap_or_default();
            unexpected.push(format!("{}: ended {ended} ({reason})", s.id));
        }
        // Raw latency: the stamp right before the question -> the attention event.
        if expected.contains("waiting")
            && s.answer.is_none()
            && let Some(stamped) = read_stamp(&l.stamp)
            && let Some((_, at)) = events.iter().find(|(sig, _)| sig == "waiting")
        {
            latencies.push(ms(stamped, *at));
        }
        let mut what = s.what.to_string();
        if !s.off.is_empty() {
            what.push_str(&format!(" [off: {}]", s.off.join(", ")));
        }
        if let Some(a) = l.answered_ms {
            what.push_str(&format!(" [answered {a:.0} ms after the stamp]"));
        }
        outln!(
            "{:<20} {:<16} {:<26} {:<10} {:<4} {:<4} {:<4} {what}",
            s.id,
            join(&expected),
            join(&raised),
            ended,
            t,
            f,
            n
        )?;
    }
    outln!()?;
    let pct = |a: usize, b: usize| {
        if b == 0 {
            100.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    let precision = pct(tp, tp + fp);
    let recall = pct(tp, tp + fne);
    outln!(
        "signals: {tp} TP, {fp} FP, {fne} FN over {} scenarios; precision {precision:.0}% {}, \
         recall {recall:.0}% {}   (target 100%)",
        list.len(),
        verdict(fp == 0),
        verdict(fne == 0)
    )?;
    if latencies.is_empty() {
        outln!("waiting latency: no samples")?;
    } else {
        latencies.sort_by(f64::total_cmp);
        let n = latencies.len();
        let median = if n % 2 == 1 {
            latencies[n / 2]
        } else {
            (latencies[n / 2 - 1] + latencies[n / 2]) / 2.0
        };
        let max = latencies[n - 1];
        outln!(
            "waiting latency (question printed -> flag in events.jsonl), n {n}: median {median:.0} ms, \
             max {max:.0} ms; after the {DEBOUNCE_MS:.0} ms debounce: median {:.0} ms, max {:.0} ms \
             (target <= 2000 ms after output stops {})",
            median - DEBOUNCE_MS,
            max - DEBOUNCE_MS,
            verdict(max - DEBOUNCE_MS <= 2000.0)
        )?;
    }
    let mut hook_ms = hook_latencies(sb, "pos-hook-permission");
    if hook_ms.is_empty() {
        outln!("hook latency: no samples")?;
    } else {
        hook_ms.sort_by(f64::total_cmp);
        let median = hook_ms[hook_ms.len() / 2];
        let max = hook_ms[hook_ms.len() - 1];
        outln!(
            "hook latency (`nightshift hook` recorded a permission prompt -> flag in events.jsonl), \
             n {}: median {median:.1} ms, max {max:.1} ms (target median <= 100 ms {})",
            hook_ms.len(),
            verdict(median <= 100.0)
        )?;
    }
    if !unexpected.is_empty() {
        eprintln!("\nscenarios that ended unexpectedly (a bug, not a detector miss):");
        for u in &unexpected {
            eprintln!("  {u}");
        }
        return Err(CliError::new(exit::FAILURE, "some scenarios ended unexpectedly").into());
    }
    Ok(exit::SUCCESS)
}

/// The answered-at-once scenario expects a flag only if the bench was slower than the
/// debounce: then the question really sat unanswered long enough to be flagged.
fn expected_for(s: &Scenario, l: &Live) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = s
        .expected
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    if l.answered_ms.is_some_and(|a| a > DEBOUNCE_MS) {
        set.insert("waiting".into());
    }
    set
}

/// The `attention` events of attempt 1, as (signal, at in ns).
fn attention_events(sb: &Sandbox, id: &str) -> Vec<(String, i128)> {
    let dir = RunDir::new(sb.home.run_dir(id, 1));
    let text = std::fs::read_to_string(dir.file(run::EVENTS)).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("event").and_then(|e| e.as_str()) != Some("attention") {
            continue;
        }
        let detail = v.get("detail").and_then(|d| d.as_str()).unwrap_or("");
        let signal = detail.split(':').next().unwrap_or("").trim().to_string();
        let at = v
            .get("at")
            .and_then(|a| a.as_str())
            .and_then(|a| a.parse::<Timestamp>().ok())
            .map_or(0, jiff::Timestamp::as_nanosecond);
        out.push((signal, at));
    }
    out
}

/// For each permission prompt a hook recorded, the time until the next `waiting` flag.
fn hook_latencies(sb: &Sandbox, id: &str) -> Vec<f64> {
    let dir = RunDir::new(sb.home.run_dir(id, 1));
    let text = std::fs::read_to_string(dir.file(run::HOOKS)).unwrap_or_default();
    let prompts: Vec<i128> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<crate::hook::HookRecord>(l).ok())
        .filter(|r| r.notification_type.as_deref() == Some("permission_prompt"))
        .map(|r| r.at.as_nanosecond())
        .collect();
    let flags: Vec<i128> = attention_events(sb, id)
        .into_iter()
        .filter(|(sig, _)| sig == "waiting")
        .map(|(_, at)| at)
        .collect();
    prompts
        .iter()
        .filter_map(|p| flags.iter().find(|f| *f >= p).map(|f| ms(*p, *f)))
        .collect()
}

fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "-".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "[ok]" } else { "[MISSED]" }
}

fn ms(from: i128, to: i128) -> f64 {
    (to - from) as f64 / 1e6
}

fn read_stamp(path: &Path) -> Option<i128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `nightshift --home H ARGS...`, quietly; an error with its stderr if it fails.
fn ctl(sb: &Sandbox, args: &[&str]) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the nightshift binary")?;
    let out = Command::new(exe)
        .arg("--home")
        .arg(sb.home.root())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running nightshift {}", args.join(" ")))?;
    if !out.status.success() {
        anyhow::bail!(
            "nightshift {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
