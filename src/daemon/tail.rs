//! Following a transcript as it grows, line by line.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Reads what was appended to a file since the last call.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

/// Lines longer than this are cut: a marker line is short, and a runaway line must not
/// grow memory without bound.
const MAX_LINE: usize = 64 * 1024;

/// How much of the transcript one call reads.
const CHUNK: u64 = 1024 * 1024;

impl Tail {
    pub fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Starts at `offset` (bytes already handled).
    pub fn from_offset(path: &Path, offset: u64) -> Tail {
        Tail {
            offset,
            ..Tail::new(path)
        }
    }

    /// How far it has read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// New complete lines (split on `\n` or `\r`, as terminals redraw with `\r`), from at
    /// most one chunk of the file; call again until it returns nothing. With `flush`, an
    /// unterminated last line is returned too (the writer is gone).
    pub fn read_lines(&mut self, flush: bool) -> io::Result<Vec<String>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated: start over.
            self.offset = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.offset))?;
        // At most a chunk per call: after a restart the transcript may be huge.
        let mut buf = Vec::new();
        file.take((len - self.offset).min(CHUNK))
            .read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        let more = self.offset < len;
        let flush = flush && !more;
        let mut lines = Vec::new();
        for &b in &buf {
            if b == b'\n' || b == b'\r' {
                if !self.partial.is_empty() {
                    lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                    self.partial.clear();
                }
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        if flush && !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
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
