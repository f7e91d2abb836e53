//! `nightshift service install | uninstall | status [--dry-run]`: a launchd LaunchAgent on
//! macOS, a systemd user unit elsewhere.

use std::path::PathBuf;
use std::process::Command;

use super::{CliError, exit};
use crate::home::Home;
use crate::out::{out, outln};
use crate::service::{self, Service};

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Install and start the daemon as a user service
    Install {
        /// Print the files and commands instead of installing
        #[arg(long)]
        dry_run: bool,
        /// Also install the man pages, into $XDG_DATA_HOME/man/man1 (default
        /// ~/.local/share/man/man1)
        #[arg(long)]
        man: bool,
    },
    /// Stop and remove the service
    Uninstall {
        /// Print the commands instead of running them
        #[arg(long)]
        dry_run: bool,
    },
    /// Ask the service manager about it
    Status,
}

fn launchd() -> bool {
    cfg!(target_os = "macos")
}

fn user_home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| CliError::new(exit::FAILURE, "HOME is not set").into())
}

fn unit_file() -> anyhow::Result<PathBuf> {
    Ok(if launchd() {
        service::launchd_path(&user_home()?)
    } else {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map_or_else(|| user_home().map(|h| h.join(".config")), Ok)?;
        service::systemd_path(&config)
    })
}

/// The service manager's commands for an action, as argv lists.
fn commands(action: &str, file: &std::path::Path) -> Vec<Vec<String>> {
    let s = |v: &[&str]| {
        v.iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
    };
    let uid = rustix::process::getuid().as_raw();
    let domain = format!("gui/{uid}");
    let file = file.to_string_lossy().into_owned();
    match (launchd(), action) {
        (true, "install") => vec![s(&["launchctl", "bootstrap", &domain, &file])],
        (true, "uninstall") => vec![s(&[
            "launchctl",
            "bootout",
            &format!("{domain}/{}", service::LABEL),
        ])],
        (true, _) => vec![s(&[
            "launchctl",
            "print",
            &format!("{domain}/{}", service::LABEL),
        ])],
        (false, "install") => vec![
            s(&["systemctl", "--user", "daemon-reload"]),
            s(&["systemctl", "--user", "enable", "--now", service::UNIT]),
        ],
        (false, "uninstall") => vec![
            s(&["systemctl", "--user", "disable", "--now", service::UNIT]),
            s(&["systemctl", "--user", "daemon-reload"]),
        ],
        (false, _) => vec![s(&[
            "systemctl",
            "--user",
            "status",
            "--no-pager",
            service::UNIT,
        ])],
    }
}

fn run_all(cmds: &[Vec<String>]) -> anyhow::Result<bool> {
    let mut ok = true;
    for argv in cmds {
        let status = Command::new(&argv[0]).args(&argv[1..]).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("nightshift: `{}` failed ({s})", argv.join(" "));
                ok = false;
            }
            Err(e) => {
                eprintln!("nightshift: cannot run `{}`: {e}", argv.join(" "));
                ok = false;
            }
        }
    }
    Ok(ok)
}

pub(super) fn run(home: &Home, cmd: ServiceCommand) -> anyhow::Result<i32> {
    let file = unit_file()?;
    match cmd {
        ServiceCommand::Install { dry_run, man } => {
            let man_dir = man
                .then(|| user_home().map(|h| super::man::user_man_dir(&h)))
                .transpose()?;
            home.ensure_layout()?;
            let exe = std::fs::canonicalize(std::env::current_exe()?)?;
            let mut path = exe
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(p) = std::env::var_os("PATH") {
                path = format!("{path}:{}", p.to_string_lossy());
            }
            let s = Service {
                exe,
                home: std::fs::canonicalize(home.root())?,
                path,
            };
            let text = if launchd() {
                service::launchd_plist(&s)?
            } else {
                service::systemd_unit(&s)
            };
            let cmds = commands("install", &file);
            if dry_run {
                outln!("# {}", file.display())?;
                out!("{text}")?;
                for c in &cmds {
                    outln!("# then: {}", c.join(" "))?;
                }
                if let Some(dir) = &man_dir {
                    outln!("# and the man pages into {}", dir.display())?;
                }
                return Ok(exit::SUCCESS);
            }
            if let Some(dir) = &man_dir {
                let pages = super::man::pages()?;
                super::man::write_pages(dir, &pages)?;
                outln!("wrote {} man pages into {}", pages.len(), dir.display())?;
            }
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            nightshift_store::fsutil::write_atomic(&file, text.as_bytes(), 0o644)?;
            outln!("wrote {}", file.display())?;
            if !run_all(&cmds)? {
                return Err(
                    CliError::new(exit::FAILURE, "the service manager refused; see above").into(),
                );
            }
            if !launchd() {
                outln!(
                    "To keep it running while you are logged out: loginctl enable-linger {}",
                    std::env::var("USER").unwrap_or_else(|_| "$USER".into())
                )?;
            }
            Ok(exit::SUCCESS)
        }
        ServiceCommand::Uninstall { dry_run } => {
            let cmds = commands("uninstall", &file);
            if dry_run {
                for c in &cmds {
                    outln!("{}", c.join(" "))?;
                }
                outln!("rm {}", file.display())?;
                return Ok(exit::SUCCESS);
            }
            let ok = run_all(&cmds)?;
            match std::fs::remove_file(&file) {
                Ok(()) => outln!("removed {}", file.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    outln!("{} was not installed", file.display())
                }
                Err(e) => return Err(e.into()),
            }?;
            Ok(if ok { exit::SUCCESS } else { exit::FAILURE })
        }
        ServiceCommand::Status => {
            if !file.exists() {
                outln!("not installed ({} does not exist)", file.display())?;
                return Ok(exit::FAILURE);
            }
            outln!("installed: {}", file.display())?;
            Ok(if run_all(&commands("status", &file))? {
                exit::SUCCESS
            } else {
                exit::FAILURE
            })
        }
    }
}
