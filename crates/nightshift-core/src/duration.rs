//! Durations as people write them, in task files and config files: `"90s"`, `"1h 30m"`, a
//! whole number of seconds, and `"off"` (or `false`) where a limit can be switched off.
//!
//! [`parse`] and [`format`] are the text form; the serde adapters use it, so every duration
//! field reads and writes the same way.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses `90s`, `30m`, `1h 30m`, `2h`, `500ms`, or a bare number of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 90s, 30m, 1h 30m)"))?;
    Duration::try_from(signed).map_err(|_| format!("`{text}` is negative"))
}

/// Renders a duration the way users write it: `1h 30m`, `45s`, `250ms`.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// What a duration field may hold before it is checked.
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Off(bool),
    Seconds(u64),
    Text(String),
}

impl Raw {
    /// `Ok(None)` for "off"/`false`, which only fields that can be off accept.
    fn into_duration(self, can_be_off: bool) -> Result<Option<Duration>, String> {
        match self {
            Raw::Seconds(s) => Ok(Some(Duration::from_secs(s))),
            Raw::Off(false) if can_be_off => Ok(None),
            Raw::Text(t) if can_be_off && t.trim() == "off" => Ok(None),
            Raw::Off(_) if can_be_off => Err("expected a duration or \"off\"".into()),
            Raw::Off(_) => Err("expected a duration".into()),
            Raw::Text(t) => parse(&t).map(Some),
        }
    }
}

/// A duration that must be there: `#[serde(deserialize_with = "duration::required")]`.
pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Raw::deserialize(d)?.into_duration(false) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(serde::de::Error::custom("expected a duration")),
        Err(e) => Err(serde::de::Error::custom(e)),
    }
}

/// An optional duration (left out: `None`).
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<Raw>::deserialize(d)?
        .map(|r| r.into_duration(false).map_err(serde::de::Error::custom))
        .transpose()
        .map(Option::flatten)
}

/// A duration, or `"off"`/`false` for none.
pub fn off_or<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Raw::deserialize(d)?
        .into_duration(true)
        .map_err(serde::de::Error::custom)
}

/// Writes a duration in the text form [`parse`] reads back.
pub fn write<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// Writes an optional duration: none when absent (or off).
pub fn write_optional<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => write(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "required")]
        required: Duration,
        #[serde(default, deserialize_with = "optional")]
        optional: Option<Duration>,
        #[serde(default, deserialize_with = "off_or")]
        off_or: Option<Duration>,
    }

    fn read(text: &str) -> Result<Fields, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// One adapter for every field: text, seconds, and "off" only where a field can be off.
    #[test]
    fn each_field_kind_reads_text_seconds_and_off_where_allowed() -> Result<(), String> {
        let f = read("required = \"1h 30m\"\noptional = 90\noff_or = \"2m\"")?;
        assert_eq!(f.required, Duration::from_secs(5400));
        assert_eq!(f.optional, Some(Duration::from_secs(90)));
        assert_eq!(f.off_or, Some(Duration::from_secs(120)));
        assert_eq!(read("off_or = \"off\"")?.off_or, None);
        assert_eq!(read("off_or = false")?.off_or, None);
        assert_eq!(read("off_or = 5")?.off_or, Some(Duration::from_secs(5)));
        Ok(())
    }

    #[test]
    fn bad_values_are_errors_that_say_why() {
        let err = |text: &str| read(text).err().unwrap_or_default();
        assert!(err("off_or = true").contains("expected a duration or \"off\""));
        assert!(err("required = \"off\"").contains("required"));
        assert!(err("optional = false").contains("expected a duration"));
        assert!(err("required = \"soon\"").contains("required"));
    }
}
