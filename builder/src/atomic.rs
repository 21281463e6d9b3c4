//! Writes that never leave half a file behind.
//!
//! A crashed or interrupted build must not leave a truncated `.raw` that a later `lint` or a
//! guest would take for a real image, so every output goes to a temp file in the destination
//! directory and is renamed into place only once it is complete. The same holds for secrets
//! (a guest's SSH key): [`write_private`] is the same write, with the file never readable by
//! anyone else, not even while it is being written.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::NamedTempFile;

/// Released artifacts: read by others (web servers, guests).
pub const PUBLIC: u32 = 0o644;
/// Secrets: the owner only.
pub const PRIVATE: u32 = 0o600;

/// Creates `dest` (mode [`PUBLIC`]) by letting `fill` write a temp file next to it, then
/// renaming.
///
/// The temp file is removed if `fill` fails or we are interrupted before the rename.
pub fn write_with<T>(dest: &Path, fill: impl FnOnce(&mut File) -> io::Result<T>) -> io::Result<T> {
    write_with_mode(dest, PUBLIC, fill)
}

/// [`write_with`] with the mode `dest` gets. The temp file is created 0600 and only gets
/// `mode` once complete, so a wider mode never exposes a partial file and [`PRIVATE`] never
/// exposes any.
pub fn write_with_mode<T>(
    dest: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(PRIVATE))
        .tempfile_in(dir)?;
    let value = fill(tmp.as_file_mut())?;
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all()?;
    persist(tmp, dest, mode)?;
    Ok(value)
}

/// Writes `bytes` to `dest` atomically, mode [`PUBLIC`].
pub fn write_bytes(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(dest, |f| f.write_all(bytes))
}

/// Writes `bytes` to `dest` atomically, mode [`PRIVATE`] (keys).
pub fn write_private(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with_mode(dest, PRIVATE, |f| f.write_all(bytes))
}

fn persist(tmp: NamedTempFile, dest: &Path, mode: u32) -> io::Result<()> {
    if mode != PRIVATE {
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    }
    // On failure the temp file comes back inside the error and is removed with it.
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.raw");
        let err = write_with(&dest, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(io::Error::other("interrupted"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Nothing of a failed write stays: neither when writing fails nor when the rename does
    /// (here a directory is in the way), and a private file is never anyone else's to read.
    #[test]
    fn a_failed_private_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let names = || -> Vec<String> {
            let mut n: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        let key = dir.path().join("id_ed25519");
        let failed = write_with_mode(&key, PRIVATE, |f| {
            f.write_all(b"-----BEGIN OPENSSH")?;
            Err::<(), _>(io::Error::other("interrupted"))
        });
        assert!(failed.is_err());
        assert!(names().is_empty(), "{:?}", names());

        let in_the_way = dir.path().join("id_ed25519.pub");
        std::fs::create_dir(&in_the_way).unwrap();
        std::fs::write(in_the_way.join("x"), b"").unwrap();
        assert!(write_private(&in_the_way, b"ssh-ed25519 AAAA").is_err());
        assert_eq!(names(), ["id_ed25519.pub"]);
    }

    #[test]
    fn private_files_are_the_owners_only_and_public_ones_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let key = dir.path().join("id_ed25519");
        write_private(&key, b"secret").unwrap();
        assert_eq!(mode(&key), 0o600);
        let sums = dir.path().join("SHA256SUMS");
        write_bytes(&sums, b"sums").unwrap();
        assert_eq!(mode(&sums), 0o644);
        let mut seen = None;
        write_with_mode(&dir.path().join("k2"), PRIVATE, |f| {
            seen = Some(f.metadata()?.permissions().mode() & 0o777);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, Some(0o600), "the temp file is private while written");
    }

    #[test]
    fn successful_write_replaces_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("SHA256SUMS");
        write_bytes(&dest, b"old").unwrap();
        write_bytes(&dest, b"new").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
