//! Running the daemon as a user service: a launchd LaunchAgent on macOS, a systemd user unit
//! on Linux. The files are plain functions of the paths, so they can be printed
//! (`--dry-run`) and checked without installing anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// launchd's label, and the unit's name.
pub const LABEL: &str = "dev.nightshift.daemon";
pub const UNIT: &str = "nightshift.service";

/// What the service runs, and with which PATH.
#[derive(Debug, Clone)]
pub struct Service {
    /// Absolute path of the nightshift binary.
    pub exe: PathBuf,
    /// Absolute path of the home.
    pub home: PathBuf,
    /// The installing shell's PATH: a service does not get the user's, and would not find
    /// `claude`, `tmux` or `git` without it.
    pub path: String,
}

/// A launchd job with the keys nightshift uses: the daemon's LaunchAgent and the agents
/// `schedule export` writes are both one of these, written out by the `plist` crate (which
/// does the XML escaping).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LaunchdJob {
    pub label: String,
    pub program_arguments: Vec<String>,
    pub run_at_load: Option<bool>,
    pub keep_alive: Option<KeepAlive>,
    pub throttle_interval: Option<u32>,
    pub abandon_process_group: Option<bool>,
    pub process_type: Option<&'static str>,
    pub environment_variables: Option<BTreeMap<String, String>>,
    pub standard_out_path: Option<String>,
    pub standard_error_path: Option<String>,
    /// Each entry a time (`Minute`, `Hour`, `Day`, `Month`, `Weekday`); launchd ORs them.
    pub start_calendar_interval: Option<Vec<BTreeMap<&'static str, u32>>>,
    /// Seconds between runs.
    pub start_interval: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeepAlive {
    pub successful_exit: bool,
}

impl LaunchdJob {
    /// The property list, as XML.
    pub fn to_xml(&self) -> Result<String, plist::Error> {
        let mut out = Vec::new();
        plist::to_writer_xml(&mut out, self)?;
        out.push(b'\n');
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// `exe --home home args…`, the command line of every launchd job.
pub fn program_arguments(exe: &Path, home: &Path, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        exe.to_string_lossy().into_owned(),
        "--home".into(),
        home.to_string_lossy().into_owned(),
    ];
    argv.extend(args.iter().map(std::string::ToString::to_string));
    argv
}

/// The LaunchAgent property list.
pub fn launchd_plist(s: &Service) -> Result<String, plist::Error> {
    let logs = s.home.join("logs");
    let log = |name: &str| logs.join(name).to_string_lossy().into_owned();
    LaunchdJob {
        label: LABEL.into(),
        program_arguments: program_arguments(&s.exe, &s.home, &["daemon"]),
        run_at_load: Some(true),
        // Restart after a crash only: a clean stop stays stopped.
        keep_alive: Some(KeepAlive {
            successful_exit: false,
        }),
        throttle_interval: Some(10),
        // Agents live in tmux: they must survive the daemon's own restarts.
        abandon_process_group: Some(true),
        process_type: Some("Interactive"),
        environment_variables: Some(BTreeMap::from([("PATH".into(), s.path.clone())])),
        standard_out_path: Some(log("launchd.out.log")),
        standard_error_path: Some(log("launchd.err.log")),
        ..LaunchdJob::default()
    }
    .to_xml()
}

/// systemd quotes: double quotes, with `\`, `"` and `%` escaped (specifiers).
pub fn sd_quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
            .replace('$', "$$")
    )
}

/// The systemd user unit.
pub fn systemd_unit(s: &Service) -> String {
    format!(
        "[Unit]\n\
         Description=nightshift: runs coding agents from a queue of task files\n\
         Documentation=https://github.com/nightshift\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exe} --home {home} daemon\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         Environment={path}\n\
         # The tmux server (and every agent in it) must not live in this service's cgroup, or\n\
         # `systemctl --user restart nightshift` kills them all: the daemon starts it through\n\
         # `systemd-run --user --scope` when this is set.\n\
         Environment={scope}=1\n\
         KillMode=process\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exe = sd_quote(&s.exe.to_string_lossy()),
        home = sd_quote(&s.home.to_string_lossy()),
        path = sd_quote(&format!("PATH={}", s.path)),
        scope = crate::tmux::SCOPE_ENV,
    )
}

/// Where each file goes, under the user's home directory.
pub fn launchd_path(user_home: &Path) -> PathBuf {
    user_home
        .join("Library/LaunchAgents")
        .join(format!("{LABEL}.plist"))
}

pub fn systemd_path(config_home: &Path) -> PathBuf {
    config_home.join("systemd/user").join(UNIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            exe: "/opt/night & day/nightshift".into(),
            home: "/home/me/.nightshift".into(),
            path: "/opt/homebrew/bin:/usr/bin:/bin".into(),
        }
    }

    #[test]
    fn the_plist_parses_and_has_what_launchd_needs() {
        let text = launchd_plist(&service()).unwrap();
        let value = plist::Value::from_reader_xml(text.as_bytes()).unwrap();
        let d = value.as_dictionary().unwrap();
        assert_eq!(d["Label"].as_string(), Some(LABEL));
        let args: Vec<&str> = d["ProgramArguments"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_string())
            .collect();
        assert_eq!(
            args,
            [
                "/opt/night & day/nightshift",
                "--home",
                "/home/me/.nightshift",
                "daemon"
            ]
        );
        assert!(args.iter().take(1).all(|a| a.starts_with('/')), "absolute");
        let keep = d["KeepAlive"].as_dictionary().unwrap();
        assert_eq!(keep["SuccessfulExit"].as_boolean(), Some(false));
        assert_eq!(d["AbandonProcessGroup"].as_boolean(), Some(true));
        let env = d["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(
            env["PATH"].as_string(),
            Some("/opt/homebrew/bin:/usr/bin:/bin")
        );
        assert!(
            d["StandardErrorPath"]
                .as_string()
                .unwrap()
                .starts_with("/home/me/.nightshift/logs/")
        );
    }

    #[test]
    fn the_unit_restarts_on_failure_and_keeps_tmux_out_of_its_cgroup() {
        let unit = systemd_unit(&service());
        assert!(unit.contains(
            "ExecStart=\"/opt/night & day/nightshift\" --home \"/home/me/.nightshift\" daemon"
        ));
        assert!(unit.contains("Restart=on-failure"));
        assert!(unit.contains("Environment=\"PATH=/opt/homebrew/bin:/usr/bin:/bin\""));
        assert!(unit.contains(&format!("Environment={}=1", crate::tmux::SCOPE_ENV)));
        assert!(unit.contains("systemd-run --user --scope"));
        assert!(unit.contains("WantedBy=default.target"));
        assert_eq!(sd_quote("50% \"x\" $HOME"), "\"50%% \\\"x\\\" $$HOME\"");
    }
}
