//! Generated release directories as a host's transfer file sees them: the versions
//! published, the `SHA256SUMS` that lists them (spacing, `*` marks, CRLF, comments,
//! duplicates, wrong digests), and the transfer file (its suffix, `MatchPattern=` forms,
//! types, paths, `CurrentSymlink=`, `InstancesMax=`, `Verify=`, unknown and missing keys).
//! Data, not bytes: (seed, index) always gives the same variant.

use serde::Serialize;

use crate::differential::variant::{chance, pick};
use crate::fuzz::Rng;

/// The extension every generated release publishes (each in a directory of its own).
pub const NAME: &str = "dtx";

/// Versions a release may publish: plain, with letters, `-`, `+`, `^`, `~` (which
/// sysupdate rejects) and leading zeros.
const VERSIONS: &[&str] = &[
    "1.2.3",
    "1.10.0",
    "1.9",
    "2.0.0",
    "2.0.0-rc1",
    "0.9.1",
    "1.2.3+b1",
    "01.2",
    "3.0^git1",
    "1.0~rc1",
    "v4.1",
    "2024.10.1",
    "10",
];

/// How `SHA256SUMS` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sums {
    /// `sha256sum`'s own form: digest, two spaces, name.
    Plain,
    /// No `SHA256SUMS` at all.
    Absent,
    /// Digest, space, `*`, name (binary mode).
    BinaryMark,
    /// One space only.
    OneSpace,
    /// A tab instead of the spaces.
    Tab,
    /// CRLF line ends.
    Crlf,
    /// A `#` comment line first.
    Comment,
    /// An empty line in the middle.
    BlankLine,
    /// The first file listed twice, same digest.
    DuplicateSame,
    /// The first file listed twice, another digest the second time.
    DuplicateOther,
    /// Upper-case hex digests.
    UpperCase,
    /// No newline after the last line.
    NoFinalNewline,
    /// The first file's digest is wrong.
    WrongDigest,
    /// One more line for a file that is not published.
    ListsMissing,
    /// The last published file is not listed.
    Unlisted,
}

const SUMS: &[Sums] = &[
    Sums::Plain,
    Sums::Plain,
    Sums::Plain,
    Sums::Absent,
    Sums::BinaryMark,
    Sums::OneSpace,
    Sums::Tab,
    Sums::Crlf,
    Sums::Comment,
    Sums::BlankLine,
    Sums::DuplicateSame,
    Sums::DuplicateOther,
    Sums::UpperCase,
    Sums::NoFinalNewline,
    Sums::WrongDigest,
    Sums::ListsMissing,
    Sums::Unlisted,
];

/// `MatchPattern=` forms of the [Source] section (`%a` is the host arch).
const PATTERNS: &[&str] = &[
    "dtx-@v-%a.raw",
    "dtx-@v-%a.raw",
    "dtx-@v-%a.raw",
    "dtx-@v-x86-64.raw",
    "dtx-@v-arm64.raw",
    "dtx-@v.raw",
    "dtx_@v_%a.raw",
    "dtx-@v-%a.raw dtx_@v_%a.raw",
    "dtx-@v-@a.raw",
    "dtx-@v@a.raw",
    "dtx-%a.raw",
    "dtx-@v-%a.raw*",
    "dtx-@v-%w.raw",
    "dtx-@v-@v.raw",
    "dtx-@v-%a.@x",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferVariant {
    /// `(version, for the host's arch)` of each published image.
    pub published: Vec<(String, bool)>,
    pub sums: Sums,
    /// `dtx.transfer` (true) or `dtx.conf`.
    pub dot_transfer: bool,
    pub pattern: Option<String>,
    pub source_type: Option<String>,
    /// `Path=` of [Source] ends in `/`.
    pub source_slash: bool,
    pub source_path: bool,
    pub target_type: Option<String>,
    pub target_path: bool,
    pub target_pattern: bool,
    pub current_symlink: Option<String>,
    pub instances_max: Option<String>,
    pub verify: Option<String>,
    pub unknown_key: bool,
    pub unknown_section: bool,
    /// A line that is neither a section, a key nor a comment.
    pub garbage_line: bool,
}

impl TransferVariant {
    /// What every knob shrinks towards: the bakery's transfer file for two releases.
    pub fn plainest() -> TransferVariant {
        TransferVariant {
            published: vec![("1.2.3".into(), true), ("1.10.0".into(), true)],
            sums: Sums::Plain,
            dot_transfer: false,
            pattern: Some("dtx-@v-%a.raw".into()),
            source_type: Some("url-file".into()),
            source_slash: false,
            source_path: true,
            target_type: Some("regular-file".into()),
            target_path: true,
            target_pattern: true,
            current_symlink: Some("/etc/extensions/dtx.raw".into()),
            instances_max: None,
            verify: Some("false".into()),
            unknown_key: false,
            unknown_section: false,
            garbage_line: false,
        }
    }

    /// Copies with one knob set back to its plainest value.
    pub fn shrink_candidates(&self) -> Vec<TransferVariant> {
        let p = TransferVariant::plainest();
        let mut out = Vec::new();
        let mut knob = |f: &dyn Fn(&mut TransferVariant)| {
            let mut c = self.clone();
            f(&mut c);
            if c != *self {
                out.push(c);
            }
        };
        knob(&|c| c.published = p.published.clone());
        if self.published.len() > 1 && self.published != p.published {
            knob(&|c| {
                c.published.pop();
            });
        }
        knob(&|c| c.sums = p.sums);
        knob(&|c| c.dot_transfer = p.dot_transfer);
        knob(&|c| c.pattern = p.pattern.clone());
        knob(&|c| c.source_type = p.source_type.clone());
        knob(&|c| c.source_slash = p.source_slash);
        knob(&|c| c.source_path = p.source_path);
        knob(&|c| c.target_type = p.target_type.clone());
        knob(&|c| c.target_path = p.target_path);
        knob(&|c| c.target_pattern = p.target_pattern);
        knob(&|c| c.current_symlink = p.current_symlink.clone());
        knob(&|c| c.instances_max = p.instances_max.clone());
        knob(&|c| c.verify = p.verify.clone());
        knob(&|c| c.unknown_key = false);
        knob(&|c| c.unknown_section = false);
        knob(&|c| c.garbage_line = false);
        out
    }

    /// The variant in words: only what differs from the plainest.
    pub fn describe(&self) -> String {
        let p = TransferVariant::plainest();
        let mut parts = vec![format!(
            "publishes {}",
            self.published
                .iter()
                .map(|(v, native)| if *native {
                    v.clone()
                } else {
                    format!("{v} (other arch)")
                })
                .collect::<Vec<_>>()
                .join(", ")
        )];
        if self.sums != p.sums {
            parts.push(format!("SHA256SUMS {:?}", self.sums));
        }
        if self.dot_transfer {
            parts.push("dtx.transfer".into());
        }
        let mut opt = |k: &str, a: &Option<String>, b: &Option<String>| {
            if a != b {
                parts.push(match a {
                    Some(v) => format!("{k}={v}"),
                    None => format!("no {k}="),
                });
            }
        };
        opt("MatchPattern", &self.pattern, &p.pattern);
        opt("Source Type", &self.source_type, &p.source_type);
        opt("Target Type", &self.target_type, &p.target_type);
        opt("CurrentSymlink", &self.current_symlink, &p.current_symlink);
        opt("InstancesMax", &self.instances_max, &p.instances_max);
        opt("Verify", &self.verify, &p.verify);
        for (on, what) in [
            (self.source_slash, "Source Path ends in /"),
            (!self.source_path, "no Source Path="),
            (!self.target_path, "no Target Path="),
            (!self.target_pattern, "no Target MatchPattern="),
            (self.unknown_key, "an unknown key"),
            (self.unknown_section, "an unknown section"),
            (self.garbage_line, "a garbage line"),
        ] {
            if on {
                parts.push(what.into());
            }
        }
        parts.join(", ")
    }
}

/// Variant `index` of the run seeded with `seed`.
pub fn generate(seed: u64, index: u32) -> TransferVariant {
    let mut rng = Rng::for_mutant(seed ^ 0x7472_616e_7366_6572, u64::from(index));
    let mut v = TransferVariant::plainest();
    let n = 1 + rng.below(4);
    let mut published: Vec<(String, bool)> = Vec::new();
    while published.len() < n {
        let ver = pick(&mut rng, VERSIONS).to_string();
        let native = !chance(&mut rng, 15);
        if !published.iter().any(|(p, _)| *p == ver) {
            published.push((ver, native));
        }
    }
    v.published = published;
    v.sums = SUMS[rng.below(SUMS.len())];
    v.dot_transfer = chance(&mut rng, 50);
    let maybe = |rng: &mut Rng, percent: usize, value: Option<String>, other: &[&str]| {
        if chance(rng, percent) {
            let o = pick(rng, other);
            if o.is_empty() {
                None
            } else {
                Some(o.to_string())
            }
        } else {
            value
        }
    };
    v.pattern = maybe(
        &mut rng,
        45,
        v.pattern.clone(),
        &PATTERNS[3..]
            .iter()
            .copied()
            .chain([""])
            .collect::<Vec<_>>(),
    );
    v.source_type = maybe(
        &mut rng,
        8,
        v.source_type.clone(),
        &["url", "regular-file", "url-tar", ""],
    );
    v.source_slash = chance(&mut rng, 30);
    v.source_path = !chance(&mut rng, 4);
    v.target_type = maybe(
        &mut rng,
        10,
        v.target_type.clone(),
        &["directory", "partition", "file", ""],
    );
    v.target_path = !chance(&mut rng, 4);
    v.target_pattern = !chance(&mut rng, 20);
    v.current_symlink = maybe(
        &mut rng,
        20,
        v.current_symlink.clone(),
        &["/etc/extensions/other.raw", "/opt/dtx.raw", ""],
    );
    v.instances_max = maybe(&mut rng, 20, None, &["0", "1", "2", "3", "x", "-1"]);
    v.verify = maybe(
        &mut rng,
        20,
        v.verify.clone(),
        &["no", "0", "yes", "true", ""],
    );
    v.unknown_key = chance(&mut rng, 8);
    v.unknown_section = chance(&mut rng, 5);
    v.garbage_line = chance(&mut rng, 5);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_repeat_and_cover_every_manifest_form() {
        assert_eq!(generate(3, 5), generate(3, 5));
        let vs: Vec<TransferVariant> = (0..600).map(|i| generate(1, i)).collect();
        for s in SUMS {
            assert!(vs.iter().any(|v| v.sums == *s), "{s:?}");
        }
        assert!(vs.iter().any(|v| v.pattern.is_none()));
        assert!(vs.iter().any(|v| v.verify.as_deref() == Some("yes")));
        assert!(vs.iter().any(|v| v.published.iter().any(|(_, n)| !n)));
    }

    #[test]
    fn the_plainest_does_not_shrink() {
        assert!(TransferVariant::plainest().shrink_candidates().is_empty());
    }
}
