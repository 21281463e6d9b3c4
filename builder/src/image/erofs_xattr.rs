//! Extended attributes of one erofs inode, which erofs-utils 1.5 does not extract.
//!
//! `dump.erofs --path=X` names the inode (its NID, inode size and xattr size); the bytes are
//! then read from the image as the on-disk format lays them out (linux
//! `fs/erofs/erofs_fs.h`): the inode at `meta_blkaddr * block size + nid * 32`, followed by
//! its xattr body, a 12-byte header (the count of shared xattrs at byte 4), that many 4-byte
//! ids into the shared xattr area at `xattr_blkaddr * block size`, then inline entries. An
//! entry is `{u8 name length, u8 name index, le16 value size}`, the name without its prefix
//! (index 1 is `user.`), the value, padded to 4 bytes. Needed for one xattr,
//! `user.extension-release.strict`, which decides whether a renamed image merges (rule book B3).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

const SUPERBLOCK: u64 = 1024;
const MAGIC: u32 = 0xE0F5_E1E2;
/// The xattr body's fixed header (`struct erofs_xattr_ibody_header`).
const IBODY_HEADER: usize = 12;
/// Entries larger than this are not ours to read (erofs values fit in a block).
const MAX_BODY: usize = 64 << 10;

/// Name prefixes by index (`EROFS_XATTR_INDEX_*`).
const PREFIXES: &[(u8, &str)] = &[
    (1, "user."),
    (4, "trusted."),
    (5, "lustre."),
    (6, "security."),
];

fn corrupt(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Where the inode of `path` is, as `dump.erofs` says: (nid, inode size, xattr size).
fn locate(image: &Path, path: &str) -> io::Result<(u64, u64, usize)> {
    let out = crate::host_tool::output(
        Command::new("dump.erofs")
            .arg(format!("--path=/{}", path.trim_start_matches('/')))
            .arg(image),
        "erofs-utils",
    )
    .map_err(|e| io::Error::other(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| -> Option<u64> {
        let at = text.find(key)? + key.len();
        text[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    match (field("NID:"), field("Inode size:"), field("Xattr size:")) {
        (Some(nid), Some(isize), Some(xsize)) => Ok((nid, isize, xsize as usize)),
        _ => Err(corrupt(format!(
            "dump.erofs printed no inode for /{path}: {}",
            text.lines().next().unwrap_or_default()
        ))),
    }
}

fn read_at(f: &mut std::fs::File, at: u64, buf: &mut [u8]) -> io::Result<()> {
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(buf)
}

/// One entry at the start of `b`: (full name, value, bytes it takes with padding).
fn entry(b: &[u8]) -> io::Result<(Option<String>, &[u8], usize)> {
    if b.len() < 4 {
        return Err(corrupt("an xattr entry is cut short"));
    }
    let name_len = usize::from(b[0]);
    let index = b[1];
    let value_len = usize::from(u16::from_le_bytes([b[2], b[3]]));
    let end = 4 + name_len + value_len;
    if b.len() < end {
        return Err(corrupt("an xattr entry runs past its body"));
    }
    let name = PREFIXES
        .iter()
        .find(|(i, _)| *i == index)
        .map(|(_, p)| format!("{p}{}", String::from_utf8_lossy(&b[4..4 + name_len])));
    Ok((name, &b[4 + name_len..end], end.div_ceil(4) * 4))
}

/// The value of xattr `name` (`user.extension-release.strict`) on `path` in the erofs
/// `image`; `None` when the inode has no such xattr.
pub(crate) fn read(image: &Path, path: &str, name: &str) -> io::Result<Option<Vec<u8>>> {
    let (nid, inode_size, xattr_size) = locate(image, path)?;
    if xattr_size == 0 {
        return Ok(None);
    }
    if !(IBODY_HEADER..=MAX_BODY).contains(&xattr_size) {
        return Err(corrupt(format!(
            "/{path}: an xattr body of {xattr_size} bytes"
        )));
    }
    let mut f = std::fs::File::open(image)?;
    let mut sb = [0u8; 48];
    read_at(&mut f, SUPERBLOCK, &mut sb)?;
    if u32::from_le_bytes(sb[0..4].try_into().expect("4 bytes")) != MAGIC {
        return Err(corrupt("not an erofs superblock"));
    }
    let blkszbits = u32::from(sb[12]);
    if !(9..=16).contains(&blkszbits) {
        return Err(corrupt(format!("a block size of 2^{blkszbits}")));
    }
    let meta = u64::from(u32::from_le_bytes(sb[40..44].try_into().expect("4 bytes")));
    let shared_area = u64::from(u32::from_le_bytes(sb[44..48].try_into().expect("4 bytes")));
    let mut body = vec![0u8; xattr_size];
    read_at(
        &mut f,
        (meta << blkszbits) + nid * 32 + inode_size,
        &mut body,
    )?;
    let shared = usize::from(body[4]);
    let mut at = IBODY_HEADER + 4 * shared;
    if at > body.len() {
        return Err(corrupt(format!(
            "/{path}: {shared} shared xattrs overrun the body"
        )));
    }
    while at < body.len() {
        let (n, value, len) = entry(&body[at..])?;
        if n.as_deref() == Some(name) {
            return Ok(Some(value.to_vec()));
        }
        at += len;
    }
    for k in 0..shared {
        let o = IBODY_HEADER + 4 * k;
        let id = u64::from(u32::from_le_bytes(
            body[o..o + 4].try_into().expect("4 bytes"),
        ));
        let mut e = vec![0u8; 4 + 255 + 65535];
        let start = (shared_area << blkszbits) + id * 4;
        f.seek(SeekFrom::Start(start))?;
        let got = f.read(&mut e)?;
        let (n, value, _) = entry(&e[..got])?;
        if n.as_deref() == Some(name) {
            return Ok(Some(value.to_vec()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(files: &[(&str, Option<&str>)]) -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        for (p, strict) in files {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, "ID=_any\n").unwrap();
            if let Some(v) = strict {
                xattr::set(&f, "user.extension-release.strict", v.as_bytes()).unwrap();
            }
        }
        let img = tmp.path().join("x.raw");
        crate::host_tool::output(
            Command::new("mkfs.erofs")
                .args(["--all-root", "--quiet", "-T0"])
                .arg(&img)
                .arg(&root),
            "erofs-utils",
        )
        .unwrap();
        (tmp, img)
    }

    #[test]
    fn an_inline_strict_xattr_is_read_and_its_absence_is_none() {
        let (_t, img) = build(&[
            ("usr/lib/extension-release.d/extension-release.a", Some("0")),
            ("usr/lib/extension-release.d/extension-release.b", None),
        ]);
        let name = "user.extension-release.strict";
        assert_eq!(
            read(
                &img,
                "usr/lib/extension-release.d/extension-release.a",
                name
            )
            .unwrap(),
            Some(b"0".to_vec())
        );
        assert_eq!(
            read(
                &img,
                "usr/lib/extension-release.d/extension-release.b",
                name
            )
            .unwrap(),
            None
        );
        assert_eq!(
            read(
                &img,
                "usr/lib/extension-release.d/extension-release.a",
                "user.other"
            )
            .unwrap(),
            None
        );
    }

    /// mkfs.erofs moves an xattr several inodes carry into the shared area.
    #[test]
    fn a_shared_strict_xattr_is_read() {
        let (_t, img) = build(&[
            ("a/one", Some("false")),
            ("a/two", Some("false")),
            ("a/three", Some("false")),
        ]);
        for p in ["a/one", "a/two", "a/three"] {
            assert_eq!(
                read(&img, p, "user.extension-release.strict").unwrap(),
                Some(b"false".to_vec()),
                "{p}"
            );
        }
    }
}
