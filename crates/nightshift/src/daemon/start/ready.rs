//! Waiting, before a typed prompt is pasted, for the agent's input to be up.
//!
//! Agent UIs turn bracketed paste on (`ESC [?2004h`) when their input prompt shows. tmux
//! pastes with the brackets only then; pasted earlier, the text arrives as keystrokes, each
//! newline an Enter: Aider then sends every line as its own message, and a stray newline
//! can accept a `[Yes]` default. So the paste waits until the pane's output (the
//! transcript) has asked for bracketed paste, or a limit passes (an agent that never asks
//! for it gets the paste then).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// What an agent writes when it turns bracketed paste on.
const PASTE_ON: &[u8] = b"\x1b[?2004h";
/// How much of the transcript one poll reads, at most.
const CHUNK: u64 = 1 << 20;
const POLL: Duration = Duration::from_millis(100);

/// Returns once the transcript at `path` holds [`PASTE_ON`], or after `limit`.
pub(super) async fn wait_for_input(path: &Path, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut scan = Scan::default();
    loop {
        if scan.read_more(path) || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How far the transcript was read, and the end of it kept for a sequence split between
/// two reads.
#[derive(Default)]
struct Scan {
    offset: u64,
    carry: Vec<u8>,
}

impl Scan {
    /// Reads what was added since the last call; whether [`PASTE_ON`] has been seen.
    fn read_more(&mut self, path: &Path) -> bool {
        let Ok(mut file) = std::fs::File::open(path) else {
            return false;
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err()
            || file.take(CHUNK).read_to_end(&mut bytes).is_err()
        {
            return false;
        }
        self.offset += bytes.len() as u64;
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(&bytes);
        if window.windows(PASTE_ON.len()).any(|w| w == PASTE_ON) {
            return true;
        }
        let keep = window.len().saturating_sub(PASTE_ON.len() - 1);
        self.carry = window.split_off(keep);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_sequence_is_found_even_split_between_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transcript.log");
        let mut scan = Scan::default();
        assert!(!scan.read_more(&path), "no transcript yet");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"Aider v0.86.2\r\n\x1b[?20").unwrap();
        assert!(!scan.read_more(&path));
        file.write_all(b"04h\x1b[?25ldiff> ").unwrap();
        assert!(scan.read_more(&path));
        // Turned off is not on.
        let mut off = Scan::default();
        std::fs::write(&path, b"\x1b[?2004l plain").unwrap();
        assert!(!off.read_more(&path));
    }

    #[tokio::test]
    async fn the_wait_ends_at_the_limit_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        wait_for_input(&dir.path().join("none"), Duration::from_millis(300)).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
