//! Keeping the home private: everything nightshift creates is for its user only (directories
//! 0700, files 0600), whatever the umask, and secrets from `env:` are shown masked.
//!
//! The process runs under `umask 077`; what it starts for the user in a worktree (the agent,
//! checks, setup commands) gets the user's own umask back.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use rustix::fs::Mode;

/// Carries the user's umask to a daemon started by another nightshift process, which would
/// otherwise only see nightshift's own `077`.
pub const USER_UMASK_ENV: &str = "NIGHTSHIFT_USER_UMASK";

/// What a masked environment value is shown as.
pub const MASK: &str = "***";

/// The umask used when nothing else is known: the common default.
const DEFAULT_USER_UMASK: u32 = 0o022;

static USER_UMASK: OnceLock<u32> = OnceLock::new();

/// Sets the process umask to `077` and remembers the user's. Call first thing in `main`.
pub fn restrict_umask() {
    let previous = rustix::process::umask(Mode::from_raw_mode(0o077)).as_raw_mode();
    let inherited = std::env::var(USER_UMASK_ENV)
        .ok()
        .and_then(|v| parse_umask(&v));
    let _ = USER_UMASK.set(inherited.unwrap_or(previous as u32));
}

/// The umask the user started nightshift with: for the processes it runs on their behalf.
pub fn user_umask() -> u32 {
    USER_UMASK.get().copied().unwrap_or(DEFAULT_USER_UMASK)
}

/// Sets the umask of this process to the user's. For a process that is about to become (or
/// start) the user's own program, such as the pane wrapper before it starts the agent.
pub fn restore_user_umask(mask: u32) {
    rustix::process::umask(Mode::from_raw_mode((mask & 0o777) as _));
}

/// `"022"` or `"0022"` → `0o022`.
pub fn parse_umask(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
}

/// A shell command that runs `command` under `mask`, for `sh -c`. On the same line, so the
/// shell's line numbers in error messages stay those of the command.
pub fn with_umask(command: &str, mask: u32) -> String {
    format!("umask {mask:04o}; {command}")
}

/// Whether a mode lets anyone but the owner in.
pub fn open_to_others(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// An environment with every value masked: `API_KEY=***`. Names stay, so a person can see
/// what was set.
pub fn mask_env(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, _)| (k.clone(), MASK.to_string()))
        .collect()
}

/// Takes group and other permissions away from everything under `root` (and `root` itself)
/// that others could reach: returns how many paths were changed. Symlinks are never
/// followed, and the contents of `root/worktrees/` (the user's repository files) are left
/// alone.
///
/// Bounded by what is open, not by the home's history: below `root`, a folder that was
/// already closed to others is not walked (nobody else can reach into it, and what
/// nightshift creates is private), so a private home costs one look per top-level entry on
/// each start. A file with other names (a hard link) keeps its mode: it is shared with a
/// name outside the home, and a folder closed to others hides this one anyway.
pub fn tighten(root: &Path) -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    // A home that is itself a link (`~/.nightshift` -> `/data/ns`) is where it points; only
    // links inside it are never followed.
    let root = root.canonicalize()?;
    let worktrees = root.join("worktrees");
    let mut changed = 0;
    let mut stack = vec![root.clone()];
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Gone meanwhile (a file being renamed): nothing to protect.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() || (!meta.is_dir() && meta.nlink() > 1) {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        let open = open_to_others(mode);
        if open {
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !0o077)) {
                Ok(()) => changed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        if meta.is_dir() && path != worktrees && (open || path == root) {
            match std::fs::read_dir(&path) {
                Ok(entries) => stack.extend(entries.flatten().map(|e| e.path())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn tighten_closes_the_home_but_not_worktree_contents_or_link_targets() -> io::Result<()> {
        let outside = tempfile::tempdir()?;
        let target = outside.path().join("target");
        std::fs::write(&target, "x")?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;

        let home = tempfile::tempdir()?;
        let root = home.path();
        let set =
            |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        std::fs::create_dir_all(root.join("inbox"))?;
        std::fs::create_dir_all(root.join("worktrees/repo-1/t1"))?;
        std::fs::write(root.join("config.toml"), "")?;
        std::fs::write(root.join("inbox/a.md"), "")?;
        std::fs::write(root.join("worktrees/repo-1/t1/file"), "")?;
        std::os::unix::fs::symlink(&target, root.join("inbox/link.md"))?;
        set(root, 0o755)?;
        set(&root.join("inbox"), 0o755)?;
        set(&root.join("worktrees"), 0o755)?;
        set(&root.join("worktrees/repo-1"), 0o755)?;
        set(&root.join("config.toml"), 0o644)?;
        set(&root.join("inbox/a.md"), 0o640)?;
        set(&root.join("worktrees/repo-1/t1/file"), 0o644)?;

        assert_eq!(tighten(root)?, 5);
        assert_eq!(mode(root), 0o700);
        assert_eq!(mode(&root.join("inbox")), 0o700);
        assert_eq!(mode(&root.join("worktrees")), 0o700);
        assert_eq!(mode(&root.join("config.toml")), 0o600);
        assert_eq!(mode(&root.join("inbox/a.md")), 0o600);
        assert_eq!(mode(&root.join("worktrees/repo-1")), 0o755, "user's files");
        assert_eq!(mode(&root.join("worktrees/repo-1/t1/file")), 0o644);
        assert_eq!(mode(&target), 0o644, "a link's target is not ours");
        assert_eq!(tighten(root)?, 0, "nothing left to do");
        Ok(())
    }

    #[test]
    fn tighten_walks_only_what_others_can_reach_and_never_chmods_a_hard_link() -> io::Result<()> {
        let outside = tempfile::tempdir()?;
        let shared = outside.path().join("shared.md");
        std::fs::write(&shared, "x")?;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644))?;

        let home = tempfile::tempdir()?;
        let root = home.path();
        let set =
            |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        std::fs::create_dir_all(root.join("records/t/1"))?;
        std::fs::create_dir_all(root.join("archive"))?;
        std::fs::write(root.join("config.toml"), "")?;
        std::fs::write(root.join("records/t/1/transcript.log"), "")?;
        std::fs::hard_link(&shared, root.join("archive/shared.md"))?;
        set(root, 0o700)?;
        set(&root.join("config.toml"), 0o644)?;
        set(&root.join("records"), 0o700)?;
        set(&root.join("records/t/1/transcript.log"), 0o644)?;
        set(&root.join("archive"), 0o755)?;

        // The config (under the root, always looked at) and `archive/` are fixed; the file
        // inside the private `records/` is out of others' reach and not walked; the hard link's
        // other name, outside the home, keeps its mode.
        assert_eq!(tighten(root)?, 2);
        assert_eq!(mode(&root.join("config.toml")), 0o600);
        assert_eq!(mode(&root.join("archive")), 0o700);
        assert_eq!(mode(&root.join("records/t/1/transcript.log")), 0o644);
        assert_eq!(mode(&shared), 0o644, "changed through a hard link");

        // A home reached through a link is tightened where it is.
        let link = outside.path().join("home-link");
        std::os::unix::fs::symlink(root, &link)?;
        set(root, 0o755)?;
        assert_eq!(tighten(&link)?, 1);
        assert_eq!(mode(root), 0o700);
        Ok(())
    }

    #[test]
    fn env_values_are_masked_and_names_kept() {
        let env = vec![("API_KEY".to_string(), "s3cret".to_string())];
        assert_eq!(
            mask_env(&env),
            vec![("API_KEY".to_string(), "***".to_string())]
        );
    }

    #[test]
    fn umask_text_and_shell_prefix() {
        assert_eq!(parse_umask("022"), Some(0o022));
        assert_eq!(parse_umask("0077\n"), Some(0o077));
        assert_eq!(parse_umask("9"), None);
        assert_eq!(parse_umask("7777"), None);
        assert_eq!(with_umask("make test", 0o022), "umask 0022; make test");
        assert!(open_to_others(0o644));
        assert!(!open_to_others(0o700));
    }
}
