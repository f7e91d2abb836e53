//! `nightshift report`: what happened in a window (default: the last 12 hours), as text,
//! JSON or one HTML page.

use std::path::PathBuf;

use jiff::Timestamp;

use crate::home::Home;
use crate::night_report;
use crate::out::outln;
use nightshift_core::night::{self, Window};

use super::{CliError, exit, load_config};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Start of the window: a duration back from now (12h, 90m) or a time
    /// (2026-12-05T18:00, local; or RFC 3339) [default: 12h]
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Write the HTML page to FILE
    #[arg(long, value_name = "FILE", conflicts_with = "open")]
    pub html: Option<PathBuf>,
    /// Write the HTML page into the home's reports/ and open it (xdg-open or open)
    #[arg(long)]
    pub open: bool,
    /// Print JSON for scripts (times in RFC 3339)
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(home: &Home, args: ReportArgs) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    let now = crate::clock::wall_now();
    let since = match &args.since {
        Some(raw) => night::parse_since(raw, now, &jiff::tz::TimeZone::system())
            .map_err(|e| CliError::new(exit::USAGE, format!("--since: {e}")))?,
        None => now
            .checked_sub(jiff::SignedDuration::try_from(night::DEFAULT_WINDOW)?)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    };
    if since > now {
        return Err(CliError::new(exit::USAGE, "--since: that is in the future").into());
    }
    let report = night_report::gather(home, &config, Window { since, until: now })?;
    let page = match (&args.html, args.open) {
        (Some(path), _) => {
            night_report::write_page(path, &report)?;
            Some(path.clone())
        }
        (None, true) => Some(night_report::write_to_home(home, &report)?),
        (None, false) => None,
    };
    if args.json {
        outln!("{}", crate::term_text::to_json(&report)?)?;
    } else {
        std::io::Write::write_all(
            &mut std::io::stdout(),
            night_report::text::render(&report).as_bytes(),
        )?;
    }
    if let Some(path) = page {
        // On stderr with --json, so the JSON stays whole for scripts.
        let line = format!("report page: {}", path.display());
        if args.json {
            eprintln!("{line}");
        } else {
            outln!("\n{line}")?;
        }
        if args.open && !open(&path) {
            eprintln!("no xdg-open or open here: open {} yourself", path.display());
        }
    }
    Ok(exit::SUCCESS)
}

/// Opens the page with the desktop's opener; false when there is none.
fn open(path: &std::path::Path) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}
