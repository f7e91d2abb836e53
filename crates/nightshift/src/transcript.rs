//! Capped transcripts.
//!
//! tmux's `pipe-pane` runs `nightshift __transcript <limit> <run-dir>/transcript.log`, which
//! writes what the pane shows with a size cap, keeping the start and the most recent part:
//!
//! - `transcript.log`: the first half of the limit, then a marker line saying how many bytes
//!   of output were skipped there (rewritten in place as the count grows);
//! - `transcript.1.log`, `transcript.2.log`, …: the recent output, a quarter of the limit
//!   each; only the last two are kept.
//!
//! Read in that order, the files are the output with a gap in the middle: at most the limit
//! plus the marker line. [`Follower`] reads them that way as they grow (the daemon, `logs`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The default cap of one attempt's transcript.
pub const DEFAULT_LIMIT: u64 = 50_000_000;

/// The smallest cap that still keeps a useful start and end.
pub const MIN_LIMIT: u64 = 64 * 1024;

/// How much is read from the pane per system call.
const BUF: usize = 256 * 1024;

/// The file of segment `n` of the transcript at `base` (`n` = 0 is `base` itself):
/// `transcript.log` → `transcript.3.log`.
pub fn segment(base: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = match (stem, base.extension()) {
        (Some(stem), Some(ext)) => format!("{stem}.{n}.{}", ext.to_string_lossy()),
        (Some(stem), None) => format!("{stem}.{n}"),
        _ => format!("{n}"),
    };
    base.with_file_name(name)
}

/// Which segment of the transcript at `base` a file name is, if it is one.
pub fn segment_of(base: &Path, name: &str) -> Option<u32> {
    let base_name = base.file_name()?.to_str()?;
    if name == base_name {
        return Some(0);
    }
    let stem = base.file_stem()?.to_str()?;
    let rest = name.strip_prefix(stem)?.strip_prefix('.')?;
    let n = match base.extension().and_then(|e| e.to_str()) {
        Some(ext) => rest.strip_suffix(ext)?.strip_suffix('.')?,
        None => rest,
    };
    n.parse().ok().filter(|n| *n > 0)
}

/// The segments of a transcript that exist, in order.
pub fn segments(base: &Path) -> Vec<u32> {
    let Some(dir) = base.parent() else {
        return Vec::new();
    };
    let mut found: Vec<u32> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| segment_of(base, e.file_name().to_str()?))
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    found
}

/// Parses a size: bytes, or a number with `KB`/`MB`/`GB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB` (powers of 1024), e.g. `"50MB"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{text}` is not a size (e.g. \"50MB\", \"512KiB\", 1000000)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// A size in config: a string (`"50MB"`) or a number of bytes.
pub fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Bytes(u64),
        Text(String),
    }
    match <Repr as serde::Deserialize>::deserialize(d)? {
        Repr::Bytes(n) => Ok(n),
        Repr::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

pub fn ser_size<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*n)
}

/// Writes the pane's output from `input` to the transcript at `base`, capped at `limit`.
/// Returns at the end of the input. A write that fails (a full disk) loses that output, not
/// the pipe: tmux must never block on a stalled transcript.
pub fn write(base: &Path, limit: u64, mut input: impl Read) -> io::Result<()> {
    let mut w = Writer::open(base, limit.max(MIN_LIMIT))?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write(&buf[..n]);
    }
}

struct Writer {
    base: PathBuf,
    head: File,
    head_len: u64,
    head_max: u64,
    /// Where the marker line starts, once the head is full.
    marker_at: Option<u64>,
    limit: u64,
    skipped: u64,
    seg: u32,
    seg_file: Option<File>,
    seg_len: u64,
    seg_max: u64,
}

impl Writer {
    fn open(base: &Path, limit: u64) -> io::Result<Writer> {
        // Not O_APPEND: the marker line is rewritten in place.
        let mut head = nightshift_store::fsutil::private_file()
            .write(true)
            .truncate(false)
            .open(base)?;
        let head_len = head.seek(SeekFrom::End(0))?;
        let head_max = limit / 2;
        Ok(Writer {
            base: base.to_path_buf(),
            head,
            head_len,
            head_max,
            // A transcript already past its head (the pipe was reopened): go on in segments.
            marker_at: (head_len >= head_max).then_some(head_len),
            limit,
            skipped: 0,
            seg: segments(base).last().copied().unwrap_or(0),
            seg_file: None,
            seg_len: 0,
            seg_max: limit / 4,
        })
    }

    fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let Some(_) = self.marker_at else {
                let take = (self.head_max - self.head_len).min(data.len() as u64) as usize;
                if self.head.write_all(&data[..take]).is_ok() {
                    self.head_len += take as u64;
                }
                data = &data[take..];
                if self.head_len >= self.head_max {
                    self.marker_at = Some(self.head_len);
                    self.write_marker();
                }
                continue;
            };
            if self.seg_file.is_none() || self.seg_len >= self.seg_max {
                self.rotate();
            }
            let take = (self.seg_max - self.seg_len).min(data.len() as u64) as usize;
            let written = match &mut self.seg_file {
                Some(f) => f.write_all(&data[..take]).is_ok(),
                None => false,
            };
            // Lost to a failed write (a full disk): counted as skipped.
            self.seg_len += take as u64;
            if !written {
                self.skipped += take as u64;
                self.write_marker();
            }
            data = &data[take..];
        }
    }

    /// Starts the next segment; the one before the last goes, and its bytes count as
    /// skipped.
    fn rotate(&mut self) {
        self.seg += 1;
        if self.seg > 2 {
            let old = segment(&self.base, self.seg - 2);
            let len = std::fs::metadata(&old).map_or(0, |m| m.len());
            if std::fs::remove_file(&old).is_ok() {
                self.skipped += len;
                self.write_marker();
            }
        }
        self.seg_len = 0;
        self.seg_file = nightshift_store::fsutil::private_file()
            .append(true)
            .open(segment(&self.base, self.seg))
            .ok();
    }

    /// The marker line, always the same length, so it can be rewritten in place.
    fn write_marker(&mut self) {
        let Some(at) = self.marker_at else { return };
        let line = format!(
            "\n[nightshift: transcript capped at {} bytes: {:>20}{}",
            self.limit,
            self.skipped,
            String::from_utf8_lossy(MARKER_END)
        );
        let _ = self.head.write_all_at(line.as_bytes(), at);
    }
}

/// How the marker line, and so a full head, ends: the writer starts a later segment only
/// after it.
const MARKER_END: &[u8] = b" bytes of output skipped here]\n";

/// Where a [`Follower`] is: a segment and the bytes read of it. Shown as `offset` for the
/// first file and `segment:offset` after, so old records (a plain offset) still parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub segment: u32,
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.segment {
            0 => write!(f, "{}", self.offset),
            s => write!(f, "{s}:{}", self.offset),
        }
    }
}

impl std::str::FromStr for Position {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Position, Self::Err> {
        let s = s.trim();
        Ok(match s.split_once(':') {
            Some((seg, off)) => Position {
                segment: seg.parse()?,
                offset: off.parse()?,
            },
            None => Position {
                segment: 0,
                offset: s.parse()?,
            },
        })
    }
}

/// Opens a segment for reading without updating its access time where the kernel allows
/// it (the file is ours): a file being appended to would otherwise get a new atime, an
/// inode write, at every read.
fn open_without_atime(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let noatime = rustix::fs::OFlags::NOATIME.bits() as i32;
    match File::options().read(true).custom_flags(noatime).open(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(path),
        opened => opened,
    }
}

/// Reads a (capped) transcript as it grows, across its segments, each byte once. It keeps
/// the file open: a segment deleted under it is still read to its end.
#[derive(Debug)]
pub struct Follower {
    base: PathBuf,
    at: Position,
    file: Option<File>,
    /// The last bytes read of the head (segment 0): until they are the marker's end, the
    /// writer is still on the head, and no later segment is looked for (a look costs a
    /// `stat` and a folder listing at every read that finds nothing new).
    head_end: Vec<u8>,
}

impl Follower {
    pub fn new(base: &Path, at: Position) -> Follower {
        Follower {
            base: base.to_path_buf(),
            at,
            file: None,
            head_end: Vec::new(),
        }
    }

    pub fn position(&self) -> Position {
        self.at
    }

    /// Whether the writer is still on the head (segment 0) and so no later segment exists:
    /// then a short read has read everything written so far.
    pub fn writer_on_head(&self) -> bool {
        self.at.segment == 0 && !self.head_end.ends_with(MARKER_END)
    }

    /// The file being read now.
    pub fn path(&self) -> PathBuf {
        segment(&self.base, self.at.segment)
    }

    /// Appends at most `max` new bytes to `buf`; returns how many (0: nothing new yet).
    pub fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        loop {
            if self.file.is_none() {
                let path = segment(&self.base, self.at.segment);
                match open_without_atime(&path) {
                    Ok(mut f) => {
                        if f.metadata()?.len() < self.at.offset {
                            // Truncated: start over.
                            self.at.offset = 0;
                        }
                        if self.at.segment == 0 {
                            // Resumed mid-head (a restart): what was read last.
                            let from = self.at.offset.saturating_sub(MARKER_END.len() as u64);
                            let mut end = vec![0; (self.at.offset - from) as usize];
                            f.read_exact_at(&mut end, from)?;
                            self.head_end = end;
                        }
                        f.seek(SeekFrom::Start(self.at.offset))?;
                        self.file = Some(f);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Rotated away before it was read: on to the oldest still there.
                        let Some(next) = self.next_segment() else {
                            return Ok(0);
                        };
                        self.at = Position {
                            segment: next,
                            offset: 0,
                        };
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let n = self.read_current(buf, max)?;
            if n > 0 {
                return Ok(n);
            }
            // At the end of this file: the writer has moved on if a later segment exists,
            // and then this one is complete (read it to the end once more first). It leaves
            // the head only after the marker line.
            if self.at.segment == 0 && !self.head_end.ends_with(MARKER_END) {
                return Ok(0);
            }
            let Some(next) = self.next_segment() else {
                return Ok(0);
            };
            let n = self.read_current(buf, max)?;
            if n > 0 {
                // Still this segment's bytes; the switch happens on the next call.
                return Ok(n);
            }
            self.at = Position {
                segment: next,
                offset: 0,
            };
            self.file = None;
        }
    }

    fn read_current(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let Some(file) = &mut self.file else {
            return Ok(0);
        };
        let n = file.take(max as u64).read_to_end(buf)?;
        self.at.offset += n as u64;
        if self.at.segment == 0 && n > 0 {
            let keep = MARKER_END.len();
            self.head_end
                .extend_from_slice(&buf[buf.len() - n.min(keep)..]);
            let excess = self.head_end.len().saturating_sub(keep);
            self.head_end.drain(..excess);
        }
        Ok(n)
    }

    /// The first segment after the current one, if the writer has started it.
    fn next_segment(&self) -> Option<u32> {
        let next = self.at.segment + 1;
        if segment(&self.base, next).exists() {
            return Some(next);
        }
        // Gone already (rotated away): the oldest one after it.
        segments(&self.base)
            .into_iter()
            .find(|s| *s > self.at.segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let base = Path::new("/r/transcript.log");
        assert_eq!(segment(base, 0), base);
        assert_eq!(segment(base, 3), Path::new("/r/transcript.3.log"));
        assert_eq!(segment_of(base, "transcript.log"), Some(0));
        assert_eq!(segment_of(base, "transcript.12.log"), Some(12));
        assert_eq!(segment_of(base, "transcript.x.log"), None);
        assert_eq!(segment_of(base, "hooks.jsonl"), None);
    }

    /// The writer leaves the head only after its marker line: before it, a follower at the
    /// head's end does not look for later segments; after it, it goes on to them, also when
    /// it starts there (a restarted daemon).
    #[test]
    fn a_follower_looks_past_the_head_only_after_its_marker() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let base = dir.path().join("transcript.log");
        std::fs::write(&base, "head\n")?;
        std::fs::write(segment(&base, 1), "later\n")?;
        let mut f = Follower::new(&base, Position::default());
        let mut got = Vec::new();
        while f.read(&mut got, 4096)? > 0 {}
        assert_eq!(got, b"head\n", "a head without its marker is not complete");

        let mut head = b"head\n\n[nightshift: transcript capped at 1 bytes: 0".to_vec();
        head.extend_from_slice(MARKER_END);
        std::fs::write(&base, &head)?;
        let mut f = Follower::new(&base, Position::default());
        let mut got = Vec::new();
        while f.read(&mut got, 4096)? > 0 {}
        assert!(
            got.ends_with(b"]\nlater\n"),
            "{}",
            String::from_utf8_lossy(&got)
        );

        let at_end = Position {
            segment: 0,
            offset: head.len() as u64,
        };
        let mut f = Follower::new(&base, at_end);
        let mut got = Vec::new();
        while f.read(&mut got, 4096)? > 0 {}
        assert_eq!(got, b"later\n");
        Ok(())
    }

    /// A segment rotated away before the follower opened it: it goes on to the oldest one
    /// still there (it used to retry the missing one forever, hanging the daemon's loop).
    #[test]
    fn a_follower_skips_a_segment_rotated_away_before_it_was_opened() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let base = dir.path().join("transcript.log");
        std::fs::write(&base, "head\n")?;
        std::fs::write(segment(&base, 3), "latest\n")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut f = Follower::new(
                &base,
                Position {
                    segment: 1,
                    offset: 0,
                },
            );
            let mut got = Vec::new();
            let read = f.read(&mut got, 4096).map(|_| got);
            let _ = tx.send(read);
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .map_err(|_| io::Error::other("the follower never came back"))??;
        assert_eq!(got, b"latest\n");
        Ok(())
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("50MB"), Ok(50_000_000));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
    }

    #[test]
    fn positions_parse_old_and_new_forms() {
        let p: Position = "123".parse().unwrap();
        assert_eq!(
            p,
            Position {
                segment: 0,
                offset: 123
            }
        );
        let p: Position = "2:9".parse().unwrap();
        assert_eq!(p.to_string(), "2:9");
    }

    /// The capped files keep the start and the end, and a follower reading along sees a
    /// stream with a gap where the marker says.
    #[test]
    fn the_cap_keeps_the_start_and_the_end_and_a_follower_reads_each_byte_once() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("transcript.log");
        let limit = MIN_LIMIT;
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let mut follower = Follower::new(&base, Position::default());
        let mut seen = Vec::new();
        let mut w = Writer::open(&base, limit).unwrap();
        for chunk in text.as_bytes().chunks(1000) {
            w.write(chunk);
            while follower.read(&mut seen, 4096).unwrap() > 0 {}
        }
        let total: u64 = segments(&base)
            .iter()
            .map(|s| std::fs::metadata(segment(&base, *s)).unwrap().len())
            .sum();
        assert!(total <= limit + 200, "{total}");
        let mut all = Vec::new();
        let mut reader = Follower::new(&base, Position::default());
        while reader.read(&mut all, 4096).unwrap() > 0 {}
        let all = String::from_utf8(all).unwrap();
        assert!(all.starts_with("line 0\nline 1\n"));
        assert!(all.ends_with("line 19998\nline 19999\n"));
        let marker = all.lines().find(|l| l.contains("skipped here")).unwrap();
        assert!(marker.contains(" bytes of output skipped"), "{marker}");
        let n: u64 = marker
            .split_whitespace()
            .rev()
            .nth(5)
            .unwrap()
            .parse()
            .unwrap();
        let kept = all.len() as u64 - marker.len() as u64 - 2;
        assert_eq!(n + kept, text.len() as u64, "{marker}");
        // Following as it was written saw every byte of the stream, once, in order.
        let seen = String::from_utf8(seen).unwrap();
        assert!(seen.ends_with("line 19999\n"));
        assert_eq!(seen.matches("line 19999\n").count(), 1);
    }
}
