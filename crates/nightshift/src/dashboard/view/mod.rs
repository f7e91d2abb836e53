//! Draws the model: header, grouped task list, preview of the selected agent's screen, and
//! a footer with the keys or what is being typed. Pure over its inputs, so `TestBackend`
//! snapshots pin it down (`tests.rs`, stored by `insta` in `snapshots/`).

mod footer;
mod header;
mod list;
mod look;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::app::{App, Mode};
use super::model::Model;

use footer::{draw_help, footer};
use header::draw_header;
use list::{draw_list, list_lines};
pub use look::Look;

/// What the preview pane shows for the selected task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preview {
    /// Parts of the title line, joined with a separator.
    pub heading: Vec<String>,
    pub lines: Vec<String>,
    /// A live screen: its bottom matters most, so it is shown bottom-aligned.
    pub live: bool,
}

pub fn draw(frame: &mut Frame, model: &Model, app: &mut App, preview: &Preview, look: &Look) {
    let area = frame.area();
    let (lines, cols) = list_lines(model, app, look, area.width as usize);
    // The list (with its column heading) gets what it needs; the preview the rest, within
    // bounds.
    let preview_height = if area.height >= 14 {
        let body = area.height - 2;
        let wanted = u16::try_from(lines.len() + 1).unwrap_or(u16::MAX);
        body.saturating_sub(wanted).clamp(7, body * 3 / 5)
    } else {
        0
    };
    let footer = footer(app, model, look, area.width);
    // A long message (a path, an error) wraps onto up to three lines rather than being cut.
    let footer_height = u16::try_from(footer.width().div_ceil(usize::from(area.width.max(1))))
        .unwrap_or(1)
        .clamp(1, 3);
    let [top, list, pane, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(preview_height),
        Constraint::Length(footer_height),
    ])
    .areas(area);
    draw_header(frame, top, model, look);
    draw_list(frame, list, (lines, cols), model, app, look);
    if preview_height > 0 {
        draw_preview(frame, pane, preview, look);
    }
    frame.render_widget(Paragraph::new(footer).wrap(Wrap { trim: false }), bottom);
    if app.mode == Mode::Help {
        draw_help(frame, area, look);
    }
}

fn draw_preview(frame: &mut Frame, area: Rect, preview: &Preview, look: &Look) {
    let mut block = Block::new().borders(Borders::TOP).border_set(look.border());
    if !preview.heading.is_empty() {
        block = block.title(Span::styled(
            format!(" {} ", look.clean(&preview.heading.join(look.dot()))),
            Style::new().add_modifier(Modifier::BOLD),
        ));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines: Vec<&str> = preview.lines.iter().map(String::as_str).collect();
    if preview.live {
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        let skip = lines.len().saturating_sub(inner.height as usize);
        lines.drain(..skip);
    }
    let text: Vec<Line> = lines
        .into_iter()
        .map(|l| Line::raw(look.clean(l)))
        .collect();
    frame.render_widget(Paragraph::new(text), inner);
}

/// `s` cut (ending in `~`) or padded to exactly `w` columns.
pub(super) fn fit(s: &str, w: usize, look: &Look) -> String {
    let s = &look.clean(s);
    let mut out = String::new();
    let mut used = 0;
    let cut = s.width() > w;
    let room = if cut { w.saturating_sub(1) } else { w };
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if used + cw > room {
            break;
        }
        out.push(c);
        used += cw;
    }
    if cut && w > 0 {
        out.push('~');
        used += 1;
    }
    out.push_str(&" ".repeat(w.saturating_sub(used)));
    out
}

pub(super) fn fit_right(s: &str, w: usize, look: &Look) -> String {
    if s.width() >= w {
        return fit(s, w, look);
    }
    format!("{}{s}", " ".repeat(w - s.width()))
}

#[cfg(test)]
mod tests;
