//! Installing nightshift into a repository's git hooks without clobbering anything.
//!
//! The hook lives in the repository's common hooks folder, so one hook serves every worktree
//! (the task worktrees included). An existing hook that is not ours is moved aside to
//! `<hook>.nightshift-orig`, byte for byte, and run first by ours; uninstalling the last
//! trigger moves it back. One managed hook serves several triggers, a line each.

use crate::git::GitCommand;
use std::path::{Path, PathBuf};

use crate::tmux::shell_quote;

pub const EVENTS: &[&str] = &["post-commit", "post-merge", "post-checkout"];
const MARKER: &str = "# nightshift: managed hook";
const LINE_TAG: &str = "# nightshift-trigger: ";
const ORIG_SUFFIX: &str = ".nightshift-orig";

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0} is not in a git repository")]
    NotARepository(PathBuf),
    #[error("unknown git hook `{0}` (post-commit, post-merge or post-checkout)")]
    UnknownEvent(String),
    #[error(
        "core.hooksPath is set to `{0}`, which a hook manager (husky, lefthook, pre-commit) probably owns; add nightshift there (`nightshift trigger event NAME --on EVENT`), or pass --force to install into that folder anyway"
    )]
    HooksPath(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What an install or uninstall did.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    Installed { hook: PathBuf, chained: bool },
    AlreadyInstalled(PathBuf),
    Removed { hook: PathBuf, restored: bool },
    NotInstalled(PathBuf),
}

fn git(repo: &Path, args: &[&str]) -> Option<String> {
    GitCommand::in_dir(repo)
        .args(args)
        .stdout_blocking()
        .map(|out| out.trim().to_string())
}

/// The hooks folder for `repo`: `core.hooksPath` if set (refused unless `force`), else the
/// common git folder's `hooks/`.
fn hooks_dir(repo: &Path, force: bool) -> Result<PathBuf, HookError> {
    let common = git(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .ok_or_else(|| HookError::NotARepository(repo.to_path_buf()))?;
    if let Some(custom) =
        git(repo, &["config", "--get", "core.hooksPath"]).filter(|p| !p.is_empty())
    {
        if !force {
            return Err(HookError::HooksPath(custom));
        }
        let top = git(repo, &["rev-parse", "--show-toplevel"]).unwrap_or_default();
        let p = PathBuf::from(&custom);
        return Ok(if p.is_absolute() {
            p
        } else {
            Path::new(&top).join(p)
        });
    }
    Ok(PathBuf::from(common).join("hooks"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> HookError + '_ {
    move |source| HookError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The line that reports the event for one trigger. Paths are quoted for `sh`; the trigger
/// name was checked to be a plain name.
fn trigger_line(exe: &Path, home: &Path, trigger: &str, event: &str) -> String {
    format!(
        "{} --home {} trigger event {} --on {} >/dev/null 2>&1 || true {LINE_TAG}{trigger}\n",
        shell_quote(&exe.to_string_lossy()),
        shell_quote(&home.to_string_lossy()),
        shell_quote(trigger),
        event
    )
}

fn header() -> String {
    format!(
        "#!/bin/sh\n{MARKER}. `nightshift trigger uninstall` restores the hook it replaced.\n\
         orig=\"$0{ORIG_SUFFIX}\"\n\
         if [ -x \"$orig\" ]; then \"$orig\" \"$@\"; status=$?; else status=0; fi\n"
    )
}

/// Installs `trigger` on `event` in `repo`'s hooks.
pub fn install(
    repo: &Path,
    event: &str,
    exe: &Path,
    home: &Path,
    trigger: &str,
    force: bool,
) -> Result<Done, HookError> {
    if !EVENTS.contains(&event) {
        return Err(HookError::UnknownEvent(event.to_string()));
    }
    let dir = hooks_dir(repo, force)?;
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let hook = dir.join(event);
    let existing = std::fs::read(&hook).ok();
    let ours = existing
        .as_deref()
        .is_some_and(|b| String::from_utf8_lossy(b).contains(MARKER));
    let mut chained = false;
    let mut text = if ours {
        String::from_utf8_lossy(existing.as_deref().unwrap_or_default()).into_owned()
    } else {
        if existing.is_some() {
            // Someone else's hook: kept byte for byte, and run first.
            let orig = dir.join(format!("{event}{ORIG_SUFFIX}"));
            if orig.exists() {
                // An older one is kept there already: never overwrite either.
                return Err(HookError::Io {
                    path: orig,
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "a saved original hook is in the way; sort out the two hooks by hand",
                    ),
                });
            }
            std::fs::rename(&hook, &orig).map_err(io(&orig))?;
            chained = true;
        }
        header()
    };
    let tag = format!("{LINE_TAG}{trigger}\n");
    if text.lines().any(|l| format!("{l}\n").ends_with(&tag)) {
        return Ok(Done::AlreadyInstalled(hook));
    }
    // The hook's own exit status stays the original hook's.
    text = text.replace("exit $status\n", "");
    text.push_str(&trigger_line(exe, home, trigger, event));
    text.push_str("exit $status\n");
    write_executable(&hook, &text)?;
    Ok(Done::Installed { hook, chained })
}

/// Removes `trigger` from `event`'s hook; with no trigger left, the original hook (if any)
/// comes back exactly as it was.
pub fn uninstall(repo: &Path, event: &str, trigger: &str, force: bool) -> Result<Done, HookError> {
    if !EVENTS.contains(&event) {
        return Err(HookError::UnknownEvent(event.to_string()));
    }
    let dir = hooks_dir(repo, force)?;
    let hook = dir.join(event);
    let Ok(text) = std::fs::read_to_string(&hook) else {
        return Ok(Done::NotInstalled(hook));
    };
    let tag = format!("{LINE_TAG}{trigger}");
    if !text.contains(MARKER) || !text.lines().any(|l| l.ends_with(&tag)) {
        return Ok(Done::NotInstalled(hook));
    }
    let kept: String = text
        .lines()
        .filter(|l| !l.ends_with(&tag))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.contains(LINE_TAG) {
        write_executable(&hook, &kept)?;
        return Ok(Done::Removed {
            hook,
            restored: false,
        });
    }
    let orig = dir.join(format!("{event}{ORIG_SUFFIX}"));
    let restored = orig.exists();
    if restored {
        std::fs::rename(&orig, &hook).map_err(io(&hook))?;
    } else {
        std::fs::remove_file(&hook).map_err(io(&hook))?;
    }
    Ok(Done::Removed { hook, restored })
}

fn write_executable(path: &Path, text: &str) -> Result<(), HookError> {
    nightshift_store::fsutil::write_atomic(path, text.as_bytes(), 0o755).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        crate::git::test_git(dir.path(), &["init", "-q"]);
        dir
    }

    #[test]
    fn install_chains_and_uninstall_restores_byte_for_byte() {
        let r = repo();
        let hooks = r.path().join(".git/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let original = b"#!/bin/sh\necho theirs \xff\nexit 3\n";
        std::fs::write(hooks.join("post-commit"), original).unwrap();
        let (exe, home) = (
            Path::new("/opt/ns it/nightshift"),
            Path::new("/h/.nightshift"),
        );
        let done = install(r.path(), "post-commit", exe, home, "review", false).unwrap();
        assert_eq!(
            done,
            Done::Installed {
                hook: hooks.join("post-commit"),
                chained: true
            }
        );
        assert_eq!(
            std::fs::read(hooks.join("post-commit.nightshift-orig")).unwrap(),
            original
        );
        let text = std::fs::read_to_string(hooks.join("post-commit")).unwrap();
        assert!(text.contains("'/opt/ns it/nightshift' --home '/h/.nightshift' trigger event 'review' --on post-commit"), "{text}");
        assert!(matches!(
            install(r.path(), "post-commit", exe, home, "review", false),
            Ok(Done::AlreadyInstalled(_))
        ));
        install(r.path(), "post-commit", exe, home, "lint", false).unwrap();
        uninstall(r.path(), "post-commit", "review", false).unwrap();
        let text = std::fs::read_to_string(hooks.join("post-commit")).unwrap();
        assert!(text.contains("'lint'") && !text.contains("'review'"));
        let done = uninstall(r.path(), "post-commit", "lint", false).unwrap();
        assert!(matches!(done, Done::Removed { restored: true, .. }));
        assert_eq!(std::fs::read(hooks.join("post-commit")).unwrap(), original);
        assert!(!hooks.join("post-commit.nightshift-orig").exists());
    }

    #[test]
    fn a_hook_manager_is_refused_unless_forced() {
        let r = repo();
        crate::git::test_git(r.path(), &["config", "core.hooksPath", ".husky"]);
        let (exe, home) = (Path::new("/n"), Path::new("/h"));
        let e = install(r.path(), "post-commit", exe, home, "t", false).unwrap_err();
        assert!(e.to_string().contains("husky"), "{e}");
        install(r.path(), "post-commit", exe, home, "t", true).unwrap();
        assert!(r.path().join(".husky/post-commit").exists());
        assert!(install(r.path(), "pre-push", exe, home, "t", true).is_err());
    }
}
