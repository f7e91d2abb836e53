//! Editing a task file's front matter, keeping everything else as written.

use std::path::Path;

use serde::Deserialize;

use super::parse::{Split, from_front_matter, split_front_matter};
use super::{OneOrMany, TaskError};

/// Splits the top-level front-matter entries named in `keys` off a task file: returns their
/// YAML, and the file without them. Schedules use this for their own fields; the rest stays
/// a task template.
pub fn take_front_keys(
    path: &Path,
    text: &str,
    keys: &[&str],
) -> Result<(String, String), TaskError> {
    let split = split_front_matter(path, text)?;
    let Some(yaml) = split.yaml else {
        return Ok((String::new(), text.to_string()));
    };
    let (mut taken, mut kept) = (String::new(), String::new());
    let mut taking = false;
    for line in yaml.split_inclusive('\n') {
        // A new top-level entry starts at column 0 (not a list item or a comment).
        let top = !line.starts_with([' ', '\t', '-', '#']) && !line.trim().is_empty();
        if top {
            let key = line.split(':').next().unwrap_or("").trim();
            taking = keys.contains(&key);
        }
        if taking {
            taken.push_str(line);
        } else {
            kept.push_str(line);
        }
    }
    Ok((taken, format!("---\n{kept}---\n{}", split.body)))
}

/// Adds task ids to a task file's `depends_on` (which may be a single id or a list).
pub fn add_dependencies(text: &str, ids: &[String]) -> Result<String, String> {
    let path = Path::new("task.md");
    let (deps_yaml, rest) =
        take_front_keys(path, text, &["depends_on"]).map_err(|e| e.to_string())?;
    let mut deps: Vec<String> = if deps_yaml.trim().is_empty() {
        Vec::new()
    } else {
        #[derive(Deserialize)]
        struct Deps {
            depends_on: OneOrMany,
        }
        match from_front_matter::<Deps>(&deps_yaml)
            .map_err(|e| e.to_string())?
            .depends_on
        {
            OneOrMany::One(d) => vec![d],
            OneOrMany::Many(ds) => ds,
        }
    };
    deps.extend(ids.iter().cloned());
    let mut yaml = String::from("depends_on:\n");
    for d in deps {
        let d = serde_json::to_string(&d).map_err(|e| e.to_string())?;
        yaml.push_str(&format!("  - {d}\n"));
    }
    let rest = rest
        .strip_prefix("---\n")
        .ok_or("the task has no front matter")?;
    Ok(format!("---\n{yaml}{rest}"))
}

/// Sets top-level front-matter fields in a task file's text, keeping everything else
/// (comments included) as written. Values must already be valid YAML scalars or flow
/// sequences; use [`yaml_string`] for text.
pub fn set_front_matter_fields(text: &str, fields: &[(&str, String)]) -> String {
    if fields.is_empty() {
        return text.to_string();
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (yaml, body) = match split_front_matter(Path::new(""), text) {
        Ok(Split {
            yaml: Some(yaml),
            body,
            ..
        }) => (yaml, body),
        _ => ("", text),
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut skipping = false;
    for line in yaml.lines() {
        let top_level = !line.starts_with([' ', '\t', '-']) && !line.trim().is_empty();
        if top_level {
            let key = line.split_once(':').map(|(k, _)| k.trim()).unwrap_or("");
            skipping = fields.iter().any(|(f, _)| *f == key);
        }
        if !skipping {
            kept.push(line);
        }
    }
    let mut out = String::from("---\n");
    for (key, value) in fields {
        out.push_str(&format!("{key}: {value}\n"));
    }
    for line in kept {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("---\n");
    out.push_str(body);
    out
}

/// A YAML scalar for arbitrary text: a JSON string is valid YAML.
pub fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}
