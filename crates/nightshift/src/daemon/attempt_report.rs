//! The attempt's report, from what its run folder holds: commits, checks, attention.

use std::path::Path;

use jiff::Timestamp;

use crate::checks::VerifyRound;
use crate::git;
use crate::home::Home;
use crate::report::Report;
use crate::run::{self, RunDir, SpawnRecord};

/// Reads what the run left behind and describes the attempt.
pub(super) async fn attempt_report(
    dir: &RunDir,
    id: &str,
    attempt: u32,
    outcome: &str,
    reason: String,
    attempts: u32,
    summary: Option<String>,
) -> Report {
    let spawn: Option<SpawnRecord> = dir.read(run::SPAWN).ok().flatten();
    let finished_at = crate::clock::wall_now();
    let (commits, workdir, agent, started_at) = match &spawn {
        Some(s) => {
            let commits = match &s.git_head {
                // HEAD did not move: no commits, without asking git for a log.
                Some(start) if git::head(&s.workdir).await.as_ref() == Some(start) => {
                    Some(Vec::new())
                }
                Some(start) => Some(git::commits_since(&s.workdir, Some(start)).await),
                None if git::is_repo(&s.workdir).await => {
                    Some(git::commits_since(&s.workdir, None).await)
                }
                None => None,
            };
            (
                commits,
                Some(s.workdir.clone()),
                Some(s.agent.clone()),
                Some(s.claimed_at),
            )
        }
        None => (None, None, None, None),
    };
    let summary = summary.or_else(|| {
        dir.read::<run::DoneRecord>(run::DONE)
            .ok()
            .flatten()
            .and_then(|d| d.summary)
    });
    let worktree = spawn.as_ref().and_then(|s| s.worktree.clone());
    let diffstat = match &worktree {
        Some(wt) => crate::worktree::diffstat(&wt.path, &wt.base).await,
        None => None,
    };
    let verify = verify_rounds(dir);
    let setup: Vec<crate::checks::CommandResult> =
        dir.read(run::SETUP).ok().flatten().unwrap_or_default();
    // On the boot clock when the attempt started in this boot: a wall-clock step in between
    // does not change how long it ran.
    let booted = spawn
        .as_ref()
        .and_then(|s| crate::clock::boot_of(s.boot.as_ref()));
    let duration_secs = match booted {
        Some(b) => Some(crate::clock::boot_now().saturating_sub(b).as_secs_f64()),
        None => started_at.map(|s| finished_at.duration_since(s).as_secs_f64()),
    };
    let secs = |r: &crate::checks::CommandResult| r.duration_ms as f64 / 1000.0;
    let phases = duration_secs.map_or_else(Default::default, |total| {
        let setup_secs = (!setup.is_empty()).then(|| setup.iter().map(secs).sum());
        let verify_secs =
            (!verify.is_empty()).then(|| verify.iter().flat_map(|v| &v.results).map(secs).sum());
        nightshift_core::checks::phases(total, setup_secs, verify_secs)
    });
    let session: Option<crate::hook::SessionRecord> = dir.read(run::SESSION).ok().flatten();
    let usage = session
        .as_ref()
        .and_then(|s| s.transcript_path.as_deref())
        .and_then(|p| crate::usage::from_claude_transcript(Path::new(p)));
    let push: Option<crate::repo_remote::PushRecord> =
        dir.read(crate::repo_remote::PUSH).ok().flatten();
    let reason = match &push {
        Some(p) if !p.pushed => format!(
            "{reason}; but the branch was not pushed, the work stays in {}: {}",
            worktree.as_ref().map_or_else(
                || match (&workdir, p.branch.is_empty()) {
                    (Some(w), true) => w.display().to_string(),
                    _ => p.branch.clone(),
                },
                |w| w.path.display().to_string()
            ),
            p.error.as_deref().unwrap_or("unknown error")
        ),
        _ => reason,
    };
    Report {
        task_id: id.to_string(),
        outcome: outcome.to_string(),
        reason,
        summary,
        attempt,
        attempts: attempts.max(1),
        agent,
        workdir,
        started_at,
        finished_at,
        duration_secs,
        commits,
        transcript: Some(dir.transcript()),
        branch: worktree.as_ref().map(|w| w.branch.clone()),
        base: worktree.as_ref().map(|w| w.base.clone()),
        diffstat,
        worktree: worktree.map(|w| w.path),
        phases,
        verify,
        attention: attention_episodes(dir),
        agent_session: session.map(|s| s.session_id),
        usage,
        prompt_note: spawn.and_then(|s| s.prompt_note),
        push,
        pr: None,
    }
}

/// The acceptance-check rounds recorded in a run folder, in order.
fn verify_rounds(dir: &RunDir) -> Vec<VerifyRound> {
    (1..)
        .map_while(|round| {
            dir.read::<VerifyRound>(&run::verify_file(round))
                .ok()
                .flatten()
        })
        .collect()
}

/// The attention flags of the attempt, from its event log, paired with their clearing.
fn attention_episodes(dir: &RunDir) -> Vec<crate::report::Episode> {
    let text = std::fs::read_to_string(dir.file(run::EVENTS)).unwrap_or_default();
    let mut episodes: Vec<crate::report::Episode> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(event), Some(detail), Some(at)) = (
            v["event"].as_str(),
            v["detail"].as_str(),
            v["at"].as_str().and_then(|a| a.parse::<Timestamp>().ok()),
        ) else {
            continue;
        };
        match event {
            "attention" => {
                let (signal, evidence) = detail.split_once(": ").unwrap_or((detail, ""));
                episodes.push(crate::report::Episode {
                    signal: signal.to_string(),
                    evidence: evidence.to_string(),
                    raised_at: at,
                    cleared_at: None,
                });
            }
            "attention-cleared" => {
                if let Some(e) = episodes
                    .iter_mut()
                    .rev()
                    .find(|e| e.signal == detail && e.cleared_at.is_none())
                {
                    e.cleared_at = Some(at);
                }
            }
            _ => {}
        }
    }
    episodes
}

/// Reports of the task's earlier attempts, oldest first.
pub(super) fn earlier_reports(home: &Home, id: &str, before: u32) -> Vec<Report> {
    run::attempts(&home.task_runs(id))
        .into_iter()
        .filter(|&a| a < before)
        .filter_map(|a| {
            RunDir::new(home.run_dir(id, a))
                .read::<Report>(run::REPORT)
                .ok()
                .flatten()
        })
        .collect()
}
