//! Draws the model: header, grouped task list, preview of the selected agent's screen, and
//! a footer with the keys or what is being typed. Pure over its inputs, so `TestBackend`
//! snapshots pin it down.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::app::{App, Mode};
use super::model::{Group, Link, Model, Row, short};

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

    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    fn symbol(&self, row: &Row) -> &'static str {
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

    fn dot(&self) -> &'static str {
        if self.unicode { " · " } else { " | " }
    }

    fn branch_mark(&self) -> &'static str {
        if self.unicode { "└ " } else { "`- " }
    }

    fn border(&self) -> border::Set<'static> {
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

fn draw_header(frame: &mut Frame, area: Rect, model: &Model, look: &Look) {
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
                (true, "not running") => "daemon down: run `nightshift daemon` (retrying)".into(),
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
    Line::from(spans)
}

struct Columns {
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

/// `s` cut (ending in `~`) or padded to exactly `w` columns.
fn fit(s: &str, w: usize, look: &Look) -> String {
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

fn fit_right(s: &str, w: usize, look: &Look) -> String {
    if s.width() >= w {
        return fit(s, w, look);
    }
    format!("{}{s}", " ".repeat(w - s.width()))
}

/// List lines, each with the index of the visible row it belongs to, and their columns.
type ListLines = (Vec<(Line<'static>, Option<usize>)>, Columns);

fn list_lines(model: &Model, app: &App, look: &Look, width: usize) -> ListLines {
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
fn draw_list(
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

fn footer(app: &App, model: &Model, look: &Look, width: u16) -> Line<'static> {
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

fn draw_help(frame: &mut Frame, area: Rect, look: &Look) {
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

#[cfg(test)]
mod tests;
