//! Pre-answering an agent CLI's folder-trust dialog for a worktree nightshift created, in
//! that CLI's own state (only when the profile asks: `trust_worktrees`).

use std::path::Path;

use crate::claude_state::TrustError;

/// Marks `dir` as trusted for the agent CLI that `program` starts: Codex's config for
/// `codex`, Gemini CLI's trusted folders for `gemini`, Claude Code's state otherwise.
pub fn trust_worktree(
    program: &str,
    dir: &Path,
    env: &[(String, String)],
) -> Result<(), TrustError> {
    match Path::new(program).file_name().and_then(|n| n.to_str()) {
        Some("codex") => crate::codex_state::trust(dir, env),
        Some("gemini") => crate::claude_state::trust_gemini(dir, env),
        _ => crate::claude_state::trust(dir, env),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cli_gets_its_own_state() {
        let home = tempfile::tempdir().unwrap();
        let env = vec![
            (
                "HOME".to_string(),
                home.path().to_string_lossy().into_owned(),
            ),
            ("CODEX_HOME".to_string(), String::new()),
            ("CLAUDE_CONFIG_DIR".to_string(), String::new()),
        ];
        trust_worktree("/opt/bin/codex", Path::new("/wt/x"), &env).unwrap();
        let codex = std::fs::read_to_string(home.path().join(".codex/config.toml")).unwrap();
        assert!(codex.contains("[projects.\"/wt/x\"]"), "{codex}");
        assert!(!home.path().join(".claude.json").exists());
        trust_worktree("claude", Path::new("/wt/y"), &env).unwrap();
        let claude = std::fs::read_to_string(home.path().join(".claude.json")).unwrap();
        assert!(
            claude.contains("/wt/y") && !claude.contains("/wt/x"),
            "{claude}"
        );
    }
}
