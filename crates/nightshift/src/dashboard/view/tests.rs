use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use super::super::app::{App, Mode};
use super::super::model::Model;
use super::super::testdata;
use super::{Look, Preview, draw};

const COLOR: Look = Look {
    color: true,
    unicode: true,
};

fn render(model: &Model, app: &mut App, preview: &Preview, look: Look, w: u16, h: u16) -> Buffer {
    let mut term = match Terminal::new(TestBackend::new(w, h)) {
        Ok(t) => t,
        Err(e) => panic!("test backend: {e}"),
    };
    app.settle(model);
    if let Err(e) = term.draw(|f| draw(f, model, app, preview, &look)) {
        panic!("draw: {e}");
    }
    term.backend().buffer().clone()
}

fn text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The screen's text against `snapshots/NAME.snap`, with insta. A change fails the test
/// and leaves `NAME.snap.new` to review (`cargo insta review`, or run once with
/// `INSTA_UPDATE=always` to accept); under `CI=true` nothing is written.
fn snapshot(name: &str, buf: &Buffer) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text(buf)));
}

fn screen(lines: &[&str]) -> Preview {
    Preview {
        heading: vec![
            "fix-login".into(),
            "nightshift-fix-login".into(),
            "Enter attaches".into(),
        ],
        lines: lines.iter().map(std::string::ToString::to_string).collect(),
        live: true,
    }
}

#[test]
fn empty() {
    let buf = render(
        &testdata::empty(),
        &mut App::new(),
        &Preview::default(),
        COLOR,
        80,
        24,
    );
    snapshot("empty", &buf);
}

#[test]
fn busy() {
    let preview = screen(&[
        "> Fix the login redirect loop",
        "",
        "I found the loop in src/auth/redirect.rs.",
        "",
        "Shall I delete the old migrations? (y/n)",
        "",
        "",
    ]);
    let buf = render(&testdata::busy(), &mut App::new(), &preview, COLOR, 80, 24);
    snapshot("busy", &buf);
}

#[test]
fn attention_paused_daemon_down_plain() {
    let look = Look {
        color: false,
        unicode: false,
    };
    let mut app = App::new();
    app.selected = Some("migrate-db".into());
    let buf = render(
        &testdata::attention(),
        &mut app,
        &screen(&["cargo build"]),
        look,
        80,
        24,
    );
    snapshot("attention", &buf);
    // Plain symbols only, and no colour at all.
    for cell in buf.content() {
        assert!(cell.symbol().is_ascii(), "non-ASCII {:?}", cell.symbol());
        assert_eq!(cell.fg, Color::Reset, "a colour under NO_COLOR");
    }
}

#[test]
fn narrow() {
    let mut app = App::new();
    app.mode = Mode::Send {
        id: "fix-login".into(),
        input: "y".into(),
    };
    let buf = render(
        &testdata::busy(),
        &mut app,
        &screen(&["(y/n)"]),
        COLOR,
        50,
        12,
    );
    snapshot("narrow", &buf);
}

#[test]
fn help_and_colours() {
    let mut app = App::new();
    app.mode = Mode::Help;
    let buf = render(
        &testdata::busy(),
        &mut app,
        &Preview::default(),
        COLOR,
        80,
        24,
    );
    snapshot("help", &buf);
    // The attention group is in red; colour is on here.
    assert!(buf.content().iter().any(|c| c.fg == Color::Red));
}

#[test]
fn the_selection_scrolls_into_view() {
    let model = testdata::busy();
    let mut app = App::new();
    app.selected = Some("old-failure".into());
    let buf = render(&model, &mut app, &Preview::default(), COLOR, 80, 14);
    let shown = text(&buf);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('>') && l.contains("old-failure")),
        "{shown}"
    );
    assert!(app.scroll > 0);
}

#[test]
fn tiny() {
    // 40x10: no preview, the title still has room, and the selected row itself shows.
    let mut model = testdata::busy();
    model.rows[1].id = "a-very-long-task-identifier".into();
    let mut app = App::new();
    app.selected = Some("bump-deps".into());
    let buf = render(&model, &mut app, &Preview::default(), COLOR, 40, 10);
    snapshot("tiny", &buf);
    let shown = text(&buf);
    assert!(shown.contains("TITLE"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('>') && l.contains("bump-deps")),
        "{shown}"
    );
}

#[test]
fn text_is_cleaned_for_the_terminal() {
    let unicode = COLOR;
    assert_eq!(unicode.clean("go\tnow\u{7}"), "go now");
    assert_eq!(unicode.clean("Paris 🇫🇷 ❤\u{fe0f}"), "Paris FR ❤");
    assert_eq!(unicode.clean("修复 ok"), "修复 ok");
    let ascii = Look {
        color: true,
        unicode: false,
    };
    assert_eq!(ascii.clean("修复 tïtle"), "?? t?tle");
}

#[test]
fn a_long_line_being_typed_shows_its_end() {
    let model = testdata::busy();
    let mut app = App::new();
    app.mode = Mode::Send {
        id: "fix-login".into(),
        input: format!("{}THE-END", "x".repeat(200)),
    };
    let buf = render(&model, &mut app, &Preview::default(), COLOR, 80, 24);
    let last = text(&buf).lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("send to fix-login: ~"), "{last}");
    assert!(last.ends_with("THE-END_"), "{last}");
}

/// The daemon hint names this home when it is not the default one, and a refused reload
/// of `config.toml` is shown until it is fixed.
#[test]
fn the_header_names_the_home_and_a_refused_reload() {
    let mut model = testdata::attention();
    model.header.daemon_command = "nightshift --home /srv/night daemon".into();
    model.header.config_error = Some("line 3: expected `=`".into());
    let buf = render(&model, &mut App::new(), &Preview::default(), COLOR, 160, 24);
    let first = text(&buf).lines().next().unwrap_or_default().to_string();
    assert!(
        first.contains("run `nightshift --home /srv/night daemon`"),
        "{first}"
    );
    assert!(
        first.contains("config.toml not reloaded: line 3: expected `=`"),
        "{first}"
    );
}
