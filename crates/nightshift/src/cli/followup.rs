//! `nightshift followup ID "text"` (or `--file F`, or `-` for stdin): queue a task that
//! continues an earlier one: on its branch, in its agent session where the profile can
//! resume one, with its run report as context (added by the daemon at the start, so a
//! follow-up of a running task gets the report it ends with).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::client::{Overrides, enqueue};
use crate::home::{Home, TaskState};
use crate::out::outln;
use crate::tasks;
use nightshift_core::task::{self, Isolation, Task};
use nightshift_store::Store;

use super::{CliError, exit, load_config};

#[derive(Debug, clap::Args)]
pub struct FollowupArgs {
    /// The earlier task
    pub id: String,
    /// What to do next; `-` reads it from standard input
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub text: Option<String>,
    /// Read what to do next from this file
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The new task's id [default: ID-followup, then ID-followup-2, …]
    #[arg(long = "as", value_name = "NEW_ID")]
    pub new_id: Option<String>,
}

pub(super) fn run(home: &Home, args: FollowupArgs) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    home.ensure_layout()?;
    let store = tasks::open(home);
    let entry = tasks::call("entry", store.entry(&args.id))?
        .ok_or_else(|| CliError::not_found(&args.id))?;
    let earlier = entry
        .content
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|b| String::from_utf8(b.clone()).map_err(|_| "not UTF-8".to_string()))
        .and_then(|text| {
            task::parse(
                &args.id,
                &entry.source,
                &text,
                crate::home::user_home().as_deref(),
            )
            .map_err(|e| e.to_string())
        })
        .map_err(|e| {
            CliError::new(
                exit::FAILURE,
                format!("cannot follow up `{}`: {e}", args.id),
            )
        })?;
    let body = match (&args.text, &args.file) {
        (Some(t), _) if t == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        (Some(t), _) => format!("{t}\n"),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| CliError::new(exit::FAILURE, format!("{}: {e}", f.display())))?,
        (None, None) => return Err(CliError::new(exit::USAGE, "what to do next?").into()),
    };
    let new_id = match args.new_id {
        Some(id) => id,
        None => free_id(&store, &args.id)?,
    };
    let unfinished = matches!(entry.state, TaskState::Queued | TaskState::Running);
    let isolated = earlier.isolation.unwrap_or(config.isolation) == Isolation::Worktree;
    let fields = fields(&earlier, unfinished, isolated);
    let text = task::set_front_matter_fields(&format!("---\n---\n{body}"), &fields);
    let workdir = match &earlier.repo {
        Some(_) => None,
        None => earlier.workdir.clone().or(config.workdir.clone()),
    };
    let dest = enqueue(
        home,
        &config,
        &new_id,
        Path::new("<followup>"),
        &text,
        &Overrides {
            workdir,
            ..Overrides::default()
        },
    )?;
    let mut how = vec![format!("continues {}", args.id)];
    if isolated && earlier.repo.is_none() {
        how.push(format!(
            "starts from branch {}",
            crate::worktree::branch_name(&args.id)
        ));
    }
    if unfinished {
        how.push(format!("waits for {} to finish", args.id));
    }
    outln!("queued {new_id} ({}; {})", how.join(", "), dest.display())?;
    Ok(exit::SUCCESS)
}

/// The follow-up's front matter: the earlier task's place and agent, its branch as the
/// base, and a dependency while it has not finished.
fn fields(earlier: &Task, unfinished: bool, isolated: bool) -> Vec<(&'static str, String)> {
    let mut fields = vec![("continues", task::yaml_string(&earlier.id))];
    if let Some(agent) = &earlier.agent {
        fields.push(("agent", task::yaml_string(agent)));
    }
    if let Some(repo) = &earlier.repo {
        fields.push(("repo", task::yaml_string(repo)));
    }
    if let Some(host) = &earlier.host {
        fields.push(("host", task::yaml_string(host)));
    }
    if let Some(isolation) = earlier.isolation {
        let name = match isolation {
            Isolation::Worktree => "worktree",
            Isolation::None => "none",
        };
        fields.push(("isolation", name.into()));
    }
    // In place, the checkout already holds the earlier work; a repo task's branch lives in
    // the host's mirror.
    if isolated && earlier.repo.is_none() {
        let branch = crate::worktree::branch_name(&earlier.id);
        fields.push(("base", task::yaml_string(&branch)));
    }
    if unfinished {
        fields.push((
            "depends_on",
            format!("[{}]", task::yaml_string(&earlier.id)),
        ));
    }
    fields
}

/// `ID-followup`, else `ID-followup-2`, … : the first id no task has.
fn free_id(store: &impl Store, earlier: &str) -> anyhow::Result<String> {
    for n in 1..1000 {
        let id = match n {
            1 => format!("{earlier}-followup"),
            n => format!("{earlier}-followup-{n}"),
        };
        if tasks::call("entry", store.entry(&id))?.is_none() {
            return Ok(id);
        }
    }
    Err(CliError::new(exit::FAILURE, "no free follow-up id; pass --as NEW_ID").into())
}
