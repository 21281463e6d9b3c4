//! Faults the mirror injects per request path, one for each way a release server has
//! failed bakery users: missing files, server errors, short or damaged downloads, a server
//! that stops answering, and manifests that lie or do not parse.

use std::time::Duration;

/// One injected fault; it applies to every request for its path until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 404 Not Found, as the redirector gives for a release that was never uploaded.
    NotFound,
    /// 500 Internal Server Error.
    ServerError,
    /// The headers promise the whole body; the connection closes after half of it.
    CutShort,
    /// The body has the right length but some bytes flipped.
    Corrupt,
    /// The headers go out, then nothing for this long, then the connection closes.
    Stall(Duration),
    /// In a manifest: the line for this file carries a digest that is not its own.
    WrongDigest(String),
    /// In a manifest: the first line is cut short, which sysupdate refuses outright.
    MalformedSums,
}

impl Fault {
    /// A short name for logs and case names.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::NotFound => "not-found",
            Fault::ServerError => "server-error",
            Fault::CutShort => "cut-short",
            Fault::Corrupt => "corrupt",
            Fault::Stall(_) => "stall",
            Fault::WrongDigest(_) => "wrong-digest",
            Fault::MalformedSums => "malformed-sums",
        }
    }

    /// The status a request with this fault gets.
    pub fn status(&self) -> u16 {
        match self {
            Fault::NotFound => 404,
            Fault::ServerError => 500,
            _ => 200,
        }
    }

    /// Rewrites a body this fault changes in place (the manifest and corruption faults).
    pub fn rewrite(&self, body: Vec<u8>) -> Vec<u8> {
        match self {
            Fault::Corrupt => corrupt(body),
            Fault::WrongDigest(file) => wrong_digest(&body, file),
            Fault::MalformedSums => malformed(&body),
            _ => body,
        }
    }

    /// How many body bytes actually go out, of `len`.
    pub fn bytes_sent(&self, len: usize) -> usize {
        match self {
            Fault::CutShort => len / 2,
            Fault::Stall(_) => 0,
            _ => len,
        }
    }
}

/// Flips every bit of 64 bytes in the middle (or of the whole body when it is shorter).
fn corrupt(mut body: Vec<u8>) -> Vec<u8> {
    let n = body.len().min(64);
    let start = (body.len() - n) / 2;
    for b in &mut body[start..start + n] {
        *b = !*b;
    }
    body
}

fn wrong_digest(body: &[u8], file: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .map(
            |line| match line.split_once(|c: char| c.is_ascii_whitespace()) {
                Some((digest, rest)) if rest.trim_start_matches([' ', '*']) == file => {
                    // Another valid-looking digest: the first hex digit rotated.
                    let rotated: String = digest
                        .chars()
                        .enumerate()
                        .map(|(i, c)| if i == 0 { rotate_hex(c) } else { c })
                        .collect();
                    format!("{rotated} {rest}\n")
                }
                _ => format!("{line}\n"),
            },
        )
        .collect::<String>()
        .into_bytes()
}

fn rotate_hex(c: char) -> char {
    match c {
        '0'..='8' | 'a'..='e' => (c as u8 + 1) as char,
        '9' => 'a',
        _ => '0',
    }
}

/// Cuts the first line to 40 characters: shorter than the 67 bytes sysupdate requires.
fn malformed(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out.push_str(&line[..line.len().min(40)]);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("not a manifest\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysext_builder::sha256sums;

    const SUMS: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  a-1-x86-64.raw\n\
                        fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210  a-2-x86-64.raw\n";

    #[test]
    fn wrong_digest_changes_only_that_files_line_and_stays_parseable() {
        let out = Fault::WrongDigest("a-2-x86-64.raw".into()).rewrite(SUMS.as_bytes().to_vec());
        let (entries, issues) = sha256sums::parse(&out);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(entries[0].digest, SUMS[..64]);
        let original = &SUMS.lines().nth(1).unwrap()[..64];
        assert_eq!(original.len(), 64);
        assert_ne!(entries[1].digest, original);
        assert_eq!(entries[1].file, "a-2-x86-64.raw");
    }

    #[test]
    fn malformed_sums_is_refused_by_sysupdates_rules() {
        let out = Fault::MalformedSums.rewrite(SUMS.as_bytes().to_vec());
        let (_, issues) = sha256sums::parse(&out);
        assert_eq!(issues.first().map(|i| i.line), Some(1), "{issues:?}");
    }

    #[test]
    fn corrupt_keeps_the_length_and_changes_the_bytes() {
        let body = vec![7u8; 1000];
        let out = Fault::Corrupt.rewrite(body.clone());
        assert_eq!(out.len(), body.len());
        assert_ne!(out, body);
    }
}
