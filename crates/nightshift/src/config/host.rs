//! `host` and `labels`: who this host is in a fleet, and what it offers to tasks'
//! `requires:`.

use nightshift_core::labels;

use super::Config;

/// The environment variable that overrides `host`.
pub const HOST_ENV: &str = "NIGHTSHIFT_HOST";

/// Applies `NIGHTSHIFT_HOST` and checks the name and the labels.
pub(super) fn settle(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    if let Some(name) = env(HOST_ENV).filter(|h| !h.trim().is_empty()) {
        config.host = name.trim().to_string();
        labels::validate_host(&config.host).map_err(|m| format!("{HOST_ENV}: {m}"))?;
    } else {
        labels::validate_host(&config.host).map_err(|m| {
            format!("host: {m} (the default is the machine's name: set `host` or {HOST_ENV})")
        })?;
    }
    for label in &config.labels {
        labels::validate_label(label).map_err(|m| format!("labels: {m}"))?;
    }
    Ok(())
}
