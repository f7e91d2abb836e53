//! Following a transcript as it grows, line by line: each byte is read once, in large
//! reads into one reused buffer, across the capped transcript's segments
//! ([`crate::transcript`]).

use std::io;
use std::path::Path;

use crate::transcript::{Follower, Position};

/// Reads what was appended to a file since the last call.
#[derive(Debug)]
pub(super) struct Tail {
    follower: Follower,
    /// The bytes read and not yet returned as lines (an unfinished line at the end).
    buf: Vec<u8>,
    /// The last read reached the end of what was written: another read now finds nothing
    /// (a later write sends a new change). Known only while the writer is on the head.
    at_end: bool,
}

/// Lines longer than this are cut: a marker line is short, and a runaway line must not
/// grow memory without bound.
const MAX_LINE: usize = 64 * 1024;

/// How much of the transcript one call reads.
const CHUNK: usize = 1024 * 1024;

impl Tail {
    pub(super) fn new(path: &Path) -> Tail {
        Tail::from_position(path, Position::default())
    }

    /// Starts at `at` (bytes already handled).
    pub(super) fn from_position(path: &Path, at: Position) -> Tail {
        Tail {
            follower: Follower::new(path, at),
            buf: Vec::with_capacity(CHUNK),
            at_end: false,
        }
    }

    /// Whether the last read reached the end of the file, so no read is needed until the
    /// file changes again.
    pub(super) fn at_end(&self) -> bool {
        self.at_end
    }

    /// How far it has read.
    pub(super) fn position(&self) -> Position {
        self.follower.position()
    }

    /// New complete lines (split on `\n` or `\r`, as terminals redraw with `\r`, and at a
    /// cursor move to a row, as full-screen UIs such as Codex's draw a line with no newline
    /// at all), from at most one chunk of the file; call again until it returns nothing.
    /// With `flush`, an unterminated last line is returned too (the writer is gone).
    pub(super) fn read_lines(&mut self, flush: bool) -> io::Result<Vec<String>> {
        let n = self.follower.read(&mut self.buf, CHUNK)?;
        // Past the head, the rest may be in the next segment: only a read that finds nothing
        // says so there.
        self.at_end = !flush && n < CHUNK && self.follower.writer_on_head();
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some((end, next)) = line_end(&self.buf[start..]) {
            let line = &self.buf[start..start + end];
            if !line.is_empty() {
                let line = &line[..line.len().min(MAX_LINE)];
                lines.push(String::from_utf8_lossy(line).into_owned());
            }
            start += next;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            // A runaway line: keep its start, drop the rest until its end.
            self.buf.truncate(MAX_LINE);
        }
        let flush = flush && n < CHUNK;
        if flush && !self.buf.is_empty() {
            lines.push(String::from_utf8_lossy(&self.buf).into_owned());
            self.buf.clear();
        }
        Ok(lines)
    }
}

/// Where the first line in `buf` ends, and where the next begins: at `\n`, `\r`, or a
/// cursor-position sequence (`ESC [ row ; col H`). `None` until one has arrived whole.
fn line_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(at) = buf[i..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r' || b == 0x1b)
    {
        let at = i + at;
        if buf[at] != 0x1b {
            return Some((at, at + 1));
        }
        // ESC [ digits and semicolons, then the final byte.
        if buf.get(at + 1) != Some(&b'[') {
            i = at + 1;
            continue;
        }
        let params = buf[at + 2..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b';')
            .count();
        match buf.get(at + 2 + params) {
            Some(b'H' | b'f') => return Some((at, at + 3 + params)),
            Some(_) => i = at + 2 + params,
            // Not all here yet: the line is not known to end.
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn returns_only_new_complete_lines() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.log");
        let mut tail = Tail::new(&path);
        assert!(tail.read_lines(false)?.is_empty(), "missing file is empty");
        let mut f = std::fs::File::create(&path)?;
        f.write_all(b"one\r\ntw")?;
        assert_eq!(tail.read_lines(false)?, vec!["one"]);
        f.write_all(b"o\nthree")?;
        assert_eq!(tail.read_lines(false)?, vec!["two"]);
        assert_eq!(tail.read_lines(true)?, vec!["three"]);
        assert!(tail.read_lines(true)?.is_empty());
        Ok(())
    }

    #[test]
    fn a_short_read_of_the_head_is_its_end() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.log");
        let mut tail = Tail::new(&path);
        let mut f = std::fs::File::create(&path)?;
        f.write_all(b"one\ntwo")?;
        assert_eq!(tail.read_lines(false)?, vec!["one"]);
        assert!(tail.at_end(), "everything written was read");
        f.write_all(b"\n")?;
        assert_eq!(tail.read_lines(false)?, vec!["two"]);
        assert!(tail.at_end());
        Ok(())
    }

    #[test]
    fn a_cursor_move_to_a_row_ends_a_line() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.log");
        let mut tail = Tail::new(&path);
        let mut f = std::fs::File::create(&path)?;
        // Codex draws its error line between two cursor moves, with no newline.
        f.write_all("\x1b[5;1H\x1b[1m■ Quota exceeded.\x1b[0m\x1b[6;1Hnext\x1b[7".as_bytes())?;
        assert_eq!(
            tail.read_lines(false)?,
            vec!["\x1b[1m■ Quota exceeded.\x1b[0m"]
        );
        f.write_all(b";1Hlast\n")?;
        assert_eq!(tail.read_lines(false)?, vec!["next", "last"]);
        Ok(())
    }
}
