//! `nightshift logs`: print (and follow) a task's transcript.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use notify::Watcher;

use crate::home::{Home, TaskState};
use crate::queue;
use crate::run;

use super::{CliError, exit};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
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

pub fn run(home: &Home, args: LogsArgs) -> anyhow::Result<i32> {
    if queue::locate(home, &args.id).is_none() {
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
    let mut offset = print_from(&path, 0, args.plain)?;
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
        offset = print_from(&path, offset, args.plain)?;
        let still_running = home.task_file(TaskState::Running, &args.id).exists();
        let latest = run::attempts(&home.task_runs(&args.id)).last().copied() == Some(attempt);
        if !still_running || !latest {
            print_from(&path, offset, args.plain)?;
            return Ok(exit::SUCCESS);
        }
    }
}

fn print_from(path: &std::path::Path, offset: u64, plain: bool) -> anyhow::Result<u64> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => {
            return Err(CliError::new(exit::FAILURE, format!("{}: {e}", path.display())).into());
        }
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let mut out = std::io::stdout().lock();
    if plain {
        out.write_all(&strip_ansi_escapes::strip(&buf))?;
    } else {
        out.write_all(&buf)?;
    }
    out.flush()?;
    Ok(offset + buf.len() as u64)
}
