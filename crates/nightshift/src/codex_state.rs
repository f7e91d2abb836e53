//! The Codex CLI's own config (`$CODEX_HOME/config.toml`, by default `~/.codex/config.toml`):
//! marking a worktree nightshift created as trusted, so Codex's folder-trust dialog does
//! not block a run nobody watches. Only done when the profile asks (`trust_worktrees`).
//!
//! Codex writes this file itself (it is the user's config too), so the change is a
//! read-modify-write of one key with `toml_edit`: comments, order and every other entry are
//! kept as they were read. A link is never written through.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, value};

use crate::claude_state::{TrustError, agent_var};

/// Where Codex keeps its config for an agent started with `env` on top of ours.
pub fn config_file(env: &[(String, String)]) -> Option<PathBuf> {
    if let Some(dir) = agent_var(env, "CODEX_HOME") {
        return Some(PathBuf::from(dir).join("config.toml"));
    }
    agent_var(env, "HOME").map(|h| PathBuf::from(h).join(".codex").join("config.toml"))
}

/// Starts run in parallel: one read-modify-write at a time, or they lose each other's entry.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Marks `dir` as a trusted project in Codex's config.
pub fn trust(dir: &Path, env: &[(String, String)]) -> Result<(), TrustError> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = config_file(env).ok_or(TrustError::NoHome("CODEX_HOME"))?;
    let io = |source| TrustError::Io {
        path: path.clone(),
        source,
    };
    let parse = |message: String| TrustError::Parse {
        path: path.clone(),
        message,
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(parse(
                "a symbolic link; nightshift does not write through links".into(),
            ));
        }
        _ => {}
    }
    let before = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let mut doc: DocumentMut = before
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e: toml_edit::TomlError| parse(e.message().to_string()))?;
    let projects = doc.entry("projects").or_insert_with(|| {
        let mut t = Table::new();
        // `[projects."<path>"]` headers only, as Codex writes them.
        t.set_implicit(true);
        Item::Table(t)
    });
    let Some(projects) = projects.as_table_like_mut() else {
        return Err(parse("`projects` is not a table".into()));
    };
    let key = dir.to_string_lossy().into_owned();
    let project = projects
        .entry(&key)
        .or_insert_with(|| Item::Table(Table::new()));
    let Some(project) = project.as_table_like_mut() else {
        return Err(parse(format!("`projects.\"{key}\"` is not a table")));
    };
    if project.get("trust_level").and_then(Item::as_str) == Some("trusted") {
        return Ok(());
    }
    project.insert("trust_level", value("trusted"));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // Codex writes this file too: if it changed since it was read, its change wins (the
    // trust dialog is then flagged, as without this option).
    let now = std::fs::read_to_string(&path).ok();
    if now != before {
        return Err(parse(
            "it changed while being updated; not overwritten".into(),
        ));
    }
    nightshift_store::fsutil::write_atomic(&path, doc.to_string().as_bytes(), 0o600).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env_with(name: &str, dir: &Path) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), "/nonexistent".into()),
            (name.into(), dir.to_string_lossy().into_owned()),
        ]
    }

    #[test]
    fn trust_adds_the_project_and_keeps_everything_else() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("config.toml");
        let original = "# my settings\nmodel = \"o3\" # the best\n\n\
            [projects.\"/other\"]\ntrust_level = \"untrusted\"\n\n\
            [model_providers.x]\nname = \"X\"\n";
        std::fs::write(&file, original).unwrap();
        let env = env_with("CODEX_HOME", home.path());
        trust(Path::new("/wt/it's \"a\""), &env).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        // Comments, formatting and the other tables as they were; the new table joins the
        // other projects.
        for kept in [
            "# my settings\nmodel = \"o3\" # the best\n",
            "[projects.\"/other\"]\ntrust_level = \"untrusted\"\n",
            "[model_providers.x]\nname = \"X\"\n",
        ] {
            assert!(text.contains(kept), "{text}");
        }
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["projects"]["/wt/it's \"a\""]["trust_level"].as_str(),
            Some("trusted")
        );
        assert_eq!(
            parsed["projects"]["/other"]["trust_level"].as_str(),
            Some("untrusted")
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Again: nothing changes.
        trust(Path::new("/wt/it's \"a\""), &env).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }

    #[test]
    fn a_new_file_gets_a_table_header_per_project() {
        let home = tempfile::tempdir().unwrap();
        let env = env_with("HOME", home.path());
        trust(Path::new("/wt/a"), &env).unwrap();
        let text = std::fs::read_to_string(home.path().join(".codex/config.toml")).unwrap();
        assert_eq!(text, "[projects.\"/wt/a\"]\ntrust_level = \"trusted\"\n");
    }

    #[test]
    fn links_and_broken_files_are_left_alone() {
        let home = tempfile::tempdir().unwrap();
        let env = env_with("CODEX_HOME", home.path());
        let file = home.path().join("config.toml");
        std::fs::write(&file, "model = [ broken").unwrap();
        assert!(matches!(
            trust(Path::new("/wt/b"), &env),
            Err(TrustError::Parse { .. })
        ));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "model = [ broken");

        std::fs::remove_file(&file).unwrap();
        let target = home.path().join("elsewhere.toml");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, &file).unwrap();
        let err = trust(Path::new("/wt/c"), &env).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");

        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "projects = 3\n").unwrap();
        assert!(matches!(
            trust(Path::new("/wt/d"), &env),
            Err(TrustError::Parse { .. })
        ));
    }
}
