//! The generated extension images: every knob of the rule book a guest can answer for,
//! drawn from a seed, and how a disagreeing variant is made smaller.
//!
//! A variant is data, not bytes: the same (seed, index) always gives the same variant, and
//! a shrink step is a copy with one knob set back to its plainest value.

use serde::Serialize;
use sysext_builder::Arch;

use crate::fuzz::Rng;

/// The host facts the generator aims at: the `ID`, `ID_LIKE`, `VERSION_ID` and
/// `SYSEXT_LEVEL` lint was told the host has, so that matching and missing values both come
/// up often.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub id: String,
    pub id_like: Vec<String>,
    pub version_id: Option<String>,
    pub sysext_level: Option<String>,
    pub arch: Arch,
}

/// IDs of other distributions; `debian` and `coreos` are each one guest's `ID_LIKE` or `ID`.
const OTHER_IDS: &[&str] = &["debian", "coreos", "fedora", "ubuntu", "flatcar"];

/// Every spelling of an architecture an author may write: systemd's, uname's, Debian's,
/// the UAPI table's words systemd does not special-case, and case slips.
const ARCH_SPELLINGS: &[&str] = &[
    "x86-64", "arm64", "_any", "x86_64", "amd64", "aarch64", "any", "native", "X86-64", "arm",
    "x86", "riscv64", "",
];

const SCOPES: &[&str] = &[
    "system",
    "initrd",
    "portable",
    "initrd system",
    "system portable",
    "initrd portable",
    "sysext",
    "",
];

const BOOLEANS: &[&str] = &["1", "0", "yes", "no", "true", "off", "maybe", ""];

/// `user.extension-release.strict` values: systemd's false set, true, and not a boolean.
const STRICT_VALUES: &[&str] = &["0", "false", "no", "off", "1", "true", "maybe"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Squashfs,
    Erofs,
}

/// The image's file name around its token `dtNNNNN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileName {
    /// `dt00001.raw`
    Plain,
    /// `dt00001.sysext.raw`: the class suffix is not part of the name (rule book A1).
    Sysext,
    /// `dt00001-1.2.3-x86-64.raw`: the bakery's, the whole stem is the image name.
    Bakery { arch: String },
    /// `dt00001_1.2.raw`: systemd 257's fallback cuts the name at the `_`.
    Underscore,
    /// `dt00001+3.raw`
    Plus,
}

/// Which release files the image carries, relative to its image name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseFile {
    /// `extension-release.<image name>`
    Exact,
    /// `extension-release.<token>`: the image name cut at `_`/`+` (same as Exact when the
    /// name has neither).
    Cut,
    /// `extension-release.other`
    Other,
    /// Two files that are neither: `extension-release.other1` and `.other2`.
    TwoOthers,
    /// No release file at all.
    None,
    /// Only `etc/extension-release.d/extension-release.<image name>`: a confext's.
    ConfextOnly,
    /// `extension-release.<image name>` is a directory.
    Directory,
    /// `extension-release.<image name>` is a symlink that dangles.
    DanglingSymlink,
}

/// What the image ships besides its release file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Payload {
    /// `usr/share/<token>/probe`
    Usr,
    /// `opt/<token>/probe`
    Opt,
    /// Both of the above.
    UsrAndOpt,
    /// Nothing but the release file.
    ReleaseOnly,
    /// `usr/share/<token>/probe` and `usr/sbin/<token>-probe`.
    Sbin,
}

/// One generated image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageVariant {
    pub format: Format,
    pub file: FileName,
    pub release: ReleaseFile,
    /// `user.extension-release.strict` on every release file.
    pub strict: Option<String>,
    /// `None`: no `ID=` line; `Some("")`: `ID=` empty.
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub sysext_level: Option<String>,
    pub architecture: Option<String>,
    pub scope: Option<String>,
    pub reload_manager: Option<String>,
    /// `usr/lib/os-release` inside (forbidden, rule book B8).
    pub os_release_inside: bool,
    /// A top-level entry other than usr/ and opt/ (`etc`, `var`), never merged (D1).
    pub outside: Option<String>,
    pub payload: Payload,
}

/// How one or more images are deployed on the host for one trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Deployment {
    /// The image in /run/extensions.
    Single { image: ImageVariant },
    /// The image in /run/extensions and an empty directory of its name in /etc/extensions
    /// (rule book F3).
    Masked { image: ImageVariant },
    /// `/run/extensions/<token>.raw.v/` holding `<token>_<version>[_<arch>].raw` files
    /// (rule book A6); every file a good image of the name `<token>`.
    Versioned {
        format: Format,
        files: Vec<(String, Option<String>)>,
    },
    /// Two good images whose names differ after the token, both shipping
    /// `usr/share/dtstack/<token>/winner` (rule book F4).
    Stacked {
        format: Format,
        suffixes: [String; 2],
    },
}

impl Deployment {
    /// The variant's kind, for names and counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Deployment::Single { .. } => "single",
            Deployment::Masked { .. } => "masked",
            Deployment::Versioned { .. } => "versioned",
            Deployment::Stacked { .. } => "stacked",
        }
    }

    /// True when the images ship into `/usr/sbin`: at most one such deployment per merge,
    /// so the base's `/usr/sbin` disappearing can be laid at its door.
    pub fn ships_sbin(&self) -> bool {
        matches!(self, Deployment::Single { image } | Deployment::Masked { image }
            if image.payload == Payload::Sbin)
    }
}

/// The token every file of deployment `index` starts with: fixed width, so no token is a
/// prefix of another and log lines can be laid at the right door.
pub fn token(index: u32) -> String {
    format!("dt{index:05}")
}

/// Picks from a list.
pub(super) fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len())]
}

/// True `percent` times in 100.
pub(super) fn chance(rng: &mut Rng, percent: usize) -> bool {
    rng.below(100) < percent
}

/// Deployment `index` of the run seeded with `seed`, for `host`.
pub fn generate(seed: u64, index: u32, host: &HostFacts) -> Deployment {
    let mut rng = Rng::for_mutant(seed, u64::from(index));
    let format = if chance(&mut rng, 50) {
        Format::Squashfs
    } else {
        Format::Erofs
    };
    match rng.below(100) {
        0..=79 => Deployment::Single {
            image: image(&mut rng, format, host),
        },
        80..=87 => {
            let mut image = image(&mut rng, format, host);
            image.file = FileName::Plain;
            Deployment::Masked { image }
        }
        88..=93 => {
            let versions = [
                "1", "2", "1.2", "1.10", "1.9", "2~rc1", "2^post", "10", "1a",
            ];
            let arches = [None, Some("x86-64"), Some("arm64")];
            let n = 1 + rng.below(3);
            let mut files: Vec<(String, Option<String>)> = Vec::new();
            while files.len() < n {
                let v = pick(&mut rng, &versions).to_string();
                let a = arches[rng.below(arches.len())].map(str::to_string);
                if !files.iter().any(|(fv, _)| *fv == v) {
                    files.push((v, a));
                }
            }
            Deployment::Versioned { format, files }
        }
        _ => {
            let suffixes = [
                "", "_1", "_2", "_10", "_1.2", "_1.10", "_a", "_b", "_1a", "x",
            ];
            let a = pick(&mut rng, &suffixes);
            let mut b = pick(&mut rng, &suffixes);
            while b == a {
                b = pick(&mut rng, &suffixes);
            }
            Deployment::Stacked {
                format,
                suffixes: [a.to_string(), b.to_string()],
            }
        }
    }
}

fn image(rng: &mut Rng, format: Format, host: &HostFacts) -> ImageVariant {
    let other_arch = Arch::ALL
        .into_iter()
        .find(|a| *a != host.arch)
        .unwrap_or(host.arch);
    let file = match rng.below(10) {
        0..=4 => FileName::Plain,
        5 => FileName::Sysext,
        6 | 7 => FileName::Bakery {
            arch: if chance(rng, 80) {
                host.arch
            } else {
                other_arch
            }
            .systemd_name()
            .to_string(),
        },
        8 => FileName::Underscore,
        _ => FileName::Plus,
    };
    let release = match rng.below(100) {
        0..=69 => ReleaseFile::Exact,
        70..=79 => ReleaseFile::Cut,
        80..=87 => ReleaseFile::Other,
        88..=90 => ReleaseFile::TwoOthers,
        91..=93 => ReleaseFile::None,
        94..=95 => ReleaseFile::ConfextOnly,
        96..=97 => ReleaseFile::Directory,
        _ => ReleaseFile::DanglingSymlink,
    };
    let strict = chance(
        rng,
        if release == ReleaseFile::Exact {
            10
        } else {
            50
        },
    )
    .then(|| pick(rng, STRICT_VALUES).to_string());
    let mut ids: Vec<String> = vec!["_any".into(), host.id.clone()];
    ids.extend(host.id_like.iter().cloned());
    let id = match rng.below(100) {
        0..=39 => Some("_any".to_string()),
        40..=69 => Some(host.id.clone()),
        70..=79 if !host.id_like.is_empty() => {
            Some(host.id_like[rng.below(host.id_like.len())].clone())
        }
        70..=91 => Some(pick(rng, OTHER_IDS).to_string()),
        92..=95 => None,
        _ => Some(String::new()),
    };
    let version_id = match rng.below(10) {
        0..=4 => None,
        5..=7 => host.version_id.clone().or_else(|| Some("13".into())),
        _ => Some(pick(rng, &["1", "12", "4081.2.0", "9999.0.0"]).to_string()),
    };
    let sysext_level = match rng.below(10) {
        0..=5 => None,
        6..=8 => host.sysext_level.clone().or_else(|| Some("1.0".into())),
        _ => Some(pick(rng, &["2.0", "1", "1.0.0"]).to_string()),
    };
    let architecture = chance(rng, 35).then(|| {
        if chance(rng, 40) {
            host.arch.systemd_name().to_string()
        } else {
            pick(rng, ARCH_SPELLINGS).to_string()
        }
    });
    let scope = chance(rng, 20).then(|| pick(rng, SCOPES).to_string());
    let reload_manager = chance(rng, 20).then(|| pick(rng, BOOLEANS).to_string());
    // Rare on purpose: systemd refuses such an image after mounting it, then retries its
    // busy loop device for 6 s, one image at a time whatever the lanes (measured: 13 of 300
    // images took 78 of 112 s of guest time at 4 in 100).
    let os_release_inside = chance(rng, 1);
    let outside = chance(rng, 8).then(|| pick(rng, &["etc", "var"]).to_string());
    let payload = match rng.below(20) {
        0..=12 => Payload::Usr,
        13 | 14 => Payload::Opt,
        15 | 16 => Payload::UsrAndOpt,
        17 | 18 => Payload::ReleaseOnly,
        _ => Payload::Sbin,
    };
    let mut v = ImageVariant {
        format,
        file,
        release,
        strict,
        id,
        version_id,
        sysext_level,
        architecture,
        scope,
        reload_manager,
        os_release_inside,
        outside,
        payload,
    };
    // An empty release file (C1) now and then: every matching key absent.
    if chance(rng, 3) {
        v.id = None;
        v.version_id = None;
        v.sysext_level = None;
        v.architecture = None;
        v.scope = None;
        v.reload_manager = None;
    }
    v
}

impl ImageVariant {
    /// A plain, well-formed image: what every knob shrinks towards.
    pub fn plainest(format: Format) -> ImageVariant {
        ImageVariant {
            format,
            file: FileName::Plain,
            release: ReleaseFile::Exact,
            strict: None,
            id: Some("_any".into()),
            version_id: None,
            sysext_level: None,
            architecture: None,
            scope: None,
            reload_manager: None,
            os_release_inside: false,
            outside: None,
            payload: Payload::Usr,
        }
    }

    /// Copies of `self` with one knob set back to its plainest value, the knobs that are
    /// already plain left out: the candidates of one shrink step, smallest change first.
    pub fn shrink_candidates(&self) -> Vec<ImageVariant> {
        let plain = ImageVariant::plainest(self.format);
        let mut out = Vec::new();
        let mut try_knob = |f: &dyn Fn(&mut ImageVariant)| {
            let mut c = self.clone();
            f(&mut c);
            if c != *self {
                out.push(c);
            }
        };
        try_knob(&|c| c.os_release_inside = false);
        try_knob(&|c| c.outside = None);
        try_knob(&|c| c.reload_manager = None);
        try_knob(&|c| c.scope = None);
        try_knob(&|c| c.architecture = None);
        try_knob(&|c| c.sysext_level = None);
        try_knob(&|c| c.version_id = None);
        try_knob(&|c| c.strict = None);
        try_knob(&|c| c.payload = Payload::Usr);
        try_knob(&|c| c.file = FileName::Plain);
        try_knob(&|c| c.release = ReleaseFile::Exact);
        try_knob(&|c| c.id = plain.id.clone());
        try_knob(&|c| c.format = Format::Squashfs);
        out
    }

    /// The knobs that differ from the plainest image, as `key=value` words: the variant's
    /// name in a report.
    pub fn describe(&self) -> String {
        let p = ImageVariant::plainest(self.format);
        let mut w = vec![match self.format {
            Format::Squashfs => "squashfs".to_string(),
            Format::Erofs => "erofs".to_string(),
        }];
        if self.file != p.file {
            w.push(format!("file={}", file_word(&self.file)));
        }
        if self.release != p.release {
            w.push(format!("release={}", release_word(self.release)));
        }
        let opt = |k: &str, v: &Option<String>, w: &mut Vec<String>| {
            if let Some(v) = v {
                w.push(format!("{k}={v:?}"));
            }
        };
        opt("strict", &self.strict, &mut w);
        match &self.id {
            None => w.push("ID=(absent)".into()),
            Some(id) if Some(id) != p.id.as_ref() => w.push(format!("ID={id:?}")),
            Some(_) => {}
        }
        opt("VERSION_ID", &self.version_id, &mut w);
        opt("SYSEXT_LEVEL", &self.sysext_level, &mut w);
        opt("ARCHITECTURE", &self.architecture, &mut w);
        opt("SYSEXT_SCOPE", &self.scope, &mut w);
        opt("EXTENSION_RELOAD_MANAGER", &self.reload_manager, &mut w);
        if self.os_release_inside {
            w.push("usr/lib/os-release".into());
        }
        if let Some(o) = &self.outside {
            w.push(format!("outside={o}/"));
        }
        if self.payload != p.payload {
            w.push(format!("payload={}", payload_word(self.payload)));
        }
        w.join(" ")
    }
}

fn file_word(f: &FileName) -> String {
    match f {
        FileName::Plain => "plain".into(),
        FileName::Sysext => "sysext-suffix".into(),
        FileName::Bakery { arch } => format!("bakery-{arch}"),
        FileName::Underscore => "underscore".into(),
        FileName::Plus => "plus".into(),
    }
}

fn release_word(r: ReleaseFile) -> &'static str {
    match r {
        ReleaseFile::Exact => "exact",
        ReleaseFile::Cut => "cut-name",
        ReleaseFile::Other => "other-name",
        ReleaseFile::TwoOthers => "two-other-names",
        ReleaseFile::None => "none",
        ReleaseFile::ConfextOnly => "confext-only",
        ReleaseFile::Directory => "directory",
        ReleaseFile::DanglingSymlink => "dangling-symlink",
    }
}

fn payload_word(p: Payload) -> &'static str {
    match p {
        Payload::Usr => "usr",
        Payload::Opt => "opt",
        Payload::UsrAndOpt => "usr+opt",
        Payload::ReleaseOnly => "release-only",
        Payload::Sbin => "usr/sbin",
    }
}

impl Deployment {
    /// The variant in words, for trial output and JSON.
    pub fn describe(&self) -> String {
        match self {
            Deployment::Single { image } => image.describe(),
            Deployment::Masked { image } => {
                format!("masked in /etc/extensions: {}", image.describe())
            }
            Deployment::Versioned { format, files } => format!(
                "{format:?} .raw.v with {}",
                files
                    .iter()
                    .map(|(v, a)| match a {
                        Some(a) => format!("{v}_{a}"),
                        None => v.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Deployment::Stacked { format, suffixes } => format!(
                "{format:?} stacked pair <token>{} and <token>{} shipping one file",
                suffixes[0], suffixes[1]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            id: "flatcar".into(),
            id_like: vec!["coreos".into()],
            version_id: Some("4230.2.0".into()),
            sysext_level: Some("1.0".into()),
            arch: Arch::X86_64,
        }
    }

    #[test]
    fn a_seed_and_index_always_give_the_same_variant() {
        for i in 0..200 {
            assert_eq!(generate(7, i, &host()), generate(7, i, &host()));
        }
        assert_ne!(
            (0..50).map(|i| generate(7, i, &host())).collect::<Vec<_>>(),
            (0..50).map(|i| generate(8, i, &host())).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_generator_reaches_every_kind_and_the_hosts_id_like() {
        let all: Vec<Deployment> = (0..2000).map(|i| generate(1, i, &host())).collect();
        for kind in ["single", "masked", "versioned", "stacked"] {
            assert!(all.iter().any(|d| d.kind() == kind), "{kind}");
        }
        let images = all.iter().filter_map(|d| match d {
            Deployment::Single { image } => Some(image),
            _ => None,
        });
        let ids: std::collections::HashSet<Option<String>> = images.map(|i| i.id.clone()).collect();
        for want in ["_any", "flatcar", "coreos", "debian", ""] {
            assert!(ids.contains(&Some(want.to_string())), "{want}");
        }
        assert!(ids.contains(&None));
    }

    impl ImageVariant {
        /// How many knobs differ from the plainest image: a smaller variant is a simpler story.
        fn size(&self) -> usize {
            let p = ImageVariant::plainest(self.format);
            [
                self.file != p.file,
                self.release != p.release,
                self.strict.is_some(),
                self.id != p.id,
                self.version_id.is_some(),
                self.sysext_level.is_some(),
                self.architecture.is_some(),
                self.scope.is_some(),
                self.reload_manager.is_some(),
                self.os_release_inside,
                self.outside.is_some(),
                self.payload != p.payload,
                self.format != Format::Squashfs,
            ]
            .into_iter()
            .filter(|d| *d)
            .count()
        }
    }

    #[test]
    fn shrinking_moves_one_knob_towards_the_plainest_image() {
        let mut v = ImageVariant::plainest(Format::Erofs);
        v.scope = Some("initrd".into());
        v.id = Some("fedora".into());
        let c = v.shrink_candidates();
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|x| x.size() == v.size() - 1));
        assert!(
            ImageVariant::plainest(Format::Squashfs)
                .shrink_candidates()
                .is_empty()
        );
    }
}
