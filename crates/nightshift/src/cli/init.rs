//! `nightshift init`: create the home.

use crate::config;
use crate::home::Home;
use crate::out::outln;
use nightshift_store::fsutil;

use super::exit;

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

pub(super) fn run(home: &Home) -> anyhow::Result<i32> {
    home.ensure_layout()?;
    let config_file = home.config_file();
    if config_file.exists() {
        outln!("kept       {} (already exists)", config_file.display())?;
    } else {
        fsutil::write_new_atomic(&config_file, config::TEMPLATE.as_bytes(), 0o600)?;
        outln!("created    {}", config_file.display())?;
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
