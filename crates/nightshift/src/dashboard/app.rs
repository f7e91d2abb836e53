//! The dashboard's own state (selection, filter, what is being typed) and what each key
//! does to it. Plain functions: the loop carries out the returned [`Command`].

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::model::{Group, Model, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing the filter; it applies as it is typed.
    Filter,
    /// Typing a line for the agent of task `id`.
    Send {
        id: String,
        input: String,
    },
    /// Asking whether to cancel task `id`.
    Confirm {
        id: String,
    },
    Help,
}

/// Something for the loop to do outside this state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Quit,
    Attach { id: String, session: String },
    Send { id: String, text: String },
    Ack(String),
    Cancel(String),
    Retry(String),
    NewTask,
    SetPaused(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub mode: Mode,
    pub filter: String,
    /// The selected task, by id, so that it stays selected as rows move.
    pub selected: Option<String>,
    /// The first list line shown (kept by the view so the selection stays in sight).
    pub scroll: usize,
    pub message: Option<Message>,
}

const PAGE: usize = 10;

/// A key that types a character (not Ctrl-x or Alt-x).
fn is_text(key: KeyEvent) -> bool {
    !key.modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    pub fn new() -> App {
        App {
            mode: Mode::Normal,
            filter: String::new(),
            selected: None,
            scroll: 0,
            message: None,
        }
    }

    pub fn say(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: false,
        });
    }

    pub fn complain(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
        });
    }

    /// Keeps the selection on a visible row: the same task if it is still shown, else the
    /// first row.
    pub fn settle(&mut self, model: &Model) {
        let (rows, _) = model.visible(&self.filter);
        let still = self
            .selected
            .as_ref()
            .is_some_and(|id| rows.iter().any(|r| &r.id == id));
        if !still {
            self.selected = rows.first().map(|r| r.id.clone());
        }
    }

    pub fn selected_row<'m>(&self, model: &'m Model) -> Option<&'m Row> {
        model.row(self.selected.as_deref()?)
    }

    fn step_selection(&mut self, model: &Model, delta: isize) {
        let (rows, _) = model.visible(&self.filter);
        if rows.is_empty() {
            self.selected = None;
            return;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|id| rows.iter().position(|r| &r.id == id))
            .unwrap_or(0);
        let to = at.saturating_add_signed(delta).min(rows.len() - 1);
        self.selected = Some(rows[to].id.clone());
    }

    /// What a key does. Messages from the last action go away at the next key.
    pub fn on_key(&mut self, key: KeyEvent, model: &Model) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        self.message = None;
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key, model),
            Mode::Help => None,
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter => {}
                    KeyCode::Esc => self.filter.clear(),
                    code => {
                        self.mode = Mode::Filter;
                        match code {
                            KeyCode::Backspace => {
                                self.filter.pop();
                            }
                            KeyCode::Down => self.step_selection(model, 1),
                            KeyCode::Up => self.step_selection(model, -1),
                            KeyCode::Char(c) if is_text(key) => self.filter.push(c),
                            _ => {}
                        }
                    }
                }
                self.settle(model);
                None
            }
            Mode::Send { id, mut input } => match key.code {
                KeyCode::Enter => Some(Command::Send { id, text: input }),
                KeyCode::Esc => {
                    self.say("nothing sent");
                    None
                }
                code => {
                    match code {
                        KeyCode::Backspace => {
                            input.pop();
                        }
                        KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                            input.clear();
                        }
                        KeyCode::Char(c) if is_text(key) => input.push(c),
                        _ => {}
                    }
                    self.mode = Mode::Send { id, input };
                    None
                }
            },
            Mode::Confirm { id } => {
                if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                    Some(Command::Cancel(id))
                } else {
                    self.say(format!("{id} was not cancelled"));
                    None
                }
            }
        }
    }

    /// Pasted text goes only into what is being typed, one line of it; elsewhere it is
    /// dropped, so a paste can never act as keys.
    pub fn on_paste(&mut self, text: &str) {
        let line = text
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let line: String = line.chars().filter(|c| !c.is_control()).collect();
        match &mut self.mode {
            Mode::Filter => self.filter.push_str(&line),
            Mode::Send { input, .. } => input.push_str(&line),
            _ => self.say("pasted text is only taken while typing (s or /)"),
        }
    }

    fn normal_key(&mut self, key: KeyEvent, model: &Model) -> Option<Command> {
        let row = self.selected_row(model).cloned();
        match key.code {
            KeyCode::Char('q') => return Some(Command::Quit),
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Down | KeyCode::Char('j') => self.step_selection(model, 1),
            KeyCode::Up | KeyCode::Char('k') => self.step_selection(model, -1),
            KeyCode::PageDown => self.step_selection(model, PAGE as isize),
            KeyCode::PageUp => self.step_selection(model, -(PAGE as isize)),
            KeyCode::Home | KeyCode::Char('g') => self.step_selection(model, isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.step_selection(model, isize::MAX),
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('n') => return Some(Command::NewTask),
            KeyCode::Char('p') => return Some(Command::SetPaused(!model.header.paused)),
            KeyCode::Enter => {
                let row = self.need_running(row, "attach to")?;
                let session = row.session.clone()?;
                return Some(Command::Attach {
                    id: row.id,
                    session,
                });
            }
            KeyCode::Char('s') => {
                let row = self.need_running(row, "send to")?;
                self.mode = Mode::Send {
                    id: row.id,
                    input: String::new(),
                };
            }
            KeyCode::Char('a') => {
                let row = self.need_running(row, "acknowledge")?;
                if row.group == Group::Attention {
                    return Some(Command::Ack(row.id));
                }
                self.say(format!("{} needs nothing: no flag to acknowledge", row.id));
            }
            KeyCode::Char('c') => {
                let row = self.need_row(row)?;
                if row.group == Group::Finished {
                    self.complain(format!("{} has already finished", row.id));
                } else {
                    self.mode = Mode::Confirm { id: row.id };
                }
            }
            KeyCode::Char('r') => {
                let row = self.need_row(row)?;
                if row.group == Group::Finished {
                    return Some(Command::Retry(row.id));
                }
                self.complain(format!(
                    "{} is {}: only done or failed tasks can be retried",
                    row.id, row.status
                ));
            }
            _ => {}
        }
        None
    }

    fn need_row(&mut self, row: Option<Row>) -> Option<Row> {
        if row.is_none() {
            self.complain("no task selected");
        }
        row
    }

    fn need_running(&mut self, row: Option<Row>, what: &str) -> Option<Row> {
        let row = self.need_row(row)?;
        if row.is_running() {
            return Some(row);
        }
        self.complain(format!(
            "{} is {}: there is no agent to {what}",
            row.id, row.status
        ));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata;
    use super::*;

    fn key(c: char) -> KeyEvent {
        KeyEvent::from(KeyCode::Char(c))
    }

    fn code(c: KeyCode) -> KeyEvent {
        KeyEvent::from(c)
    }

    fn app_on(id: &str) -> App {
        let mut app = App::new();
        app.selected = Some(id.into());
        app
    }

    #[test]
    fn moving_stays_within_the_rows_and_follows_ids() {
        let model = testdata::busy();
        let mut app = App::new();
        app.settle(&model);
        assert_eq!(app.selected.as_deref(), Some("fix-login"));
        app.on_key(code(KeyCode::Up), &model);
        assert_eq!(app.selected.as_deref(), Some("fix-login"));
        app.on_key(key('j'), &model);
        assert_eq!(app.selected.as_deref(), Some("port-parser"));
        app.on_key(key('G'), &model);
        assert_eq!(app.selected.as_deref(), Some("old-failure"));
        app.on_key(key('g'), &model);
        assert_eq!(app.selected.as_deref(), Some("fix-login"));
    }

    #[test]
    fn actions_apply_to_the_selected_row_only_where_they_make_sense() {
        let model = testdata::busy();
        let mut app = app_on("fix-login");
        assert_eq!(
            app.on_key(code(KeyCode::Enter), &model),
            Some(Command::Attach {
                id: "fix-login".into(),
                session: crate::tmux::session_name("fix-login")
            })
        );
        assert_eq!(
            app.on_key(key('a'), &model),
            Some(Command::Ack("fix-login".into()))
        );
        assert_eq!(
            app.on_key(key('r'), &model),
            None,
            "a running task is not retried"
        );
        assert!(app.message.as_ref().is_some_and(|m| m.error));

        let mut app = app_on("write-docs");
        assert_eq!(app.on_key(code(KeyCode::Enter), &model), None);
        let msg = app.message.clone().map(|m| m.text).unwrap_or_default();
        assert!(msg.contains("no agent to attach to"), "{msg}");
        assert_eq!(app.on_key(key('s'), &model), None);
        assert_eq!(app.mode, Mode::Normal, "no typing for a queued task");

        let mut app = app_on("old-failure");
        assert_eq!(
            app.on_key(key('r'), &model),
            Some(Command::Retry("old-failure".into()))
        );
        assert_eq!(app.on_key(key('c'), &model), None);
        assert_eq!(app.mode, Mode::Normal, "finished tasks cannot be cancelled");

        let mut app = app_on("port-parser");
        assert_eq!(app.on_key(key('a'), &model), None, "no flag to acknowledge");
        assert_eq!(app.on_key(key('p'), &model), Some(Command::SetPaused(true)));
        assert_eq!(app.on_key(key('n'), &model), Some(Command::NewTask));
        assert_eq!(app.on_key(key('q'), &model), Some(Command::Quit));
    }

    #[test]
    fn send_collects_a_line_for_the_task_it_started_on() {
        let model = testdata::busy();
        let mut app = app_on("fix-login");
        assert_eq!(app.on_key(key('s'), &model), None);
        for c in "yes!".chars() {
            app.on_key(key(c), &model);
        }
        app.on_key(code(KeyCode::Backspace), &model);
        // The selection moving under it does not change where the line goes.
        app.selected = Some("port-parser".into());
        assert_eq!(
            app.on_key(code(KeyCode::Enter), &model),
            Some(Command::Send {
                id: "fix-login".into(),
                text: "yes".into()
            })
        );
        assert_eq!(app.mode, Mode::Normal);

        // An empty line is a real answer (it presses Enter); Esc sends nothing.
        app.selected = Some("fix-login".into());
        app.on_key(key('s'), &model);
        assert_eq!(
            app.on_key(code(KeyCode::Enter), &model),
            Some(Command::Send {
                id: "fix-login".into(),
                text: String::new()
            })
        );
        app.on_key(key('s'), &model);
        app.on_key(key('x'), &model);
        assert_eq!(app.on_key(code(KeyCode::Esc), &model), None);
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn cancel_needs_a_yes() {
        let model = testdata::busy();
        let mut app = app_on("port-parser");
        assert_eq!(app.on_key(key('c'), &model), None);
        assert_eq!(
            app.mode,
            Mode::Confirm {
                id: "port-parser".into()
            }
        );
        assert_eq!(
            app.on_key(key('n'), &model),
            None,
            "anything but y keeps it"
        );
        assert_eq!(app.mode, Mode::Normal);
        app.on_key(key('c'), &model);
        assert_eq!(
            app.on_key(key('y'), &model),
            Some(Command::Cancel("port-parser".into()))
        );
    }

    #[test]
    fn the_filter_narrows_as_it_is_typed_and_esc_clears_it() {
        let model = testdata::busy();
        let mut app = App::new();
        app.settle(&model);
        app.on_key(key('/'), &model);
        for c in "DOCS".chars() {
            app.on_key(key(c), &model);
        }
        assert_eq!(app.mode, Mode::Filter);
        assert_eq!(app.selected.as_deref(), Some("write-docs"));
        let (rows, _) = model.visible(&app.filter);
        assert_eq!(rows.len(), 1);
        app.on_key(code(KeyCode::Enter), &model);
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(app.filter, "DOCS", "Enter keeps the filter");
        app.on_key(code(KeyCode::Esc), &model);
        assert_eq!(app.filter, "");
    }

    #[test]
    fn a_paste_is_text_never_keys() {
        let model = testdata::busy();
        let mut app = app_on("fix-login");
        app.on_paste("c\ny\n");
        assert_eq!(app.mode, Mode::Normal, "no cancel from a paste");
        app.on_key(key('s'), &model);
        app.on_paste("yes,\r\n  go on\n");
        assert_eq!(
            app.on_key(code(KeyCode::Enter), &model),
            Some(Command::Send {
                id: "fix-login".into(),
                text: "yes, go on".into()
            })
        );
        let mut app = app_on("fix-login");
        app.on_key(key('s'), &model);
        app.on_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::ALT), &model);
        assert_eq!(
            app.mode,
            Mode::Send {
                id: "fix-login".into(),
                input: String::new()
            },
            "Alt-x types nothing"
        );
    }

    #[test]
    fn ctrl_c_quits_from_any_mode() {
        let model = testdata::busy();
        let mut app = app_on("fix-login");
        app.on_key(key('s'), &model);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c, &model), Some(Command::Quit));
    }
}
