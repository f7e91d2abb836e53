//! Commands printed as hints ("start it with `nightshift daemon`"): with `--home DIR`
//! whenever the home is not the default one, so the hint works as printed in any shell.

use std::path::{Path, PathBuf};

use crate::home::Home;

/// `nightshift ARGS`, with `--home DIR` unless `home` is `~/.nightshift`.
pub fn command(home: &Home, args: &str) -> String {
    command_for(home.root(), default_root().as_deref(), args)
}

/// The home used without `--home` and `NIGHTSHIFT_HOME`.
fn default_root() -> Option<PathBuf> {
    let user = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    std::path::absolute(PathBuf::from(user).join(".nightshift")).ok()
}

fn command_for(root: &Path, default: Option<&Path>, args: &str) -> String {
    if default == Some(root) {
        format!("nightshift {args}")
    } else {
        let dir = crate::tmux::shell_word(&root.to_string_lossy());
        format!("nightshift --home {dir} {args}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_flag_is_there_only_for_another_home() {
        let default = Path::new("/u/me/.nightshift");
        assert_eq!(
            command_for(default, Some(default), "daemon"),
            "nightshift daemon"
        );
        assert_eq!(
            command_for(Path::new("/tmp/ns"), Some(default), "resume"),
            "nightshift --home /tmp/ns resume"
        );
        assert_eq!(
            command_for(Path::new("/tmp/my home"), None, "ls"),
            "nightshift --home '/tmp/my home' ls"
        );
    }
}
