//! Finding the real agent CLIs (Claude Code, Codex, Gemini CLI, Aider): on PATH, or in the
//! cache folder `.ci/run` installs their pinned versions into.

use std::path::{Path, PathBuf};

/// `.ci/run`'s cache of agent CLIs; its `bin/` holds one link per CLI.
pub(crate) fn cli_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("NIGHTSHIFT_CLI_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    cache.join("nightshift-ci/agent-clis")
}

/// The CLI `name`: the cache's pinned one first, then PATH.
pub(crate) fn find_cli(name: &str) -> Option<PathBuf> {
    let cached = cli_cache().join("bin").join(name);
    if cached.is_file() {
        return Some(cached);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The CLI `name`, or `None` (the test is skipped, loudly) when it is not installed. On CI
/// (`CI=true`) it must be: `.ci/run` installs it.
pub(crate) fn require_cli(name: &str) -> Option<PathBuf> {
    if let Some(found) = find_cli(name) {
        return Some(found);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "`{name}` is neither on PATH nor in {}, and CI=true: .ci/run must install it",
            cli_cache().display()
        );
    }
    eprintln!(
        "\n*** SKIPPED: `{name}` not found; run .ci/run once to install the agent CLIs ***\n"
    );
    None
}

/// A PATH for the daemon (and so its panes) with the CLI's folder first.
pub(crate) fn path_with(cli: &Path) -> String {
    let mut dirs: Vec<PathBuf> = cli.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}
