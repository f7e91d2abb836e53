//! The index of a finished folder (`done/.index.jsonl`, `failed/.index.jsonl`): one short
//! line per change, appended when a task is filed into the folder or moved out of it, so
//! `ls` reads the last few lines instead of every task file.
//!
//! How the index stays correct: each change happens under an exclusive `flock` on the
//! folder; after it, the writer sets the folder's mtime to a fresh, nanosecond-precise
//! stamp and appends a line that records that stamp (and the folder's file count). Any
//! change the index did not see (a daemon killed between the rename and the append, a file
//! copied in or deleted by hand) sets the folder's mtime to the kernel's time, which differs
//! from the stamp: a reader that finds the folder's mtime different from the last line's
//! stamp rebuilds the index from the folder (under the same lock), once. A stamp is read
//! back after it is set, so a filesystem with coarser timestamps still compares equal.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::task_id_of;
use crate::fsutil;

/// The index's file name in its folder (a dotfile: never a task).
pub const INDEX: &str = ".index.jsonl";

/// One line of the index.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Line {
    /// The task file's name in the folder (`<id>.md`); absent for a line that only records
    /// a stamp (after a rebuild, or a change that is no task file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// When it was filed (the file's mtime then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<Timestamp>,
    /// The file left the folder (a retry).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    gone: bool,
    /// Task files in the folder after this change.
    #[serde(default, skip_serializing_if = "is_zero")]
    count: u64,
    /// The folder's mtime (ns since the epoch) set after this change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stamp: Option<i128>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A finished task file the index lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Filed {
    pub file: String,
    pub at: Option<Timestamp>,
}

/// The last filings of a folder, newest first, and how many task files it holds.
#[derive(Debug, Default)]
pub struct Recent {
    pub filed: Vec<Filed>,
    pub total: u64,
}

/// What a change under the lock did to the folder.
pub(super) enum Change<'a> {
    /// A task file came in (by this name).
    Filed(&'a Path),
    /// A task file left.
    Gone(&'a Path),
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn folder_stamp(dir: &Path) -> io::Result<i128> {
    Ok(mtime_ns(&fs::metadata(dir)?))
}

/// The folder locked against other changes and rebuilds, until dropped.
pub(super) struct Locked {
    dir: std::path::PathBuf,
    _lock: File,
    /// The folder's file count, when its index is up to date (else a change is not
    /// recorded, and the next reader rebuilds the index).
    count: Option<u64>,
}

/// Locks `dir` (exclusive `flock`; released on drop or when the process dies) and brings
/// its index up to date first. Fails only when the lock cannot be taken.
pub(super) fn lock(dir: &Path) -> io::Result<Locked> {
    let lock = File::open(dir)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let count = match fresh(dir) {
        Ok(Some(count)) => Some(count),
        _ => rebuild(dir).ok(),
    };
    Ok(Locked {
        dir: dir.to_path_buf(),
        _lock: lock,
        count,
    })
}

impl Locked {
    /// Records a change made under the lock: a line, then the folder's new stamp.
    pub(super) fn record(self, change: Change<'_>) -> io::Result<()> {
        let Some(mut count) = self.count else {
            return Ok(());
        };
        let (path, gone) = match change {
            Change::Filed(p) => (p, false),
            Change::Gone(p) => (p, true),
        };
        let file = task_id_of(path)
            .is_some()
            .then(|| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
            })
            .flatten();
        let at = if gone || file.is_none() {
            None
        } else {
            fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| Timestamp::try_from(t).ok())
        };
        if file.is_some() {
            count = if gone {
                count.saturating_sub(1)
            } else {
                count + 1
            };
        }
        let line = Line {
            file,
            at,
            gone,
            count,
            stamp: None,
        };
        stamp_and_append(&self.dir, line)
    }
}

/// Sets the folder's mtime to now (ns), reads it back, and appends `line` with it: a crash
/// before the line leaves a stamp no line records, which readers take as stale.
fn stamp_and_append(dir: &Path, mut line: Line) -> io::Result<()> {
    File::open(dir)?.set_modified(SystemTime::now())?;
    line.stamp = Some(folder_stamp(dir)?);
    let mut text = serde_json::to_string(&line).map_err(io::Error::other)?;
    text.push('\n');
    let mut f = fsutil::private_file().append(true).open(dir.join(INDEX))?;
    f.write_all(text.as_bytes())?;
    f.sync_data()
}

/// The file count the index records, if it is up to date with its folder.
fn fresh(dir: &Path) -> io::Result<Option<u64>> {
    let last = match File::open(dir.join(INDEX)) {
        Ok(f) => TailLines::new(f)?.next().transpose()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let Some(line) = last.and_then(|b| serde_json::from_slice::<Line>(&b).ok()) else {
        return Ok(None);
    };
    Ok((line.stamp == Some(folder_stamp(dir)?)).then_some(line.count))
}

/// Writes the index again from the folder's files (by filing time), under the lock.
/// Returns the file count.
fn rebuild(dir: &Path) -> io::Result<u64> {
    let files = listed(dir)?;
    let mut text = String::with_capacity(files.len() * 64);
    for (at, file) in &files {
        let line = Line {
            file: Some(file.clone()),
            at: *at,
            ..Line::default()
        };
        text.push_str(&serde_json::to_string(&line).map_err(io::Error::other)?);
        text.push('\n');
    }
    fsutil::write_atomic(&dir.join(INDEX), text.as_bytes(), 0o600)?;
    let count = files.len() as u64;
    stamp_and_append(
        dir,
        Line {
            count,
            ..Line::default()
        },
    )?;
    Ok(count)
}

/// The folder's task files with their filing times, oldest first.
fn listed(dir: &Path) -> io::Result<Vec<(Option<Timestamp>, String)>> {
    let mut files: Vec<(Option<Timestamp>, String)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if task_id_of(&path).is_none() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let at = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| Timestamp::try_from(t).ok());
        files.push((at, name.to_string()));
    }
    files.sort();
    Ok(files)
}

/// The last `limit` task files filed into `dir` (at or after `since`), newest first, from
/// the index's tail; rebuilds the index first when it is missing or stale.
pub fn recent(dir: &Path, limit: usize, since: Option<Timestamp>) -> io::Result<Recent> {
    if !dir.is_dir() {
        return Ok(Recent::default());
    }
    let total = fresh(dir)
        .ok()
        .flatten()
        .or_else(|| lock(dir).ok().and_then(|l| l.count));
    let index = File::open(dir.join(INDEX));
    let (Some(total), Ok(index)) = (total, index) else {
        // Not rebuilt (a read-only home, a full disk): the folder itself, this once.
        return from_folder(dir, limit, since);
    };
    let mut out = Recent {
        filed: Vec::new(),
        total,
    };
    let mut seen = HashSet::new();
    for raw in TailLines::new(index)? {
        if out.filed.len() >= limit {
            break;
        }
        // A torn or foreign line is skipped: the folder, not the index, is the truth.
        let Ok(line) = serde_json::from_slice::<Line>(&raw?) else {
            continue;
        };
        let Some(file) = line.file else { continue };
        if let (Some(since), Some(at)) = (since, line.at)
            && at < since
        {
            break;
        }
        // The newest line of a file is its state: a file retried away is not listed.
        if seen.insert(file.clone()) && !line.gone {
            out.filed.push(Filed { file, at: line.at });
        }
    }
    Ok(out)
}

/// [`recent`] without the index: every file of the folder looked at.
fn from_folder(dir: &Path, limit: usize, since: Option<Timestamp>) -> io::Result<Recent> {
    let files = listed(dir)?;
    let total = files.len() as u64;
    let filed = files
        .into_iter()
        .rev()
        .take_while(|(at, _)| since.is_none_or(|s| at.is_none_or(|at| at >= s)))
        .take(limit)
        .map(|(at, file)| Filed { file, at })
        .collect();
    Ok(Recent { filed, total })
}

/// Reads a file's lines from the end, in large blocks: the last lines of a long history
/// cost a read of the last block, not of the whole file. Lines come without their `\n`.
pub struct TailLines {
    file: File,
    /// Bytes of the file not yet read (everything before `pos`).
    pos: u64,
    /// Read but not yet returned: a partial line at its start.
    buf: Vec<u8>,
    block: usize,
}

/// A block holds about a hundred index lines: `ls` reads one or two per folder.
const BLOCK: usize = 8 * 1024;

impl TailLines {
    pub fn new(mut file: File) -> io::Result<TailLines> {
        let pos = file.seek(SeekFrom::End(0))?;
        Ok(TailLines {
            file,
            pos,
            buf: Vec::new(),
            block: BLOCK,
        })
    }

    #[cfg(test)]
    fn with_block(mut self, block: usize) -> TailLines {
        self.block = block;
        self
    }

    fn read_block(&mut self) -> io::Result<()> {
        let take = (self.block as u64).min(self.pos);
        self.pos -= take;
        self.file.seek(SeekFrom::Start(self.pos))?;
        let mut block = vec![0; take as usize];
        self.file.read_exact(&mut block)?;
        block.extend_from_slice(&self.buf);
        self.buf = block;
        Ok(())
    }
}

impl Iterator for TailLines {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // The file's last `\n` ends the last line: drop it once.
            if self.pos == 0 && self.buf.is_empty() {
                return None;
            }
            let body = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            if let Some(cut) = body.iter().rposition(|&b| b == b'\n') {
                let line = body[cut + 1..].to_vec();
                self.buf.truncate(cut + 1);
                if line.is_empty() {
                    continue;
                }
                return Some(Ok(line));
            }
            if self.pos == 0 {
                let line = std::mem::take(&mut self.buf);
                let line = line.strip_suffix(b"\n").unwrap_or(&line).to_vec();
                if line.is_empty() {
                    return None;
                }
                return Some(Ok(line));
            }
            if let Err(e) = self.read_block() {
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, block: usize) -> Vec<String> {
        let dir = tempfile::tempdir().expect("test io");
        let path = dir.path().join("f");
        fs::write(&path, text).expect("test io");
        let f = File::open(&path).expect("test io");
        TailLines::new(f)
            .expect("test io")
            .with_block(block)
            .map(|l| String::from_utf8(l.expect("test io")).unwrap_or_default())
            .collect()
    }

    #[test]
    fn tail_lines_come_newest_first_across_block_edges() {
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let want: Vec<String> = (0..50).rev().map(|i| format!("line {i}")).collect();
        for block in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(lines(&text, block), want, "block {block}");
        }
    }

    #[test]
    fn tail_lines_handle_no_final_newline_blank_lines_and_empty_files() {
        assert_eq!(lines("a\n\nb", 2), ["b", "a"]);
        assert_eq!(lines("", 4), Vec::<String>::new());
        assert_eq!(lines("\n", 4), Vec::<String>::new());
        assert_eq!(lines("only", 3), ["only"]);
    }

    #[test]
    fn tail_reading_reads_only_the_end_of_a_long_file() {
        let dir = tempfile::tempdir().expect("test io");
        let path = dir.path().join("f");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, &text).expect("test io");
        let mut tail = TailLines::new(File::open(&path).expect("test io")).expect("test io");
        let last: Vec<Vec<u8>> = tail
            .by_ref()
            .take(3)
            .map(Result::unwrap_or_default)
            .collect();
        assert_eq!(
            last,
            [
                b"line 99999".to_vec(),
                b"line 99998".to_vec(),
                b"line 99997".to_vec()
            ]
        );
        // One block read, of a file many blocks long.
        assert_eq!(tail.pos, text.len() as u64 - BLOCK as u64);
    }
}
