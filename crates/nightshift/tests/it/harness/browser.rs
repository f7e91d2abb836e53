//! A real headless browser for the report page: the OS's Chromium, driven by
//! `playwright-core` from `.ci/run`'s cache (`tests/it/browser/check_report.cjs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::agent_clis::{cli_cache, find_cli};
use super::wait_exit;

/// The browser check's answer for one page.
pub(crate) struct BrowserCheck {
    pub json: serde_json::Value,
}

/// The Chromium binary and playwright-core's module folder, or `None` (the test is skipped,
/// loudly) when either is missing. On CI (`CI=true`) both must be there: `.ci/run` installs
/// them.
pub(crate) fn require_browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_cli("chromium");
    let driver = playwright_modules();
    if let (Some(c), Some(d)) = (&chromium, &driver) {
        return Some((c.clone(), d.clone()));
    }
    let what = if chromium.is_none() {
        "chromium"
    } else {
        "playwright-core"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("`{what}` is not installed, and CI=true: .ci/run must install it");
    }
    eprintln!("\n*** SKIPPED: `{what}` not found; run .ci/run once to install it ***\n");
    None
}

/// `node_modules` holding playwright-core, from the cache's pinned install.
fn playwright_modules() -> Option<PathBuf> {
    let npm = cli_cache().join("npm");
    let mut found: Vec<PathBuf> = std::fs::read_dir(npm)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("playwright-core-")
        })
        .map(|e| e.path().join("node_modules"))
        .filter(|m| m.join("playwright-core").is_dir())
        .collect();
    found.sort();
    found.pop()
}

/// Opens `page` in headless Chromium and returns what the check script saw; the screenshot
/// goes to `shot`.
pub(crate) fn check_page(
    (chromium, modules): &(PathBuf, PathBuf),
    page: &Path,
    shot: &Path,
    hostile: &str,
) -> BrowserCheck {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/browser/check_report.cjs");
    // Files, not pipes: the wait below polls, and a full pipe would stall the script.
    let out_file = shot.with_extension("out.json");
    let err_file = shot.with_extension("err.txt");
    let mut child = std::process::Command::new("node")
        .arg(script)
        .arg(page)
        .arg(shot)
        .arg(hostile)
        .env("NODE_PATH", modules)
        .env("CHROMIUM", chromium)
        .stdout(std::fs::File::create(&out_file).expect("output file"))
        .stderr(std::fs::File::create(&err_file).expect("error file"))
        .spawn()
        .expect("node runs");
    let status = wait_exit(&mut child, Duration::from_secs(120)).expect("the browser check ends");
    let out = std::fs::read_to_string(&out_file).unwrap_or_default();
    let err = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert!(status.success(), "the browser check failed: {err}\n{out}");
    let json = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the browser check's output is not JSON ({e}): {out}\n{err}"));
    BrowserCheck { json }
}
