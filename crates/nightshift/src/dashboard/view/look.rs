//! How the terminal may be drawn on: colours or not, Unicode or plain ASCII symbols.

use ratatui::style::{Color, Style};
use ratatui::symbols::border;

use super::super::model::{Group, Row};

/// How the terminal may be drawn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Colours are allowed (`NO_COLOR` unset, no `--no-color`).
    pub color: bool,
    /// The terminal takes Unicode symbols (a UTF-8 locale, no `--ascii`).
    pub unicode: bool,
}

impl Look {
    pub fn from_env(no_color: bool, ascii: bool) -> Look {
        // https://no-color.org: any non-empty value.
        let env_no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Look {
            color: !(no_color || env_no_color),
            unicode: !ascii && locale_is_utf8(),
        }
    }

    pub(super) fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub(super) fn symbol(&self, row: &Row) -> &'static str {
        let (unicode, ascii) = match (row.group, row.status.as_str()) {
            (Group::Attention, _) => ("!", "!"),
            (Group::Running, _) => ("●", "*"),
            (Group::Queued, "blocked" | "invalid") => ("◌", "~"),
            (Group::Queued, _) => ("○", "-"),
            (Group::Finished, _) if row.failed => ("✗", "x"),
            (Group::Finished, _) => ("✓", "+"),
        };
        if self.unicode { unicode } else { ascii }
    }

    /// Text as this terminal can show it, on one line (see [`crate::term_text`]).
    pub fn clean(&self, s: &str) -> String {
        crate::term_text::clean_line(s, self.unicode)
    }

    pub(super) fn dot(&self) -> &'static str {
        if self.unicode { " · " } else { " | " }
    }

    pub(super) fn branch_mark(&self) -> &'static str {
        if self.unicode { "└ " } else { "`- " }
    }

    pub(super) fn border(&self) -> border::Set<'static> {
        if self.unicode {
            border::PLAIN
        } else {
            border::Set {
                top_left: "+",
                top_right: "+",
                bottom_left: "+",
                bottom_right: "+",
                vertical_left: "|",
                vertical_right: "|",
                horizontal_top: "-",
                horizontal_bottom: "-",
            }
        }
    }
}

/// POSIX order: the first of LC_ALL, LC_CTYPE and LANG that is set decides.
fn locale_is_utf8() -> bool {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .is_some_and(|v| {
            let v = v.to_lowercase();
            v.contains("utf-8") || v.contains("utf8")
        })
}
