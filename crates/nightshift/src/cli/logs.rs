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
    /// Keep printing new output until the task leaves running/
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
    // Follow with file notifications, not by polling.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |_| {
        let _ = tx.send(());
    })?;
    watcher.watch(
        &home.run_dir(&args.id, attempt),
        notify::RecursiveMode::NonRecursive,
    )?;
    loop {
        // The run folder changes when output arrives and when the attempt ends (exit and
        // report records), so events drive this; the timeout is only a safety net.
        let _ = rx.recv_timeout(Duration::from_secs(30));
        print_new(&mut transcript, args.plain)?;
        let still_running = crate::tasks::locate(home, &args.id)? == Some(TaskState::Running);
        let latest = run::attempts(&home.task_runs(&args.id)).last().copied() == Some(attempt);
        if !still_running || !latest {
            print_new(&mut transcript, args.plain)?;
            return Ok(exit::SUCCESS);
        }
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
