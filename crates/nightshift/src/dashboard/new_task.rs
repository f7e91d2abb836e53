//! `n` in the dashboard: a task template in `$VISUAL`/`$EDITOR`, then into the queue.
//! A draft that cannot be queued is kept, and the next `n` opens it again.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::client::{self, Overrides};
use crate::config::Config;
use crate::home::Home;
use nightshift_core::task;

/// A name no staged task can have (ids never start with a dot).
pub fn draft_path(home: &Home) -> PathBuf {
    home.tmp_dir().join(".new-task-draft.md")
}

pub fn template(workdir: &Path, agent: &str) -> String {
    format!(
        "---\n\
         # A new nightshift task. Save and quit to queue it; quit without changes to drop it.\n\
         # Optional: priority (higher runs first), timeout (2h), verify (a command that must\n\
         # pass), depends_on ([other-task]), isolation (none: no worktree), setup, env.\n\
         agent: {}\n\
         workdir: {}\n\
         priority: 0\n\
         ---\n\
         # Say what to do in one line\n\
         \n\
         Describe the task: the context the agent needs, and what to leave alone.\n\
         \n\
         ## Acceptance criteria\n\
         - \n",
        task::yaml_string(agent),
        task::yaml_string(&workdir.to_string_lossy()),
    )
}

/// The editor command the user chose, run through `sh` as git does (it may carry flags).
pub fn editor_command(path: &Path) -> std::process::Command {
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".into());
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{editor} \"$@\""))
        .arg("sh")
        .arg(path);
    cmd
}

/// Writes the draft (or keeps the one left from last time), lets `edit` change it, and
/// queues the result. Returns what to tell the user.
pub fn write_and_queue(
    home: &Home,
    config: &Config,
    workdir: &Path,
    edit: impl FnOnce(&Path) -> std::io::Result<ExitStatus>,
) -> Result<String, String> {
    home.ensure_layout().map_err(|e| e.to_string())?;
    let path = draft_path(home);
    let fresh = template(workdir, &config.default_agent);
    let reopened = path.exists();
    if !reopened {
        nightshift_store::fsutil::write_atomic(&path, fresh.as_bytes(), 0o600)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let kept = |why: String| {
        format!(
            "{why}; the draft is kept in {} (n opens it again)",
            path.display()
        )
    };
    match edit(&path) {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(kept(format!("the editor failed ({status})"))),
        Err(e) => return Err(kept(format!("cannot run the editor: {e} (set $EDITOR)"))),
    }
    let text = std::fs::read_to_string(&path).map_err(|e| kept(e.to_string()))?;
    if text == fresh || text.trim().is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok("nothing queued: the template was left as it was".into());
    }
    let title = task::parse("draft", &path, &text, crate::home::user_home().as_deref())
        .map_err(|e| kept(format!("not queued: {e}")))?
        .title;
    let id = free_id(home, &slug(&title));
    match client::enqueue(home, config, &id, &path, &text, &Overrides::default()) {
        Ok(_) => {
            let _ = std::fs::remove_file(&path);
            Ok(format!("queued {id}"))
        }
        Err(e) => Err(kept(format!("not queued: {e:#}"))),
    }
}

/// A task id from a title: lower case words joined by dashes.
fn slug(title: &str) -> String {
    nightshift_core::task_id::suggest(title)
}

/// `base`, or `base-2`, `base-3`… whichever no task has yet.
fn free_id(home: &Home, base: &str) -> String {
    // Unknown ids count as free: the enqueue refuses a taken one anyway.
    let taken = crate::tasks::states(home).unwrap_or_default();
    (1..)
        .map(|n| {
            if n == 1 {
                base.to_string()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|id| !taken.contains_key(id))
        .unwrap_or_else(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;
    use crate::home::TaskState;

    fn ok() -> std::io::Result<ExitStatus> {
        Ok(ExitStatus::from_raw(0))
    }

    /// An "editor" that writes `text` into the draft.
    fn writes(text: &str) -> impl FnOnce(&Path) -> std::io::Result<ExitStatus> + '_ {
        move |path| {
            std::fs::write(path, text)?;
            ok()
        }
    }

    fn world() -> (tempfile::TempDir, Home, Config) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let home = Home::at(dir.path().join("home"));
        let config = Config::parse(Path::new("config.toml"), "default_agent = \"test\"\n")
            .unwrap_or_else(|e| panic!("config: {e}"));
        (dir, home, config)
    }

    #[test]
    fn an_unchanged_template_queues_nothing() {
        let (dir, home, config) = world();
        let said = write_and_queue(&home, &config, dir.path(), |_| ok());
        assert_eq!(
            said.as_deref(),
            Ok("nothing queued: the template was left as it was")
        );
        assert!(!draft_path(&home).exists());
        let states = crate::tasks::states(&home).expect("states");
        assert!(states.values().all(|s| *s != TaskState::Queued));
    }

    #[test]
    fn a_written_task_is_queued_with_an_id_from_its_title_and_the_workdir() {
        let (dir, home, config) = world();
        let fill = |path: &Path| -> std::io::Result<ExitStatus> {
            let text = std::fs::read_to_string(path)?
                .replace("# Say what to do in one line", "# Fix the login loop");
            std::fs::write(path, text)?;
            ok()
        };
        assert_eq!(
            write_and_queue(&home, &config, dir.path(), fill).as_deref(),
            Ok("queued fix-the-login-loop")
        );
        let queued = home.task_file(TaskState::Queued, "fix-the-login-loop");
        let text = std::fs::read_to_string(&queued).unwrap_or_default();
        assert!(
            text.contains(&dir.path().to_string_lossy().to_string()),
            "{text}"
        );
        // The same title again gets a fresh id.
        let again = write_and_queue(
            &home,
            &config,
            dir.path(),
            writes(
                "# Fix the login loop
",
            ),
        );
        assert_eq!(again.as_deref(), Ok("queued fix-the-login-loop-2"));
    }

    #[test]
    fn a_bad_draft_is_kept_and_opened_again() {
        let (dir, home, config) = world();
        let bad = "---
priorty: 1
---
# Typo in a field
";
        let said = write_and_queue(&home, &config, dir.path(), writes(bad));
        let err = said.err().unwrap_or_default();
        assert!(
            err.contains("not queued") && err.contains("priorty"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(draft_path(&home)).ok().as_deref(),
            Some(bad)
        );
        // The next `n` opens that draft, not a fresh template.
        let fix = |path: &Path| -> std::io::Result<ExitStatus> {
            assert_eq!(std::fs::read_to_string(path)?, bad);
            std::fs::write(
                path,
                "---
priority: 1
---
# Typo in a field
",
            )?;
            ok()
        };
        let said = write_and_queue(&home, &config, dir.path(), fix);
        assert_eq!(said.as_deref(), Ok("queued typo-in-a-field"));
        assert!(!draft_path(&home).exists());
        // A failing editor keeps the draft too.
        let failed = write_and_queue(&home, &config, dir.path(), |_| {
            Ok(ExitStatus::from_raw(1 << 8))
        });
        assert!(failed.is_err_and(|e| e.contains("the editor failed")));
        assert!(draft_path(&home).exists());
    }

    #[test]
    fn slugs_are_ids() {
        assert_eq!(
            slug("Fix the login redirect loop!"),
            "fix-the-login-redirect-loop"
        );
        assert_eq!(slug("  Ünïcode -- ok "), "ünïcode-ok");
        assert_eq!(slug("!!!"), "task");
        assert!(slug(&"long words ".repeat(20)).len() <= 49);
        assert!(task::validate_id(&slug("a/b\\c")).is_ok());
    }
}
