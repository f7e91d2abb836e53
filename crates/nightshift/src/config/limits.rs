//! `[limits]`: how an agent that hits its plan's usage limit or the API's rate limit is
//! waited out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use nightshift_core::duration;
use nightshift_core::limits::LimitSettings;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Hold a profile that hit a limit (`false`: a limit is only an attention flag).
    pub enabled: bool,
    /// Waited after the reset time the agent gave, before it is told to continue.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub margin: Duration,
    /// The first wait when the agent gave no reset time; doubled for each limit in a row.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub first_wait: Duration,
    /// The longest such wait.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub max_wait: Duration,
    /// Typed into a limited agent's session when its hold lifts.
    #[serde(rename = "continue")]
    pub continue_text: String,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        let core = LimitSettings::default();
        LimitsConfig {
            enabled: core.enabled,
            margin: core.margin,
            first_wait: core.first_wait,
            max_wait: core.max_wait,
            continue_text: core.continue_text,
        }
    }
}

impl LimitsConfig {
    /// The core's settings; an unusable value is an error naming it.
    pub fn settings(&self) -> Result<LimitSettings, String> {
        if self.first_wait < Duration::from_secs(1) {
            return Err("first_wait must be at least 1s".into());
        }
        if self.max_wait < self.first_wait {
            return Err("max_wait must not be shorter than first_wait".into());
        }
        if self.continue_text.trim().is_empty() {
            return Err("continue must say something to type".into());
        }
        Ok(LimitSettings {
            enabled: self.enabled,
            margin: self.margin,
            first_wait: self.first_wait,
            max_wait: self.max_wait,
            continue_text: self.continue_text.clone(),
        })
    }
}
