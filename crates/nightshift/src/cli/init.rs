//! `nightshift init`: create the home.

use crate::config;
use crate::home::Home;
use crate::out::outln;
use nightshift_store::fsutil;

use super::{CliError, exit};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Keep the queue in this PostgreSQL database, shared by a fleet of hosts: a
    /// postgres:// URL or a libpq key=value string (sets `[store] url` in config.toml, also
    /// in an existing one)
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

/// The example task, for `workdir` (the directory `init` ran in). It runs the built-in
/// `test` agent in place, so following `init`'s next steps gives a done task in seconds and
/// touches nothing; its commented fields show the rest. It goes to `examples/`, not
/// `queue/`: an example should not start by surprise.
pub(super) fn example_task(workdir: &std::path::Path) -> String {
    let workdir = nightshift_core::task::yaml_string(&workdir.to_string_lossy());
    format!(
        r#"---
# Every field is optional. `nightshift add FILE` queues a copy of this file.
title: First run - say hello
agent: test            # the built-in stand-in agent; real ones: claude, codex, gemini, aider
workdir: {workdir}
isolation: none        # in the workdir itself; by default a git repository gets a worktree on branch nightshift/<id>
timeout: 5m            # wall-clock limit per attempt ("off" for none; config.toml's default: 4h)
# priority: 0          # higher runs first; ties run in file-name order
# max_attempts: 2      # retry once if the agent exits without signalling done
# depends_on: []       # task ids that must be done first
# requires: []         # labels the host that runs it must have (config.toml `labels`)
# verify: cargo test   # acceptance checks, run when the agent signals done
# push: true           # at done, push branch nightshift/<id>; `pr: true` also opens a draft pull request
# env:
#   RUST_LOG: info
---
# First run: say hello

The `test` agent does not think: it follows the `@` lines below and is done in a second.
For a real agent, set `agent: claude` (or codex, gemini, aider), delete the `@` lines, and
say what you want done, with acceptance criteria. A real agent signals the end itself with
`nightshift done --summary "..."`.

@say hello from nightshift
@done the first run works
"#
    )
}

pub(super) fn run(home: &Home, args: InitArgs) -> anyhow::Result<i32> {
    if let Some(url) = &args.store {
        config::check_url(url).map_err(|e| CliError::new(exit::USAGE, e.to_string()))?;
    }
    home.ensure_layout()?;
    let config_file = home.config_file();
    if config_file.exists() {
        match &args.store {
            Some(url) => set_store_url(&config_file, url)?,
            None => outln!("kept       {} (already exists)", config_file.display())?,
        }
    } else {
        let text = match &args.store {
            Some(url) => config::set_store_url(config::TEMPLATE, url)
                .map_err(|e| anyhow::anyhow!("the config template: {e}"))?,
            None => config::TEMPLATE.to_string(),
        };
        fsutil::write_new_atomic(&config_file, text.as_bytes(), 0o600)?;
        outln!("created    {}", config_file.display())?;
    }
    if let Some(url) = &args.store {
        outln!("store      {}", config::mask_url(url))?;
    }
    let examples = home.examples_dir();
    std::fs::create_dir_all(&examples)?;
    let example = examples.join("example-task.md");
    if !example.exists() {
        let here = std::env::current_dir()?;
        fsutil::write_new_atomic(&example, example_task(&here).as_bytes(), 0o600)?;
        outln!("created    {}", example.display())?;
    }
    outln!("home       {}", home.root().display())?;
    outln!()?;
    let ns = |args: &str| crate::client::hint::command(home, args);
    let example_arg = crate::tmux::shell_word(&example.to_string_lossy());
    outln!("Next, a first run with the built-in test agent (done in seconds):")?;
    for (command, why) in [
        (ns("daemon &"), "start the daemon (or in another terminal)"),
        (ns(&format!("add {example_arg}")), "queue the example task"),
        (ns("ls"), "it is done a second later"),
    ] {
        outln!("  {command}    # {why}")?;
    }
    outln!()?;
    outln!(
        "Then switch to a real agent: set `agent: claude` (or codex, gemini, aider) in a task,"
    )?;
    outln!(
        "or `default_agent` in {}; `{}` says whether its CLI is installed.",
        config_file.display(),
        ns("doctor")
    )?;
    Ok(exit::SUCCESS)
}

/// Sets `[store] url` in an existing config.toml, keeping the rest of it as written.
fn set_store_url(config_file: &std::path::Path, url: &str) -> anyhow::Result<()> {
    let failed =
        |e: String| CliError::new(exit::FAILURE, format!("{}: {e}", config_file.display()));
    let bytes = fsutil::read_not_through_link(config_file).map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("not valid UTF-8".into()))?;
    let text = config::set_store_url(&text, url).map_err(failed)?;
    fsutil::write_atomic(config_file, text.as_bytes(), 0o600)?;
    outln!("updated    {} ([store] url)", config_file.display())?;
    Ok(())
}
