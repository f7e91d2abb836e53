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
        }
    }

    /// How far it has read.
    pub(super) fn position(&self) -> Position {
        self.follower.position()
    }

    /// New complete lines (split on `\n` or `\r`, as terminals redraw with `\r`), from at
    /// most one chunk of the file; call again until it returns nothing. With `flush`, an
    /// unterminated last line is returned too (the writer is gone).
    pub(super) fn read_lines(&mut self, flush: bool) -> io::Result<Vec<String>> {
        let n = self.follower.read(&mut self.buf, CHUNK)?;
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(end) = self.buf[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let line = &self.buf[start..start + end];
            if !line.is_empty() {
                let line = &line[..line.len().min(MAX_LINE)];
                lines.push(String::from_utf8_lossy(line).into_owned());
            }
            start += end + 1;
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
}
