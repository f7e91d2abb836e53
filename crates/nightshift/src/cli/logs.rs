//! `nightshift logs`: print (and follow) a task's transcript.

use std::io::Write;
use std::time::Duration;

use notify::Watcher;

use crate::home::{Home, TaskState};
use crate::run;
use crate::transcript::Follower;

use super::{CliError, exit};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The task's id (its file name without .md)
    pub id: String,
    /// Keep printing new output until the task finishes (through its retries), then exit
    /// with its outcome: 0 done, 1 failed
    #[arg(short, long)]
    pub follow: bool,
    /// Which attempt [default: the latest]
    #[arg(long)]
    pub attempt: Option<u32>,
    /// Strip terminal escape sequences
    #[arg(long)]
    pub plain: bool,
}

pub(super) fn run(home: &Home, args: LogsArgs) -> anyhow::Result<i32> {
    if crate::tasks::locate(home, &args.id)?.is_none() {
        return Err(CliError::not_found(&args.id).into());
    }
    let attempt = match args.attempt {
        Some(a) => a,
        None => match run::attempts(&home.task_runs(&args.id)).last() {
            Some(a) => *a,
            None => {
                let id = crate::term_text::clean_line(&args.id, true);
                eprintln!("{id} has not run yet");
                return Ok(exit::SUCCESS);
            }
        },
    };
    let path = home.run_dir(&args.id, attempt).join(run::TRANSCRIPT);
    // Across the capped transcript's files: the start, the marker, the latest output.
    let mut transcript = Follower::new(&path, Default::default());
    print_new(&mut transcript, args.plain)?;
    if !args.follow {
        return Ok(exit::SUCCESS);
    }
    follow(home, &args, attempt, transcript)
}

/// Follows the task to its end, across the attempts it still makes, with file
/// notifications rather than polling; returns its outcome: 0 done, 1 failed.
fn follow(
    home: &Home,
    args: &LogsArgs,
    mut attempt: u32,
    mut transcript: Follower,
) -> anyhow::Result<i32> {
    let (tx, rx) = std::sync::mpsc::channel();
    // The task folders (it is filed), its runs folder (a new attempt), the run folder
    // (output, and the exit and report records).
    let mut watcher = super::wait::watch_tasks(home, &[home.task_runs(&args.id)], tx)?;
    watcher.watch(
        &home.run_dir(&args.id, attempt),
        notify::RecursiveMode::NonRecursive,
    )?;
    loop {
        print_new(&mut transcript, args.plain)?;
        let state = crate::tasks::locate(home, &args.id)?;
        let latest = run::attempts(&home.task_runs(&args.id)).last().copied();
        if let Some(next) = latest.filter(|n| *n > attempt && args.attempt.is_none()) {
            // The task runs again (a retry): follow the new attempt.
            let _ = watcher.unwatch(&home.run_dir(&args.id, attempt));
            attempt = next;
            watcher.watch(
                &home.run_dir(&args.id, attempt),
                notify::RecursiveMode::NonRecursive,
            )?;
            eprintln!("--- attempt {attempt} ---");
            transcript = Follower::new(
                &home.run_dir(&args.id, attempt).join(run::TRANSCRIPT),
                Default::default(),
            );
            continue;
        }
        match state {
            Some(TaskState::Done) => return Ok(exit::SUCCESS),
            Some(TaskState::Failed) | None => return Ok(exit::FAILURE),
            // A given attempt that has ended: its own outcome is its exit record's.
            Some(_) if args.attempt.is_some() && latest != Some(attempt) => {
                return Ok(exit::FAILURE);
            }
            Some(TaskState::Queued | TaskState::Running) => {}
        }
        // Events drive this; the timeout is only a safety net.
        let _ = rx.recv_timeout(Duration::from_secs(30));
        while rx.try_recv().is_ok() {}
    }
}

/// Prints what the transcript gained since the last call.
fn print_new(transcript: &mut Follower, plain: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = transcript.read(&mut buf, 1 << 20).map_err(|e| {
            CliError::new(
                exit::FAILURE,
                format!("{}: {e}", transcript.path().display()),
            )
        })?;
        if n == 0 {
            break;
        }
        if plain {
            out.write_all(&strip_ansi_escapes::strip(&buf))?;
        } else {
            out.write_all(&buf)?;
        }
    }
    out.flush()?;
    Ok(())
}
