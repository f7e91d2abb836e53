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

/// A task file that shows every field. It goes to `examples/`, not `queue/`: an example
/// should not start an agent by surprise.
pub(super) const EXAMPLE_TASK: &str = r#"---
# Every field is optional. Copy this file into queue/ (or use `nightshift add FILE`).
title: Add a --version flag
priority: 0            # higher runs first; ties run in file-name order
agent: claude          # a profile from config.toml (built in: claude, codex, aider, gemini, test)
workdir: /path/to/your/repo
timeout: 2h            # wall-clock limit per attempt
max_attempts: 2        # retry once if the agent exits without signalling done
depends_on: []         # task ids that must be done first
requires: []           # labels the host that runs it must have (config.toml `labels`)
env:
  RUST_LOG: info
---
# Add a --version flag

The CLI should print its version with `--version` and exit 0.

## Acceptance criteria
- `cargo run -- --version` prints the version from Cargo.toml.
- A test covers it.

When you are finished and have committed your work, run `nightshift done --summary "..."`.
"#;

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
        fsutil::write_new_atomic(&example, EXAMPLE_TASK.as_bytes(), 0o600)?;
        outln!("created    {}", example.display())?;
    }
    outln!("home       {}", home.root().display())?;
    outln!()?;
    outln!("Next:")?;
    outln!("  nightshift daemon                      # start the daemon (foreground)")?;
    outln!("  nightshift add {}", example.display())?;
    outln!("  nightshift ls")?;
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
