//! `nightshift add`: put a task into the queue, atomically.

use std::io::Read;
use std::path::PathBuf;

use crate::client::{Overrides, enqueue};
use crate::home::Home;
use crate::out::outln;

use super::{CliError, exit, load_config};

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The task file, or `-` to read it from standard input
    pub file: PathBuf,
    /// Task id [default: the file name without .md; required with `-`]
    #[arg(long)]
    pub id: Option<String>,
    /// Set the priority (higher runs first)
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i64>,
    /// Set the agent profile
    #[arg(long)]
    pub agent: Option<String>,
    /// Set the workdir [default: the file's workdir, else the current directory]
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Start it no earlier than this: a time of day (`02:00`, its next occurrence) or a
    /// date and time (`2026-12-07T02:00` local, or RFC 3339 with an offset)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Then wait until it finishes, as `nightshift wait` does (exit 0 done, 1 failed)
    #[arg(long)]
    pub wait: bool,
}

pub(super) fn run(home: &Home, args: AddArgs) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    home.ensure_layout()?;
    let not_before = args
        .at
        .as_deref()
        .map(|at| {
            let tz = jiff::tz::TimeZone::system();
            nightshift_core::task::next_at(at, jiff::Timestamp::now(), &tz)
        })
        .transpose()
        .map_err(|e| {
            CliError::new(
                exit::USAGE,
                format!("--at: {e}; or a time of day, e.g. 02:00"),
            )
        })?;
    let from_stdin = args.file.as_os_str() == "-";
    let text = if from_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| CliError::new(exit::FAILURE, format!("{}: {e}", args.file.display())))?
    };
    let id = match (&args.id, from_stdin) {
        (Some(id), _) => id.clone(),
        (None, false) => args
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                CliError::new(
                    exit::USAGE,
                    "cannot take a task id from the file name; pass --id",
                )
            })?,
        (None, true) => {
            return Err(CliError::new(exit::USAGE, "reading from stdin needs --id ID").into());
        }
    };
    let source = if from_stdin {
        PathBuf::from("<stdin>")
    } else {
        args.file.clone()
    };
    let dest = enqueue(
        home,
        &config,
        &id,
        &source,
        &text,
        &Overrides {
            priority: args.priority,
            agent: args.agent,
            workdir: args.workdir,
            not_before,
        },
    )?;
    outln!("queued {id} ({})", dest.display())?;
    // Queued, but nothing starts until then: say so, rather than leave a person waiting.
    let store = crate::tasks::open(home);
    if crate::tasks::call("paused", nightshift_store::Store::paused(&store))? {
        outln!(
            "the queue is PAUSED: nothing starts until `{}`",
            crate::client::hint::command(home, "resume")
        )?;
    }
    if let Some(at) = not_before {
        outln!("it starts no earlier than {}", crate::local_time::local(at))?;
    }
    if args.wait {
        return super::wait::wait_for(home, &[id], None);
    }
    Ok(exit::SUCCESS)
}
