//! btrfs filesystems in plain files, without root or a mount: `mkfs.btrfs --rootdir` makes
//! one from a tree (Flatcar's USR and OEM partitions are btrfs), `btrfs restore` reads one
//! back into a tree (how `bake` changes an OEM partition: read, add, make again).

use std::path::Path;
use std::process::Command;

use crate::errors::BuildError;
use crate::host_tool;

const PACKAGE: &str = "btrfs-progs";

/// What one filesystem is called and how big it is.
#[derive(Debug, Clone)]
pub struct Filesystem<'a> {
    pub label: &'a str,
    /// Kept across a rebuild, so what finds the filesystem by UUID still finds it.
    pub uuid: Option<&'a str>,
    pub bytes: u64,
}

/// Makes `out` (created or truncated to `fs.bytes`) a btrfs holding `tree`. Single
/// metadata and data profiles: a partition image, not a disk that can lose a copy.
pub fn make(tree: &Path, fs: &Filesystem, out: &Path) -> Result<(), BuildError> {
    let f = std::fs::File::create(out).map_err(|e| BuildError::io(out, e))?;
    f.set_len(fs.bytes).map_err(|e| BuildError::io(out, e))?;
    drop(f);
    let mut cmd = crate::userns::command("mkfs.btrfs");
    cmd.args(["-q", "-f", "-m", "single", "-d", "single", "-L", fs.label]);
    if let Some(uuid) = fs.uuid {
        cmd.args(["-U", uuid]);
    }
    cmd.arg("--rootdir").arg(tree).arg(out);
    host_tool::output(&mut cmd, PACKAGE)?;
    Ok(())
}

/// Copies every file of the btrfs in `image` (a partition image file) into `dest`, with
/// xattrs and symlinks, and where owners can be set (as root, or in a user's namespace:
/// [`crate::userns`]) also owners, modes and times. `btrfs restore -m` stops at the first
/// owner it cannot set, so without either the files become the user's, with default modes,
/// and so do they in a filesystem made again from them. Remove `dest` with
/// [`crate::userns::remove_tree`]: some of it may be a subordinate id's.
pub fn read_back(image: &Path, dest: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(dest).map_err(|e| BuildError::io(dest, e))?;
    let mut cmd = crate::userns::command("btrfs");
    cmd.args(["restore", "-x", "-S", "-i"]);
    if crate::userns::sees_owners() {
        cmd.arg("-m");
    }
    host_tool::output(cmd.arg(image).arg(dest), PACKAGE)?;
    Ok(())
}

/// One file of the btrfs in `image` (its path inside the filesystem, `/`-rooted), or `None`
/// when it has no such file.
pub fn read_file(image: &Path, path: &str) -> Result<Option<Vec<u8>>, BuildError> {
    let dest = tempfile::tempdir().map_err(|e| BuildError::io(image, e))?;
    // Every directory on the way must match too, or restore does not descend.
    let mut regex = String::from("^/(");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        regex.push('|');
        if i > 0 {
            regex.push('/');
        }
        regex.push_str(&regex_escape(p));
        if i + 1 < parts.len() {
            regex.push('(');
        }
    }
    regex.push_str(&")".repeat(parts.len()));
    regex.push('$');
    host_tool::output(
        Command::new("btrfs")
            .args(["restore", "-i", "--path-regex", &regex])
            .arg(image)
            .arg(dest.path()),
        PACKAGE,
    )?;
    let got = dest.path().join(path.trim_start_matches('/'));
    match std::fs::read(&got) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BuildError::io(&got, e)),
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// The label and UUID of the btrfs in `image` (its superblock at 64 KiB), or `None` when
/// it is not one.
pub fn identity(image: &std::fs::File, offset: u64) -> std::io::Result<Option<(String, String)>> {
    use std::os::unix::fs::FileExt;
    let mut sb = [0u8; 4096];
    image.read_exact_at(&mut sb, offset + 0x10000)?;
    if &sb[0x40..0x48] != b"_BHRfS_M" {
        return Ok(None);
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sb[0x20..0x30]);
    let uuid = crate::gpt::uuid_text(&uuid);
    let label = &sb[0x12b..0x12b + 256];
    let end = label.iter().position(|b| *b == 0).unwrap_or(label.len());
    Ok(Some((
        String::from_utf8_lossy(&label[..end]).into_owned(),
        uuid,
    )))
}
