//! Claude Code's own state file (`~/.claude.json`, or `$CLAUDE_CONFIG_DIR/.claude.json`),
//! and Gemini CLI's `~/.gemini/trustedFolders.json`: marking a worktree nightshift created
//! as trusted, so the folder-trust dialog does not block a run nobody watches. Only done
//! when the profile asks (`trust_worktrees = true`).
//!
//! The agents rewrite these files themselves, so the change is a read-modify-write of one
//! key, renamed into place: everything else in the file is kept as it was read.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a JSON object: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("neither {0} nor HOME is set")]
    NoHome(&'static str),
}

/// A variable as the agent will see it: from `env` (the profile's and task's), else ours;
/// empty counts as unset.
pub(crate) fn agent_var(env: &[(String, String)], name: &str) -> Option<std::ffi::OsString> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into())
        .or_else(|| std::env::var_os(name))
        .filter(|v: &std::ffi::OsString| !v.is_empty())
}

/// Where Claude Code keeps its state for an agent started with `env` on top of ours.
pub fn state_file(env: &[(String, String)]) -> Option<PathBuf> {
    let var = |name: &str| agent_var(env, name);
    if let Some(dir) = var("CLAUDE_CONFIG_DIR") {
        return Some(PathBuf::from(dir).join(".claude.json"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".claude.json"))
}

/// Starts run in parallel: one read-modify-write at a time, or they lose each other's entry.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Marks `dir` as trusted (and its project onboarding as done) in Claude Code's state.
pub fn trust(dir: &Path, env: &[(String, String)]) -> Result<(), TrustError> {
    let path = state_file(env).ok_or(TrustError::NoHome("CLAUDE_CONFIG_DIR"))?;
    update(path, |path, state| {
        let projects = state
            .entry("projects")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(projects) = projects else {
            return Err(TrustError::Parse {
                path: path.to_path_buf(),
                message: "`projects` is not an object".into(),
            });
        };
        let key = dir.to_string_lossy().into_owned();
        let project = projects
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(project) = project {
            project.insert("hasTrustDialogAccepted".into(), Value::Bool(true));
            project.insert("hasCompletedProjectOnboarding".into(), Value::Bool(true));
        }
        Ok(())
    })
}

/// Gemini CLI's list of trusted folders for an agent started with `env` on top of ours:
/// `$GEMINI_CLI_TRUSTED_FOLDERS_PATH`, else `.gemini/trustedFolders.json` in
/// `$GEMINI_CLI_HOME` or `$HOME`.
pub fn gemini_trust_file(env: &[(String, String)]) -> Option<PathBuf> {
    let var = |name: &str| agent_var(env, name);
    if let Some(file) = var("GEMINI_CLI_TRUSTED_FOLDERS_PATH") {
        return Some(PathBuf::from(file));
    }
    var("GEMINI_CLI_HOME")
        .or_else(|| var("HOME"))
        .map(|h| PathBuf::from(h).join(".gemini/trustedFolders.json"))
}

/// Marks `dir` as trusted in Gemini CLI's list (`"TRUST_FOLDER"`). A choice the user made
/// for that folder is kept.
pub fn trust_gemini(dir: &Path, env: &[(String, String)]) -> Result<(), TrustError> {
    let path = gemini_trust_file(env).ok_or(TrustError::NoHome("GEMINI_CLI_HOME"))?;
    update(path, |_, folders| {
        folders
            .entry(dir.to_string_lossy().into_owned())
            .or_insert_with(|| Value::String("TRUST_FOLDER".into()));
        Ok(())
    })
}

/// Adds nightshift's hooks to Gemini CLI's user settings (`$GEMINI_CLI_HOME` or `$HOME`,
/// `.gemini/settings.json`), keeping every other setting and hook. Gemini reads hooks
/// only from there (a per-run settings file must be root's), so this is done only when a
/// person asks: `nightshift hooks gemini --install`. Returns the file.
pub fn install_gemini_hooks(env: &[(String, String)]) -> Result<PathBuf, TrustError> {
    let home = agent_var(env, "GEMINI_CLI_HOME")
        .or_else(|| agent_var(env, "HOME"))
        .ok_or(TrustError::NoHome("GEMINI_CLI_HOME"))?;
    let path = PathBuf::from(home).join(".gemini/settings.json");
    let ours = crate::hook::gemini::user_settings();
    update(path.clone(), |path, settings| {
        let hooks = settings
            .entry("hooks")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(hooks) = hooks else {
            return Err(TrustError::Parse {
                path: path.to_path_buf(),
                message: "`hooks` is not an object".into(),
            });
        };
        for (event, handlers) in ours["hooks"].as_object().into_iter().flatten() {
            let list = hooks
                .entry(event.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(list) = list else {
                return Err(TrustError::Parse {
                    path: path.to_path_buf(),
                    message: format!("`hooks.{event}` is not a list"),
                });
            };
            // Once: a second install changes nothing.
            for handler in handlers.as_array().into_iter().flatten() {
                if !list.contains(handler) {
                    list.push(handler.clone());
                }
            }
        }
        Ok(())
    })?;
    Ok(path)
}

/// One read-modify-write of the JSON object in `path` (a missing or blank file is an empty
/// object), renamed into place; everything `edit` does not touch is kept as it was read.
fn update(
    path: PathBuf,
    edit: impl FnOnce(&Path, &mut Map<String, Value>) -> Result<(), TrustError>,
) -> Result<(), TrustError> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Through a symlink to the file it points at, which stays a symlink.
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let io = |source| TrustError::Io {
        path: path.clone(),
        source,
    };
    let before = std::fs::read(&path).ok();
    let mut state: Map<String, Value> = match std::fs::read(&path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TrustError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(io(e)),
    };
    edit(&path, &mut state)?;
    let bytes = serde_json::to_vec_pretty(&state).map_err(|e| TrustError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // The agent rewrites this file too: if it changed since it was read, do not overwrite
    // its change (the trust dialog is then flagged, as without this option).
    if std::fs::read(&path).ok() != before {
        return Err(TrustError::Parse {
            path,
            message: "it changed while being updated; not overwritten".into(),
        });
    }
    nightshift_store::fsutil::write_atomic(&path, &bytes, 0o600).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_hooks_are_added_once_and_the_users_settings_stay() {
        let home = tempfile::tempdir().unwrap();
        let env = vec![
            (
                "HOME".to_string(),
                home.path().to_string_lossy().into_owned(),
            ),
            ("GEMINI_CLI_HOME".to_string(), String::new()),
        ];
        let file = home.path().join(".gemini/settings.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            r#"{"ui":{"theme":"x"},"hooks":{"AfterAgent":[{"hooks":[{"type":"command","command":"mine"}]}]}}"#,
        )
        .unwrap();
        assert_eq!(install_gemini_hooks(&env).unwrap(), file);
        let once = std::fs::read_to_string(&file).unwrap();
        install_gemini_hooks(&env).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), once);
        let v: Value = serde_json::from_str(&once).unwrap();
        assert_eq!(v["ui"]["theme"], "x");
        let after = v["hooks"]["AfterAgent"].as_array().unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(after[0]["hooks"][0]["command"], "mine");
        assert!(once.contains("nightshift hook --agent gemini"));
        assert!(v["hooks"]["BeforeTool"].is_array());
    }

    #[test]
    fn trust_adds_the_project_and_keeps_everything_else() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".claude.json");
        std::fs::write(
            &file,
            r#"{"hasCompletedOnboarding":true,"projects":{"/other":{"x":1}},"numStartups":7}"#,
        )
        .unwrap();
        let env = vec![(
            "HOME".to_string(),
            home.path().to_string_lossy().into_owned(),
        )];
        trust(Path::new("/wt/a"), &env).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(v["projects"]["/wt/a"]["hasTrustDialogAccepted"], true);
        assert_eq!(v["projects"]["/other"]["x"], 1);
        assert_eq!(v["numStartups"], 7);
        assert_eq!(v["hasCompletedOnboarding"], true);
    }

    #[test]
    fn config_dir_wins_and_a_broken_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("HOME".to_string(), "/nonexistent".to_string()),
            (
                "CLAUDE_CONFIG_DIR".to_string(),
                dir.path().to_string_lossy().into_owned(),
            ),
        ];
        assert_eq!(state_file(&env), Some(dir.path().join(".claude.json")));
        trust(Path::new("/wt/b"), &env).unwrap();
        assert!(dir.path().join(".claude.json").exists());

        std::fs::write(dir.path().join(".claude.json"), "{ not json").unwrap();
        assert!(matches!(
            trust(Path::new("/wt/c"), &env),
            Err(TrustError::Parse { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".claude.json")).unwrap(),
            "{ not json"
        );
    }

    #[test]
    fn gemini_trust_adds_the_folder_and_keeps_the_users_choices() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".gemini/trustedFolders.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, r#"{"/mine":"TRUST_PARENT","/wt/no":"DO_NOT_TRUST"}"#).unwrap();
        let env = vec![
            (
                "HOME".to_string(),
                home.path().to_string_lossy().into_owned(),
            ),
            ("GEMINI_CLI_HOME".to_string(), String::new()),
            ("GEMINI_CLI_TRUSTED_FOLDERS_PATH".to_string(), String::new()),
        ];
        trust_gemini(Path::new("/wt/a"), &env).unwrap();
        trust_gemini(Path::new("/wt/no"), &env).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(v["/wt/a"], "TRUST_FOLDER");
        assert_eq!(v["/mine"], "TRUST_PARENT");
        assert_eq!(v["/wt/no"], "DO_NOT_TRUST");

        let elsewhere = home.path().join("trust.json");
        let env = vec![(
            "GEMINI_CLI_TRUSTED_FOLDERS_PATH".to_string(),
            elsewhere.to_string_lossy().into_owned(),
        )];
        assert_eq!(gemini_trust_file(&env), Some(elsewhere));
    }
}
