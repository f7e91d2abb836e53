//! Running the daemon as a user service: a launchd LaunchAgent on macOS, a systemd user unit
//! on Linux. The files are plain functions of the paths, so they can be printed
//! (`--dry-run`) and checked without installing anything.

use std::path::{Path, PathBuf};

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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The LaunchAgent property list.
pub fn launchd_plist(s: &Service) -> String {
    let x = |p: &Path| xml_escape(&p.to_string_lossy());
    let logs = s.home.join("logs");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{exe}</string>
    <string>--home</string>
    <string>{home}</string>
    <string>daemon</string>
  </array>
  <key>RunAtLoad</key>
  <true/>
  <!-- Restart after a crash only: a clean stop stays stopped. -->
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ThrottleInterval</key>
  <integer>10</integer>
  <!-- Agents live in tmux: they must survive the daemon's own restarts. -->
  <key>AbandonProcessGroup</key>
  <true/>
  <key>ProcessType</key>
  <string>Interactive</string>
  <key>EnvironmentVariables</key>
  <dict>
    <key>PATH</key>
    <string>{path}</string>
  </dict>
  <key>StandardOutPath</key>
  <string>{out}</string>
  <key>StandardErrorPath</key>
  <string>{err}</string>
</dict>
</plist>
"#,
        exe = x(&s.exe),
        home = x(&s.home),
        path = xml_escape(&s.path),
        out = x(&logs.join("launchd.out.log")),
        err = x(&logs.join("launchd.err.log")),
    )
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
        let text = launchd_plist(&service());
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
