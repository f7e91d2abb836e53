//! `logs/daemon.log`, rotated by size by `file-rotate`, behind a guard. file-rotate panics
//! when the logs folder is gone and cannot be made again, or when a rotated file it counted
//! on was removed (`rm logs/daemon.log.1`); the panic ends the logging thread and every
//! later record is lost. The guard makes the folder itself, opens the file again when it was
//! removed, and after a failure starts over from what is on disk.

use std::fs::DirBuilder;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};

pub(super) struct RotatingLog {
    path: PathBuf,
    max_size: usize,
    files: usize,
    /// `None` until opened, and again after a failure.
    log: Option<FileRotate<AppendCount>>,
}

impl RotatingLog {
    /// `path` rotated when it passes `max_size` bytes, keeping `files` older files
    /// (`path.1` the newest). Nothing is opened before the first record.
    pub(super) fn new(path: PathBuf, max_size: u64, files: usize) -> RotatingLog {
        RotatingLog {
            path,
            // file-rotate asserts both are above zero.
            max_size: usize::try_from(max_size).unwrap_or(usize::MAX).max(1),
            files: files.max(1),
            log: None,
        }
    }

    /// The rotating file, opened again if the file (or its folder) was removed.
    fn log(&mut self) -> io::Result<&mut FileRotate<AppendCount>> {
        if std::fs::symlink_metadata(&self.path).is_err() {
            // The open handle writes into a removed file: start a new one.
            self.log = None;
            if let Some(dir) = self.path.parent() {
                DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
        }
        if self.log.is_none() {
            // Private (the log names tasks and paths), and never through a link.
            let mut open = nightshift_store::fsutil::private_file();
            open.read(true).append(true);
            let (path, files, max) = (self.path.clone(), self.files, self.max_size);
            let log = catch_unwind(move || {
                FileRotate::new(
                    path,
                    AppendCount::new(files),
                    // Whole records: one is never split across two files.
                    ContentLimit::BytesSurpassed(max),
                    Compression::None,
                    Some(open),
                )
            })
            .map_err(|_| io::Error::other("cannot open the log for rotation"))?;
            self.log = Some(log);
        }
        self.log
            .as_mut()
            .ok_or_else(|| io::Error::other("the log is not open"))
    }

    /// Runs `f` on the rotating file; a panic in it drops the file, to be opened again
    /// (and its rotated files counted again) at the next record.
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut FileRotate<AppendCount>) -> io::Result<T>,
    ) -> io::Result<T> {
        let log = self.log()?;
        match catch_unwind(AssertUnwindSafe(|| f(log))) {
            Ok(result) => result,
            Err(_) => {
                self.log = None;
                Err(io::Error::other(
                    "rotating the log failed; it is opened again",
                ))
            }
        }
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.guarded(|log| log.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.log.is_none() {
            return Ok(());
        }
        self.guarded(Write::flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn write_lines(log: &mut RotatingLog, from: usize, to: usize) {
        for i in from..to {
            // Errors are what the logging thread sees too: it drops the record.
            let _ = writeln!(log, "record {i:04} ..........");
        }
    }

    fn all_logs(dir: &std::path::Path) -> String {
        let mut text = String::new();
        for entry in fs::read_dir(dir).unwrap() {
            text += &fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        }
        text
    }

    #[test]
    fn rotates_by_size_keeping_private_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let mut log = RotatingLog::new(dir.join("daemon.log"), 100, 2);
        write_lines(&mut log, 0, 40);
        for name in ["daemon.log", "daemon.log.1", "daemon.log.2"] {
            let meta = fs::metadata(dir.join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            assert!(meta.len() < 200, "{name}: {}", meta.len());
        }
        assert!(!dir.join("daemon.log.3").exists());
    }

    #[test]
    fn a_rotated_file_removed_under_it_does_not_end_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let mut log = RotatingLog::new(dir.join("daemon.log"), 100, 3);
        write_lines(&mut log, 0, 40);
        fs::remove_file(dir.join("daemon.log.1")).unwrap();
        write_lines(&mut log, 40, 80);
        assert!(all_logs(&dir).contains("record 0079"), "{}", all_logs(&dir));
    }

    #[test]
    fn a_logs_folder_that_cannot_be_made_again_does_not_end_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let mut log = RotatingLog::new(dir.join("daemon.log"), 100, 2);
        write_lines(&mut log, 0, 10);
        fs::remove_dir_all(&dir).unwrap();
        // A file where the folder was: nothing can be logged for now.
        fs::write(&dir, "").unwrap();
        write_lines(&mut log, 10, 40);
        fs::remove_file(&dir).unwrap();
        write_lines(&mut log, 40, 42);
        let text = fs::read_to_string(dir.join("daemon.log")).unwrap();
        assert!(text.contains("record 0041"), "{text}");
    }

    #[test]
    fn a_link_in_place_of_the_log_is_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        fs::create_dir(&dir).unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        fs::write(&elsewhere, "").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("daemon.log")).unwrap();
        let mut log = RotatingLog::new(dir.join("daemon.log"), 100, 2);
        write_lines(&mut log, 0, 40);
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "");
    }
}
