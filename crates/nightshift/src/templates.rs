//! Task templates with fields of their own: schedules (`schedules/*.md`) and triggers
//! (`triggers/*.md`) are task files whose front matter also holds their own keys. Their runs
//! are named `<name>@<time>`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;

/// Splits a template file into its own fields (`F`, from the front-matter `keys`) and the task
/// file its runs get. `kind` names it in errors ("schedule", "trigger").
pub fn split<F: DeserializeOwned + Default>(
    kind: &str,
    name: &str,
    path: &Path,
    text: &str,
    keys: &[&str],
) -> Result<(F, String), String> {
    nightshift_core::task::validate_id(name).map_err(|e| format!("{}: {e}", path.display()))?;
    if name.contains('@') {
        return Err(format!(
            "{}: a {kind} name must not contain `@` (its tasks are named `{name}@<time>`)",
            path.display()
        ));
    }
    let (yaml, template) =
        nightshift_core::task::take_front_keys(path, text, keys).map_err(|e| e.to_string())?;
    let front = if yaml.trim().is_empty() {
        F::default()
    } else {
        nightshift_core::task::from_front_matter(&yaml)
            .map_err(|e| format!("{}: {e}", path.display()))?
    };
    // The template must be a valid task, named as its runs will be (as long, too).
    let run_id = slot_id(name, jiff::Timestamp::UNIX_EPOCH);
    nightshift_core::task::parse(
        &run_id,
        path,
        &template,
        crate::home::user_home().as_deref(),
    )
    .map_err(|e| e.to_string())?;
    Ok((front, template))
}

/// The task id of a schedule's slot: `<name>@<UTC time>`, e.g. `nightly@20260302T020000Z`.
pub fn slot_id(name: &str, slot: jiff::Timestamp) -> String {
    format!("{name}@{}", slot.strftime("%Y%m%dT%H%M%SZ"))
}

/// The schedule a task id belongs to, if it came from one.
pub fn schedule_of(task_id: &str) -> Option<&str> {
    task_id.split_once('@').map(|(name, _)| name)
}

/// Reads every `<name>.md` in `dir` with `parse`; files that do not parse come back as
/// errors by name, so one bad file never hides the others.
pub fn read_dir<T>(
    dir: &Path,
    parse: impl Fn(&str, &Path, &str) -> Result<T, String>,
) -> (Vec<T>, BTreeMap<String, String>) {
    let mut found = Vec::new();
    let mut errors = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (found, errors);
    };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".md"))
            .filter(|n| !n.starts_with('.'))
        else {
            continue;
        };
        match std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|text| parse(name, &path, &text))
        {
            Ok(t) => found.push(t),
            Err(e) => {
                errors.insert(name.to_string(), e);
            }
        }
    }
    (found, errors)
}
