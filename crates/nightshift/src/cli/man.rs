//! `nightshift man [--out DIR]`: man pages made from the command line's own definition
//! (`clap_mangen`), so they never disagree with `--help`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Cli, exit};
use crate::out::{out, outln};

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write nightshift.1 and one page per command (nightshift-add.1, ...) into this folder,
    /// instead of printing nightshift.1
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub(super) fn run(args: ManArgs) -> anyhow::Result<i32> {
    let pages = pages()?;
    match args.out {
        None => {
            let (_, top) = pages
                .first()
                .ok_or_else(|| anyhow::anyhow!("no man page was made"))?;
            out!("{}", String::from_utf8_lossy(top))?;
        }
        Some(dir) => {
            for path in write_pages(&dir, &pages)? {
                outln!("wrote {}", path.display())?;
            }
        }
    }
    Ok(exit::SUCCESS)
}

/// Every page as (file name, roff text): the top command's first, then one per visible
/// command and subcommand (`nightshift-schedule-ls.1`).
pub(super) fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    fn add(cmd: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
        let subs: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        let man = clap_mangen::Man::new(cmd);
        let mut text = Vec::new();
        man.render(&mut text)?;
        pages.push((man.get_filename(), text));
        for sub in subs {
            add(sub, pages)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives each subcommand its full name (`nightshift-add`), which names its page.
    cmd.build();
    let mut pages = Vec::new();
    add(cmd, &mut pages)?;
    Ok(pages)
}

/// Writes the pages into `dir` (made if missing), each replaced whole: a link in the way is
/// replaced, never written through.
pub(super) fn write_pages(dir: &Path, pages: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::with_capacity(pages.len());
    for (name, text) in pages {
        let path = dir.join(name);
        nightshift_store::fsutil::write_atomic(&path, text, 0o644)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Where a user's own man pages go: `$XDG_DATA_HOME/man/man1`, else
/// `~/.local/share/man/man1` (on `man`'s path by default on most systems).
pub(super) fn user_man_dir(user_home: &Path) -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| user_home.join(".local/share"))
        .join("man/man1")
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_page_for_the_top_command_and_one_per_visible_command() {
        let pages = super::pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"nightshift.1"));
        for page in [
            "nightshift-add.1",
            "nightshift-daemon.1",
            "nightshift-schedule-ls.1",
        ] {
            assert!(names.contains(&page), "{page} in {names:?}");
        }
        // Hidden commands are internal: no page.
        assert!(
            !names
                .iter()
                .any(|n| n.contains("wrap") || n.contains("test-agent"))
        );
        let add = &pages
            .iter()
            .find(|(n, _)| n == "nightshift-add.1")
            .unwrap()
            .1;
        let add = String::from_utf8_lossy(add);
        assert!(add.contains("Add a task file to the queue"), "{add}");
    }
}
