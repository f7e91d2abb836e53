//! The task list: grouped rows under a column heading, scrolled to keep the selection.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

use super::super::app::App;
use super::super::model::{Group, Model, Row, short};
use super::{Look, fit, fit_right};

pub(super) struct Columns {
    id: usize,
    status: usize,
    title: usize,
    agent: usize,
    time: usize,
    commit: usize,
}

impl Columns {
    fn for_width(width: usize, rows: &[&Row]) -> Columns {
        // Narrow terminals keep room for the title: ids and states are cut first.
        let id = rows
            .iter()
            .map(|r| r.id.width())
            .max()
            .unwrap_or(2)
            .clamp(2, 18)
            .min((width / 4).max(4));
        let (agent, commit) = if width >= 70 { (7, 6) } else { (0, 0) };
        let time = 6;
        let status = if width >= 60 { 10 } else { 8 };
        let fixed = 3 + id + 1 + status + 1 + time + gap(agent) + gap(commit) + 1;
        Columns {
            id,
            status,
            title: width.saturating_sub(fixed),
            agent,
            time,
            commit,
        }
    }
}

fn gap(w: usize) -> usize {
    if w == 0 { 0 } else { w + 1 }
}

/// List lines, each with the index of the visible row it belongs to, and their columns.
pub(super) type ListLines = (Vec<(Line<'static>, Option<usize>)>, Columns);

pub(super) fn list_lines(model: &Model, app: &App, look: &Look, width: usize) -> ListLines {
    let (rows, hidden) = model.visible(&app.filter);
    let cols = Columns::for_width(width, &rows);
    let mut lines = Vec::new();
    let mut group = None;
    for (i, row) in rows.iter().enumerate() {
        if group != Some(row.group) {
            group = Some(row.group);
            let count = rows.iter().filter(|r| r.group == row.group).count();
            let mut heading = format!("{} ({count})", row.group.heading());
            if row.group == Group::Finished && hidden > 0 {
                heading.push_str(&format!(
                    "{}{hidden} older: nightshift ls --state done|failed",
                    look.dot()
                ));
            }
            let style = match row.group {
                Group::Attention => look.fg(Color::Red),
                _ => Style::new(),
            }
            .add_modifier(Modifier::BOLD);
            lines.push((Line::styled(heading, style), None));
        }
        let selected = app.selected.as_deref() == Some(row.id.as_str());
        for line in row_lines(row, model, &cols, look, selected) {
            lines.push((line, Some(i)));
        }
    }
    (lines, cols)
}

fn row_lines(
    row: &Row,
    model: &Model,
    cols: &Columns,
    look: &Look,
    selected: bool,
) -> Vec<Line<'static>> {
    let status_style = match row.group {
        Group::Attention => look.fg(Color::Red).add_modifier(Modifier::BOLD),
        Group::Running => look.fg(Color::Green),
        Group::Queued if row.status != "queued" => look.fg(Color::Yellow),
        Group::Queued => Style::new(),
        Group::Finished if row.failed => look.fg(Color::Red),
        Group::Finished => look.fg(Color::Green),
    };
    let time = row.since.map(|t| short(model.age(t))).unwrap_or_default();
    let commit = if !row.is_running() {
        String::new()
    } else if !row.in_git {
        "-".into()
    } else {
        row.last_commit
            .map(|t| short(model.age(t)))
            .unwrap_or_else(|| "none".into())
    };
    let mut spans = vec![
        Span::raw(if selected { ">" } else { " " }),
        Span::styled(look.symbol(row), status_style),
        Span::raw(" "),
        Span::raw(fit(&row.id, cols.id, look)),
        Span::raw(" "),
        Span::styled(fit(&row.status, cols.status, look), status_style),
        Span::raw(" "),
        Span::raw(fit(&row.title, cols.title, look)),
    ];
    if cols.agent > 0 {
        spans.push(Span::raw(" "));
        spans.push(Span::raw(fit(&row.agent, cols.agent, look)));
    }
    spans.push(Span::raw(" "));
    spans.push(Span::raw(fit_right(&time, cols.time, look)));
    if cols.commit > 0 {
        spans.push(Span::raw(" "));
        spans.push(Span::raw(fit_right(&commit, cols.commit, look)));
    }
    let highlight = |line: Line<'static>| {
        if selected {
            line.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            line
        }
    };
    let mut lines = vec![highlight(Line::from(spans))];
    // The second line of a running task: its branch and what it last said (or why it
    // needs you).
    if row.is_running() {
        let what = match row.group {
            Group::Attention => row.detail.clone(),
            _ => row.last_line.clone(),
        }
        .unwrap_or_default();
        let mut text = row.branch.clone().unwrap_or_default();
        if !text.is_empty() && !what.is_empty() {
            text.push_str(look.dot());
        }
        text.push_str(&one_line(&what));
        let indent = 3;
        let width = 3
            + cols.id
            + 1
            + cols.status
            + 1
            + cols.title
            + gap(cols.agent)
            + gap(cols.time)
            + gap(cols.commit);
        let text = fit(&text, width.saturating_sub(indent + 2), look);
        lines.push(highlight(Line::from(vec![
            Span::raw(" ".repeat(indent)),
            Span::raw(look.branch_mark()),
            Span::styled(text, Style::new().add_modifier(Modifier::DIM)),
        ])));
    }
    lines
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The list's lines drawn in `area` under a column heading, scrolled to keep the selection.
pub(super) fn draw_list(
    frame: &mut Frame,
    area: Rect,
    (lines, cols): ListLines,
    model: &Model,
    app: &mut App,
    look: &Look,
) {
    if area.height == 0 {
        return;
    }
    if model.rows.is_empty() {
        let text = vec![
            Line::raw(""),
            Line::raw("  No tasks yet."),
            Line::raw("  Press n to write one, or put a markdown file in"),
            Line::raw(format!("  {}", model.queue_dir)),
        ];
        frame.render_widget(Paragraph::new(text), area);
        return;
    }
    let mut heading = vec![
        Span::raw("   "),
        Span::raw(fit("ID", cols.id, look)),
        Span::raw(" "),
        Span::raw(fit("STATE", cols.status, look)),
        Span::raw(" "),
        Span::raw(fit("TITLE", cols.title, look)),
    ];
    if cols.agent > 0 {
        heading.push(Span::raw(format!(" {}", fit("AGENT", cols.agent, look))));
    }
    heading.push(Span::raw(format!(
        " {}",
        fit_right("TIME", cols.time, look)
    )));
    if cols.commit > 0 {
        heading.push(Span::raw(format!(
            " {}",
            fit_right("COMMIT", cols.commit, look)
        )));
    }
    let head_area = Rect { height: 1, ..area };
    frame.render_widget(
        Paragraph::new(Line::from(heading).style(Style::new().add_modifier(Modifier::DIM))),
        head_area,
    );
    let body = Rect {
        y: area.y + 1,
        height: area.height - 1,
        ..area
    };
    if lines.is_empty() {
        frame.render_widget(
            Paragraph::new(format!(
                "  nothing matches the filter `{}` (Esc clears it)",
                app.filter
            )),
            body,
        );
        return;
    }
    // Keep the selected row's lines in sight, moving the window as little as possible.
    let height = body.height as usize;
    let (rows, _) = model.visible(&app.filter);
    let selected = app
        .selected
        .as_ref()
        .and_then(|id| rows.iter().position(|r| &r.id == id));
    if let Some(sel) = selected {
        let first = lines.iter().position(|(_, r)| *r == Some(sel)).unwrap_or(0);
        let last = lines
            .iter()
            .rposition(|(_, r)| *r == Some(sel))
            .unwrap_or(first);
        // Show the group heading with the first row of a group.
        let first = if first > 0 && lines[first - 1].1.is_none() {
            first - 1
        } else {
            first
        };
        if last < height {
            // All of it fits from the top (say, after the window grew): show the top.
            app.scroll = 0;
        } else if last + 1 > app.scroll + height {
            app.scroll = last + 1 - height;
        }
        // The row's own first line wins over its detail line when both cannot show.
        if first < app.scroll || first >= app.scroll + height {
            app.scroll = first;
        }
    }
    app.scroll = app.scroll.min(lines.len().saturating_sub(height));
    let shown: Vec<Line> = lines
        .into_iter()
        .skip(app.scroll)
        .take(height)
        .map(|(l, _)| l)
        .collect();
    frame.render_widget(Paragraph::new(shown), body);
}
