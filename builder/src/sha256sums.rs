//! `SHA256SUMS` manifests, written the way `sha256sum` does and read the way
//! systemd-sysupdate does.
//!
//! sysupdate's reader is stricter than `sha256sum -c` (a missing final newline or a short line
//! fails every verb, even `list`), so the parser reports each violation with its line number
//! instead of stopping at the first one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// One `<digest>  <file>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub digest: String,
    pub file: String,
}

/// A line sysupdate would refuse, with the reason in sysupdate's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub line: usize,
    pub message: String,
}

/// Parses a manifest with systemd-sysupdate 257's rules (resource.c).
pub fn parse(bytes: &[u8]) -> (Vec<Entry>, Vec<Issue>) {
    let mut entries = Vec::new();
    let mut issues = Vec::new();
    if bytes.contains(&0) {
        issues.push(Issue {
            line: 0,
            message: "manifest contains NUL bytes".into(),
        });
        return (entries, issues);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            issues.push(Issue {
                line: line_of(bytes, e.valid_up_to()),
                message: "manifest is not valid UTF-8".into(),
            });
            return (entries, issues);
        }
    };
    if !text.is_empty() && !text.ends_with('\n') {
        issues.push(Issue {
            line: text.lines().count(),
            message:
                "last line does not end with a newline (sysupdate: \"Truncated manifest file\")"
                    .into(),
        });
    }
    // Lines end at '\n' only, as in sysupdate: a CRLF file's '\r' stays in the file name
    // (Rust's `lines()` would drop it and hide what fails every verb).
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines = body.split('\n').filter(|_| !text.is_empty());
    for (i, line) in lines.enumerate() {
        let n = i + 1;
        match parse_line(line) {
            Ok((digest, file)) => entries.push(Entry {
                line: n,
                digest: digest.to_string(),
                file: file.to_string(),
            }),
            Err(message) => issues.push(Issue { line: n, message }),
        }
    }
    (entries, issues)
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn parse_line(line: &str) -> Result<(&str, &str), String> {
    if line.len() < 67 {
        return Err(format!(
            "line is {} bytes, shorter than '<64 hex digits>  <file>' (sysupdate: \"Corrupt manifest\")",
            line.len()
        ));
    }
    let (digest, rest) = line
        .split_at_checked(64)
        .ok_or("line is not ASCII where the digest should be")?;
    if !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("first 64 characters are not a hex SHA-256 digest".into());
    }
    let rest = rest
        .strip_prefix(' ')
        .and_then(|r| r.strip_prefix(' ').or_else(|| r.strip_prefix('*')))
        .ok_or("digest must be followed by two spaces (or ' *') and the file name")?;
    let file = rest;
    if file.starts_with('\\') {
        return Err("escaped file names (leading '\\') are not supported by sysupdate".into());
    }
    if file.chars().any(|c| c.is_control()) {
        return Err(if file.ends_with('\r') {
            "the line ends in CRLF, so the file name ends in '\\r' (sysupdate: \"Filename contains control characters at manifest line N, refusing.\"); write LF line ends".into()
        } else {
            "file name contains control characters (sysupdate: \"Filename contains control characters ..., refusing.\")".into()
        });
    }
    if file.contains('/') || file == "." || file == ".." {
        return Err(format!(
            "'{file}' is not a plain file name: systemd-sysupdate 257 refuses paths in manifests"
        ));
    }
    Ok((digest, file))
}

/// Hex SHA-256 of a file, read in chunks so large images do not sit in memory.
pub fn digest_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Renders a manifest in `sha256sum` text mode, sorted by file name so rebuilds are stable.
pub fn render(digests: &BTreeMap<String, String>) -> String {
    digests
        .iter()
        .map(|(file, digest)| format!("{digest}  {file}\n"))
        .collect()
}

/// Adds or replaces `file`'s line in the manifest at `manifest`, keeping the other lines.
///
/// A release directory holds both arches' images in one manifest, so a build for one arch
/// must not drop the other's line. An unreadable existing manifest is an error rather than
/// something we silently overwrite.
pub fn upsert(manifest: &Path, file: &str, digest: &str) -> io::Result<()> {
    edit(manifest, |digests| {
        digests.insert(file.to_string(), digest.to_string());
    })
}

/// Drops `file`'s line from the manifest at `manifest` (a withdrawn release), keeping the
/// others; a manifest without that line is left as it is.
pub fn remove(manifest: &Path, file: &str) -> io::Result<()> {
    edit(manifest, |digests| {
        digests.remove(file);
    })
}

fn edit(manifest: &Path, change: impl FnOnce(&mut BTreeMap<String, String>)) -> io::Result<()> {
    let mut digests = BTreeMap::new();
    match std::fs::read(manifest) {
        Ok(bytes) => {
            let (entries, issues) = parse(&bytes);
            if let Some(issue) = issues.first() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}:{}: {}; fix or delete it before building into this directory",
                        manifest.display(),
                        issue.line,
                        issue.message
                    ),
                ));
            }
            for e in entries {
                digests.insert(e.file, e.digest);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    change(&mut digests);
    crate::atomic::write_bytes(manifest, render(&digests).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const D: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256sum_text_and_binary_mode_lines_parse() {
        let text = format!("{D}  a-1-x86-64.raw\n{D} *a-1-arm64.raw\n");
        let (entries, issues) = parse(text.as_bytes());
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].file, "a-1-arm64.raw");
    }

    #[rstest]
    #[case::missing_final_newline(format!("{D}  a.raw"), "newline")]
    #[case::short_line(format!("{}  a.raw\n", &D[..40]), "shorter")]
    #[case::not_hex(format!("{}  a.raw\n", "z".repeat(64)), "hex")]
    #[case::single_space(format!("{D} a.raw\n"), "two spaces")]
    #[case::path(format!("{D}  sub/a.raw\n"), "plain file name")]
    #[case::escaped(format!("{D}  \\a.raw\n"), "escaped")]
    fn sysupdate_rejects(#[case] text: String, #[case] reason: &str) {
        let (_, issues) = parse(text.as_bytes());
        assert!(
            issues.iter().any(|i| i.message.contains(reason)),
            "{issues:?}"
        );
    }

    #[test]
    fn nul_bytes_are_reported() {
        let (_, issues) = parse(b"abc\0\n");
        assert!(issues[0].message.contains("NUL"));
    }

    #[test]
    fn upsert_keeps_other_arch_and_replaces_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("SHA256SUMS");
        upsert(&m, "x-1-x86-64.raw", D).unwrap();
        upsert(&m, "x-1-arm64.raw", D).unwrap();
        let other = "0".repeat(64);
        upsert(&m, "x-1-x86-64.raw", &other).unwrap();
        let text = std::fs::read_to_string(&m).unwrap();
        assert_eq!(
            text,
            format!("{D}  x-1-arm64.raw\n{other}  x-1-x86-64.raw\n")
        );
    }

    #[test]
    fn remove_drops_only_that_line() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("SHA256SUMS");
        upsert(&m, "x-1-x86-64.raw", D).unwrap();
        upsert(&m, "x-2-x86-64.raw", D).unwrap();
        remove(&m, "x-2-x86-64.raw").unwrap();
        remove(&m, "x-3-x86-64.raw").unwrap();
        assert_eq!(
            std::fs::read_to_string(&m).unwrap(),
            format!("{D}  x-1-x86-64.raw\n")
        );
    }

    #[test]
    fn upsert_refuses_to_clobber_a_corrupt_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("SHA256SUMS");
        std::fs::write(&m, "garbage\n").unwrap();
        let err = upsert(&m, "x.raw", D).unwrap_err();
        assert!(err.to_string().contains("SHA256SUMS:1"), "{err}");
        assert_eq!(std::fs::read_to_string(&m).unwrap(), "garbage\n");
    }

    #[test]
    fn digest_of_empty_file_is_the_well_known_value() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(digest_file(f.path()).unwrap(), D);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::props::check;
    use proptest::prelude::*;

    /// File names sysupdate accepts in a manifest: no '/', no control character, no
    /// leading backslash, not `.` or `..`.
    fn file_name() -> impl Strategy<Value = String> {
        "[^/\\\\\\p{Cc}][^/\\p{Cc}]{0,30}".prop_filter("not . or ..", |n| n != "." && n != "..")
    }

    fn digest() -> impl Strategy<Value = String> {
        "[0-9a-f]{64}"
    }

    #[test]
    fn render_then_parse_round_trips() {
        check(
            prop::collection::btree_map(file_name(), digest(), 0..6),
            |digests| {
                let (entries, issues) = parse(render(&digests).as_bytes());
                prop_assert_eq!(issues, Vec::<Issue>::new());
                let got: BTreeMap<String, String> =
                    entries.into_iter().map(|e| (e.file, e.digest)).collect();
                prop_assert_eq!(got, digests);
                Ok(())
            },
        );
    }

    /// Whatever the bytes, every line is either an entry that is a valid manifest line on
    /// its own, or an issue; issues name lines that exist.
    #[test]
    fn parse_never_panics_and_entries_are_well_formed() {
        let lines = prop::collection::vec(
            prop_oneof![
                (digest(), "( |\\*)", file_name()).prop_map(|(d, s, f)| format!("{d} {s}{f}")),
                "[0-9a-fA-F ]{60,70}[ -~]{0,5}".prop_map(String::from),
            ],
            0..6,
        )
        .prop_map(|l| l.join("\n").into_bytes());
        let bytes = prop_oneof![lines, prop::collection::vec(any::<u8>(), 0..300)];
        check(bytes, |bytes| {
            let (entries, issues) = parse(&bytes);
            let line_count = bytes.split(|b| *b == b'\n').count();
            for e in &entries {
                prop_assert!(
                    e.digest.len() == 64 && e.digest.bytes().all(|b| b.is_ascii_hexdigit())
                );
                prop_assert!(!e.file.is_empty() && !e.file.contains('/'));
                prop_assert!(!e.file.chars().any(char::is_control));
                prop_assert!(e.line >= 1 && e.line <= line_count);
            }
            for i in &issues {
                prop_assert!(i.line <= line_count, "{:?} of {} lines", i, line_count);
            }
            Ok(())
        });
    }
}
