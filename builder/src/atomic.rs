//! Writes that never leave half a file behind.
//!
//! A crashed or interrupted build must not leave a truncated `.raw` that a later `lint` or a
//! guest would take for a real image, so every output goes to a temp file in the destination
//! directory and is renamed into place only once it is complete.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use tempfile::NamedTempFile;

/// Creates `dest` by letting `fill` write a temp file next to it, then renaming.
///
/// The temp file is removed if `fill` fails or we are interrupted before the rename.
pub fn write_with<T>(dest: &Path, fill: impl FnOnce(&mut File) -> io::Result<T>) -> io::Result<T> {
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
        .tempfile_in(dir)?;
    let value = fill(tmp.as_file_mut())?;
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all()?;
    persist(tmp, dest)?;
    Ok(value)
}

/// Writes `bytes` to `dest` atomically.
pub fn write_bytes(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(dest, |f| f.write_all(bytes))
}

fn persist(tmp: NamedTempFile, dest: &Path) -> io::Result<()> {
    // Temp files are created 0600; released artifacts are read by others (web servers, guests).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
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
