//! Taking the terminal over (raw mode, alternate screen) and giving it back, also on a
//! panic and around programs that need it (tmux attach, the editor).

use std::io::{self, Stdout, stdout};

use crossterm::cursor::{Hide, Show};
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::execute;
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

pub fn take() -> io::Result<Term> {
    // Put the terminal back before a panic message is printed, or it would be unreadable.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = give_back();
        previous(info);
    }));
    enter()?;
    Terminal::new(CrosstermBackend::new(stdout()))
}

fn enter() -> io::Result<()> {
    enable_raw_mode()?;
    // A paste arrives as one event, so pasted text never runs as keys.
    let screen = execute!(
        stdout(),
        EnterAlternateScreen,
        EnableBracketedPaste,
        Clear(ClearType::All),
        Hide
    );
    if screen.is_err() {
        let _ = give_back();
    }
    screen
}

pub fn give_back() -> io::Result<()> {
    let screen = execute!(stdout(), DisableBracketedPaste, LeaveAlternateScreen, Show);
    disable_raw_mode()?;
    screen
}

/// Runs `f` with the terminal as the user's own, then takes it back and redraws all.
pub fn lend<T>(term: &mut Term, f: impl FnOnce() -> T) -> io::Result<T> {
    give_back()?;
    let out = f();
    enter()?;
    // A fresh terminal draws every cell. (`Terminal::clear` would ask the terminal for the
    // cursor position, and that answer can be lost to the key reader.)
    *term = Terminal::new(CrosstermBackend::new(stdout()))?;
    Ok(out)
}
