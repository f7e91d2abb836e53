//! Small durable-file helpers: the folder store's correctness rests on these.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one:
/// write a temporary file in the same directory, fsync it, rename it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    staged(path, bytes, mode)?
        .persist(path)
        .map_err(|e| e.error)?;
    Ok(())
}

/// Like [`write_atomic`] but fails with `AlreadyExists` instead of replacing `path`.
pub fn write_new_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    staged(path, bytes, mode)?
        .persist_noclobber(path)
        .map_err(|e| e.error)?;
    Ok(())
}

/// `bytes` in a synced temporary file next to `path`, ready to be renamed into place.
fn staged(path: &Path, bytes: &[u8], mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // Exactly `mode`, whatever the umask: the home's files are 0600 even for a caller that
    // never set one.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Makes a rename or create in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to` unless `to` exists. Returns `Ok(false)` when `from` is gone
/// (someone else moved it first), which is how claims stay exclusive.
pub fn move_noclobber(from: &Path, to: &Path) -> io::Result<bool> {
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(true),
        // Only a missing source means "someone else moved it"; a missing destination folder
        // is an error.
        Err(rustix::io::Errno::NOENT) if !from.exists() => Ok(false),
        // Filesystems without RENAME_NOREPLACE: check, then rename. The window is tiny and
        // only the daemon moves files out of running/.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if to.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} already exists", to.display()),
                ));
            }
            match fs::rename(from, to) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !from.exists() => Ok(false),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads a regular file, refusing a symlink (`ELOOP`) and anything that is not a regular
/// file (a FIFO would block the reader).
pub fn read_not_through_link(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// How nightshift opens a file it writes in the home: created 0600 if missing, and never
/// through a symlink (`ELOOP`). Add the access (`append`, `write`).
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    options
}

/// Appends one line to a file, creating it with `mode` if needed; never through a symlink.
pub fn append_line(path: &Path, line: &str, mode: u32) -> io::Result<()> {
    let mut f = private_file().append(true).mode(mode).open(path)?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// Creates `path` as an empty 0600 file if it does not exist, and makes an existing one
/// 0600; never through a symlink.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    let file = private_file().append(true).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

/// Creates `dir` (and parents) and sets it to exactly `mode`.
pub fn create_private_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Whether a write failed because the disk (or the user's quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// The bytes an unprivileged user can still write on the file system holding `path`.
pub fn space_available(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_noclobber_refuses_to_replace_and_reports_vanished_source() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, "a")?;
        fs::write(&b, "b")?;
        assert!(move_noclobber(&a, &b).is_err());
        assert_eq!(fs::read_to_string(&b)?, "b");
        fs::remove_file(&b)?;
        assert!(move_noclobber(&a, &b)?);
        assert!(!move_noclobber(&a, &b)?, "source is gone now");
        Ok(())
    }

    #[test]
    fn create_private_file_never_follows_a_symlink() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("target");
        fs::write(&target, "keep")?;
        let link = dir.path().join("transcript.log");
        std::os::unix::fs::symlink(&target, &link)?;
        assert!(create_private_file(&link).is_err());
        let plain = dir.path().join("plain.log");
        create_private_file(&plain)?;
        assert_eq!(fs::metadata(&plain)?.permissions().mode() & 0o777, 0o600);
        Ok(())
    }

    #[test]
    fn write_new_atomic_does_not_overwrite() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("x");
        write_new_atomic(&p, b"one", 0o600)?;
        assert!(write_new_atomic(&p, b"two", 0o600).is_err());
        assert_eq!(fs::read(&p)?, b"one");
        write_atomic(&p, b"three", 0o600)?;
        assert_eq!(fs::read(&p)?, b"three");
        assert_eq!(fs::metadata(&p)?.permissions().mode() & 0o777, 0o600);
        Ok(())
    }
}
