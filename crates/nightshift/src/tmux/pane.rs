//! What goes into a pane (typed lines, bracketed pastes, Enter) and what comes out
//! (captures of the screen).

use std::ffi::OsString;

use nightshift_core::delivery::clean_typed;

use super::{Tmux, TmuxError, exact_pane};

impl Tmux {
    /// Types `text` literally into the session's pane, then presses Enter. The pause lets
    /// agent UIs that debounce input take the text before the Enter. Control sequences are
    /// taken out first ([`clean_typed`]): an ESC typed into an agent UI interrupts it, and a
    /// sequence could steer the terminal. Returns how many were taken out.
    pub async fn send_line(&self, name: &str, text: &str) -> Result<usize, TmuxError> {
        let target = exact_pane(name);
        let cleaned = clean_typed(text);
        if !cleaned.text.is_empty() {
            self.run(
                "send-keys",
                &[
                    "send-keys".into(),
                    "-t".into(),
                    target.clone().into(),
                    "-l".into(),
                    "--".into(),
                    cleaned.text.into(),
                ],
            )
            .await?;
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
        self.run(
            "send-keys",
            &[
                "send-keys".into(),
                "-t".into(),
                target.into(),
                "Enter".into(),
            ],
        )
        .await?;
        Ok(cleaned.removed)
    }

    /// Pastes `text` into the session's pane as one bracketed paste (so its newlines do not
    /// submit it line by line), waits, then presses Enter: agent UIs drop an Enter that
    /// comes too soon after a paste. Control sequences are taken out first
    /// ([`clean_typed`]), so that nothing in the text can end the paste early and be read
    /// as keystrokes; returns how many were. The text reaches tmux on the stdin of
    /// `load-buffer -`, never in an argument, so its size has no limit but memory.
    pub async fn paste_line(&self, name: &str, text: &str) -> Result<usize, TmuxError> {
        let removed = self.paste(name, text).await?;
        self.press_enter_after_paste(name).await?;
        Ok(removed)
    }

    /// The first half of [`Tmux::paste_line`]: the cleaned text as one bracketed paste, no
    /// Enter. Returns how many control sequences were taken out.
    pub async fn paste(&self, name: &str, text: &str) -> Result<usize, TmuxError> {
        let target = exact_pane(name);
        let buffer = format!("nightshift-{name}");
        let cleaned = clean_typed(text);
        let load: Vec<OsString> = vec![
            "load-buffer".into(),
            "-b".into(),
            buffer.clone().into(),
            "-".into(),
        ];
        self.run_with_input("load-buffer", &load, cleaned.text.into_bytes())
            .await?;
        self.run(
            "paste-buffer",
            &[
                "paste-buffer".into(),
                "-p".into(),
                "-d".into(),
                "-b".into(),
                buffer.into(),
                "-t".into(),
                target.into(),
            ],
        )
        .await?;
        Ok(cleaned.removed)
    }

    /// The second half of [`Tmux::paste_line`]: a pause (agent UIs drop an Enter that
    /// comes too soon after a paste), then Enter.
    pub async fn press_enter_after_paste(&self, name: &str) -> Result<(), TmuxError> {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        self.run(
            "send-keys",
            &[
                "send-keys".into(),
                "-t".into(),
                exact_pane(name).into(),
                "Enter".into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// The visible screen of the session's pane, for the waiting-for-input signal.
    pub async fn capture(&self, name: &str) -> Result<String, TmuxError> {
        let args: Vec<OsString> = vec![
            "capture-pane".into(),
            "-p".into(),
            "-J".into(),
            "-t".into(),
            exact_pane(name).into(),
        ];
        self.run("capture-pane", &args).await
    }
}
