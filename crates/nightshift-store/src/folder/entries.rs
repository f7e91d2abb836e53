//! Reading a folder's entries safely: which names are task files, which entries are not
//! plain files, and the names rejected and finished files get.

use std::fs;
use std::path::{Path, PathBuf};

pub(crate) fn line_col(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() as u32 + 1;
    (line, column)
}

/// The task id of a file in a state folder, if it is a task file at all. Dotfiles and other
/// extensions are left alone: editors and `add` use them for files in progress.
pub fn task_id_of(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    name.strip_suffix(".md").filter(|s| !s.is_empty())
}

/// Whether a directory entry is named like a task file (`*.md`, not hidden), whatever the
/// encoding of its name.
pub(crate) fn looks_like_task_file(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    !bytes.starts_with(b".") && bytes.len() > 3 && bytes.ends_with(b".md")
}

/// A name that is not UTF-8 as text: the bytes that are not UTF-8 become `%XX`.
pub(crate) fn escaped_name(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why an entry of `queue/` (looked at without following links) cannot be a task file:
/// nightshift reads and files only plain files with no other name, so it never changes a
/// file outside its home.
pub fn not_a_plain_file(meta: &fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    let kind = meta.file_type();
    if kind.is_symlink() {
        Some(
            "is a symbolic link; nightshift does not follow links in the queue (copy the file in instead)",
        )
    } else if kind.is_dir() {
        Some("is a directory, not a task file")
    } else if !kind.is_file() {
        Some("is not a regular file (a FIFO, socket or device), not a task file")
    } else if meta.nlink() > 1 {
        Some(
            "is a hard link to a file with other names; nightshift does not change files through links (copy the file in instead)",
        )
    } else {
        None
    }
}

/// Where the error of a rejected file is written: next to it.
pub fn error_file(rejected: &Path) -> PathBuf {
    match rejected.extension().and_then(|e| e.to_str()) {
        Some("md") => rejected.with_extension("error.txt"),
        _ => {
            let mut name = rejected.as_os_str().to_owned();
            name.push(".error.txt");
            PathBuf::from(name)
        }
    }
}

/// A rejected file's name cut to [`nightshift_core::task_id::MAX_LEN`] bytes (at a character
/// boundary): a name too long to be an id, or made longer by `%XX` escapes, must still fit
/// in failed/ with its `.error.txt`. The error names the original file.
pub(crate) fn within_name_limit(id: &str) -> &str {
    let mut end = id.len().min(nightshift_core::task_id::MAX_LEN);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

/// `dir/<id>.md`, or `dir/<id>.<n>.md` when that is taken: a file is never overwritten.
pub(crate) fn free_name(dir: &Path, id: &str) -> PathBuf {
    let first = dir.join(format!("{id}.md"));
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| dir.join(format!("{id}.{n}.md")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}
