//! The footer (the keys, a message, or what is being typed) and the help that `?` lays over
//! the whole screen.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::super::app::{App, Mode};
use super::super::model::Model;
use super::Look;

/// A prompt being typed into: the end of the text and the cursor always show; the hint
/// only when there is room.
fn typing(prompt: &str, input: &str, hint: &str, width: u16, look: &Look) -> Line<'static> {
    let width = width as usize;
    let input = look.clean(input);
    let full = format!("{prompt}{input}_{hint}");
    if full.width() <= width {
        return Line::raw(full);
    }
    let room = width.saturating_sub(prompt.width() + 2);
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in input.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        tail.push(c);
    }
    let cut = tail.len() < input.chars().count();
    let tail: String = tail.into_iter().rev().collect();
    Line::raw(format!("{prompt}{}{tail}_", if cut { "~" } else { "" }))
}

pub(super) fn footer(app: &App, model: &Model, look: &Look, width: u16) -> Line<'static> {
    match &app.mode {
        Mode::Filter => {
            return typing(
                "filter: ",
                &app.filter,
                "   (Enter keeps it, Esc clears it)",
                width,
                look,
            );
        }
        Mode::Send { id, input } => {
            let prompt = format!("send to {}: ", look.clean(id));
            return typing(&prompt, input, "   (Enter sends, Esc drops)", width, look);
        }
        Mode::Confirm { id } => {
            return Line::styled(
                format!("cancel {id}? press y to cancel it, any other key to keep it"),
                look.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            );
        }
        Mode::Normal | Mode::Help => {}
    }
    if let Some(m) = &app.message {
        let style = if m.error {
            look.fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        return Line::styled(look.clean(&m.text), style);
    }
    let pause = if model.header.paused {
        "resume"
    } else {
        "pause"
    };
    let mut text = String::new();
    if !app.filter.is_empty() {
        text.push_str(&format!(
            "filter `{}` (Esc clears)  ",
            look.clean(&app.filter)
        ));
    }
    let keys = format!(
        "Enter:attach s:send a:ack c:cancel r:retry n:new p:{pause} /:filter ?:help q:quit"
    );
    if text.width() + keys.width() <= width as usize {
        text.push_str(&keys);
    } else {
        text.push_str("?:help q:quit");
    }
    Line::styled(text, Style::new().add_modifier(Modifier::DIM))
}

const HELP: &[(&str, &str)] = &[
    ("Up/Down j/k", "select a task (PgUp/PgDn, g/G: jump)"),
    (
        "Enter",
        "attach to its tmux session; detach (C-b d) returns here",
    ),
    (
        "s",
        "send a line to the agent (an empty line presses Enter)",
    ),
    ("a", "acknowledge its attention flags"),
    ("c", "cancel it (asks first)"),
    ("r", "retry a done or failed task"),
    ("n", "write a new task in $EDITOR, then queue it"),
    ("p", "pause or resume the whole queue"),
    ("/", "filter by id, title, agent, state or branch"),
    ("Esc", "clear the filter"),
    ("q", "quit (agents keep running)"),
];

pub(super) fn draw_help(frame: &mut Frame, area: Rect, look: &Look) {
    let rows = HELP.len() as u16;
    // A small terminal gets the keys without the frame, so that all of them show.
    let framed = area.height >= rows + 2 && area.width >= 60;
    let width = if framed {
        area.width.min(74)
    } else {
        area.width
    };
    let height = area.height.min(rows + if framed { 2 } else { 0 });
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let key_width = if framed { 12 } else { 8 };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {k:<key_width$}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    let mut help = Paragraph::new(lines);
    if framed {
        help = help.block(
            Block::bordered()
                .border_set(look.border())
                .title(" keys (any key closes) "),
        );
    }
    frame.render_widget(help, popup);
}
