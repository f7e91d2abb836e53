//! The header line: slots, queue, the next schedule, the daemon's state.

use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

use super::super::model::{Link, Model, short};
use super::{Look, fit};

pub(super) fn draw_header(frame: &mut Frame, area: Rect, model: &Model, look: &Look) {
    let width = area.width as usize;
    // The most that fits: the next schedule and the long daemon message go first.
    let left = [(true, true), (false, true), (false, false)]
        .into_iter()
        .map(|(next, long)| header_line(model, look, next, long))
        .find(|l| l.width() <= width)
        .unwrap_or_else(|| header_line(model, look, false, false));
    let right = match &model.header.link {
        Link::Up { started_at, .. } => format!("up {}", short(model.age(*started_at))),
        Link::Down { .. } => String::new(),
    };
    let fits = left.width() + right.width() < width;
    frame.render_widget(Paragraph::new(left), area);
    if fits && !right.is_empty() {
        frame.render_widget(Paragraph::new(right).alignment(Alignment::Right), area);
    }
}

fn header_line(model: &Model, look: &Look, next: bool, long: bool) -> Line<'static> {
    let h = &model.header;
    let mut spans = vec![
        Span::styled("nightshift", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(look.dot()),
    ];
    if h.paused {
        spans.push(Span::styled(
            "PAUSED",
            look.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(look.dot()));
    }
    match &h.link {
        Link::Up {
            max_agents,
            slots_used,
            ..
        } => {
            spans.push(Span::raw(format!(
                "slots {slots_used}/{max_agents}{}queue {}",
                look.dot(),
                h.queued
            )));
            if let Some((name, at)) = h.next_schedule.as_ref().filter(|_| next) {
                let wait = std::time::Duration::try_from(at.duration_since(model.now));
                let name = fit(name, name.width().min(24), look);
                spans.push(Span::raw(format!(
                    "{}next {name} in {}",
                    look.dot(),
                    short(wait.unwrap_or_default())
                )));
            }
        }
        Link::Down { why } => {
            spans.push(Span::raw(format!("queue {}{}", h.queued, look.dot())));
            let what = match (long, why.as_str()) {
                (true, "not running") => format!(
                    "daemon down: run `{}` (retrying)",
                    look.clean(&h.daemon_command)
                ),
                (true, why) => format!("{} (retrying)", look.clean(why)),
                (false, "not running") => "daemon down (retrying)".into(),
                (false, _) => "daemon not answering (retrying)".into(),
            };
            spans.push(Span::styled(
                what,
                look.fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
    }
    if let Some(e) = &h.config_error {
        let what = if long {
            format!("{}config.toml not reloaded: {}", look.dot(), look.clean(e))
        } else {
            format!("{}config.toml not reloaded", look.dot())
        };
        spans.push(Span::styled(
            what,
            look.fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    Line::from(spans)
}
