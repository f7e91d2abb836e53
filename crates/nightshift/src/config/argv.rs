//! The argv template language of agent profiles: `{placeholder}`s substituted in one pass,
//! `{{` and `}}` for literal braces. The result is an argv, never a shell string.

use std::path::Path;

const PLACEHOLDERS: [&str; 8] = [
    "prompt",
    "prompt_file",
    "task_id",
    "workdir",
    "nightshift",
    "hook_settings",
    "session_id",
    "run_dir",
];

/// The placeholders `template` uses, in order; an unknown one is an error that lists the
/// known ones.
pub(super) fn placeholder_names(template: &[String]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for arg in template {
        for piece in template_pieces(arg)? {
            if let Piece::Var(name) = piece {
                if !PLACEHOLDERS.contains(&name) {
                    return Err(format!(
                        "unknown placeholder `{{{name}}}` in `{arg}` (known: {})",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                    ));
                }
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits `a{x}b` into pieces. `{{` and `}}` are literal braces.
fn template_pieces(arg: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = arg;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{{") {
            pieces.push(Piece::Text("{"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            pieces.push(Piece::Text("}"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{arg}`"))?;
            pieces.push(Piece::Var(&r[..end]));
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['{', '}']).unwrap_or(rest.len()).max(1);
            pieces.push(Piece::Text(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(pieces)
}

/// Values for an argv template.
pub struct ArgvVars<'a> {
    pub prompt: &'a str,
    pub prompt_file: &'a Path,
    pub task_id: &'a str,
    pub workdir: &'a Path,
    pub nightshift: &'a Path,
    /// The run's hook settings file (written when the template uses it).
    pub hook_settings: &'a Path,
    /// The agent session to resume (for `resume_command`).
    pub session_id: &'a str,
    /// The run's folder, where `nightshift done` writes (for a sandbox's writable list).
    pub run_dir: &'a Path,
}

/// Expands a profile's argv template in one pass, so text inside the prompt is never
/// expanded again. The result is an argv: it is executed directly, never by a shell.
///
/// Without `{prompt}` or `{prompt_file}` the prompt is appended, unless `append_prompt` is
/// false (the prompt goes another way).
pub fn expand_argv(
    template: &[String],
    vars: &ArgvVars<'_>,
    append_prompt: bool,
) -> Result<Vec<String>, String> {
    let mut argv = Vec::with_capacity(template.len() + 1);
    let mut mentions_prompt = false;
    for arg in template {
        let mut out = String::new();
        for piece in template_pieces(arg)? {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var("prompt") => {
                    mentions_prompt = true;
                    out.push_str(vars.prompt);
                }
                Piece::Var("prompt_file") => {
                    mentions_prompt = true;
                    out.push_str(&vars.prompt_file.to_string_lossy());
                }
                Piece::Var("task_id") => out.push_str(vars.task_id),
                Piece::Var("workdir") => out.push_str(&vars.workdir.to_string_lossy()),
                Piece::Var("nightshift") => out.push_str(&vars.nightshift.to_string_lossy()),
                Piece::Var("hook_settings") => out.push_str(&vars.hook_settings.to_string_lossy()),
                Piece::Var("session_id") => out.push_str(vars.session_id),
                Piece::Var("run_dir") => out.push_str(&vars.run_dir.to_string_lossy()),
                Piece::Var(other) => return Err(format!("unknown placeholder `{{{other}}}`")),
            }
        }
        argv.push(out);
    }
    if !mentions_prompt && append_prompt {
        argv.push(vars.prompt.to_string());
    }
    Ok(argv)
}
