//! A release directory as the bakery publishes it: images, `SHA256SUMS`, and the sysupdate
//! transfer file (rule book K1-K14, L2; bakery issues #88, #140, #225).
//!
//! These are the files systemd-sysupdate reads on every host; a mistake here does not fail
//! loudly, it just means updates never happen.

use std::collections::BTreeSet;
use std::path::Path;

use sysext_builder::pattern::{self, Match};
use sysext_builder::sha256sums;
use sysext_builder::unitfile::IniFile;

use crate::lint::finding::{Finding, Rule, Severity};

pub const SUMS_MISSING: Rule = Rule {
    id: "sums/missing",
    severity: Severity::Error,
    summary: "a release directory with images but no SHA256SUMS: sysupdate cannot see any version",
    reference: "L1",
};
pub const SUMS_SYNTAX: Rule = Rule {
    id: "sums/syntax",
    severity: Severity::Error,
    summary: "SHA256SUMS breaks sysupdate's strict format, which fails every verb",
    reference: "L2",
};
pub const SUMS_DIGEST: Rule = Rule {
    id: "sums/digest-mismatch",
    severity: Severity::Error,
    summary: "a file's SHA-256 differs from its SHA256SUMS line (\"DOWNLOAD INVALID\")",
    reference: "L11",
};
pub const SUMS_UNLISTED: Rule = Rule {
    id: "sums/unlisted-image",
    severity: Severity::Warning,
    summary: "an image in the directory is not in SHA256SUMS, so sysupdate never offers it",
    reference: "L1",
};
pub const SUMS_ABSENT: Rule = Rule {
    id: "sums/listed-file-missing",
    severity: Severity::Error,
    summary: "SHA256SUMS lists a file the directory does not have (a 404 for every host)",
    reference: "L5",
};
pub const TRANSFER_SYNTAX: Rule = Rule {
    id: "transfer/syntax",
    severity: Severity::Error,
    summary: "the transfer file does not parse: an invalid section header fails every verb (other bad lines are ignored: a warning)",
    reference: "K4, K9",
};
pub const TRANSFER_UNKNOWN: Rule = Rule {
    id: "transfer/unknown-key",
    severity: Severity::Warning,
    summary: "an unknown section or key, which sysupdate ignores with a warning",
    reference: "K4",
};
pub const TRANSFER_SUFFIX: Rule = Rule {
    id: "transfer/conf-suffix",
    severity: Severity::Info,
    summary: "systemd >= 257 wants *.transfer; *.conf is read with a deprecation warning",
    reference: "K2, bakery #225",
};
pub const TRANSFER_UNREAD: Rule = Rule {
    id: "transfer/suffix-needs-257",
    severity: Severity::Error,
    summary: "systemd < 257 reads only *.conf transfer files: a *.transfer is never read",
    reference: "K2",
};
pub const TRANSFER_REQUIRED: Rule = Rule {
    id: "transfer/missing-key",
    severity: Severity::Error,
    summary: "Source Type/Path/MatchPattern or Target Path is missing",
    reference: "K6, K7",
};
pub const TRANSFER_TYPES: Rule = Rule {
    id: "transfer/types",
    severity: Severity::Error,
    summary: "Source and Target Type= are unknown or incompatible",
    reference: "K6, K8",
};
pub const TRANSFER_PATTERN: Rule = Rule {
    id: "transfer/pattern",
    severity: Severity::Error,
    summary: "a MatchPattern= sysupdate refuses, or accepts and then fails on",
    reference: "K10, K11, K13",
};
pub const TRANSFER_NO_MATCH: Rule = Rule {
    id: "transfer/no-match",
    severity: Severity::Error,
    summary: "no published image matches the Source MatchPattern",
    reference: "L5",
};
pub const TRANSFER_INVISIBLE: Rule = Rule {
    id: "transfer/invisible-version",
    severity: Severity::Error,
    summary: "an image matches the pattern's shape but its version is invalid, so sysupdate skips it",
    reference: "K12",
};
pub const TRANSFER_SYMLINK: Rule = Rule {
    id: "transfer/current-symlink",
    severity: Severity::Error,
    summary: "CurrentSymlink is not /etc/extensions/NAME.raw for the images' release name",
    reference: "L16, bakery #140",
};
pub const TRANSFER_INSTANCES: Rule = Rule {
    id: "transfer/instances-max",
    severity: Severity::Warning,
    summary: "InstancesMax= below 2 is bumped to 2",
    reference: "K7",
};
pub const TRANSFER_VERIFY: Rule = Rule {
    id: "transfer/verify-without-signature",
    severity: Severity::Error,
    summary: "Verify= is on but no SHA256SUMS.gpg is published (\"Failed to retrieve signature file\")",
    reference: "L1",
};

pub const RULES: &[&Rule] = &[
    &SUMS_MISSING,
    &SUMS_SYNTAX,
    &SUMS_DIGEST,
    &SUMS_UNLISTED,
    &SUMS_ABSENT,
    &TRANSFER_SYNTAX,
    &TRANSFER_UNKNOWN,
    &TRANSFER_SUFFIX,
    &TRANSFER_UNREAD,
    &TRANSFER_REQUIRED,
    &TRANSFER_TYPES,
    &TRANSFER_PATTERN,
    &TRANSFER_NO_MATCH,
    &TRANSFER_INVISIBLE,
    &TRANSFER_SYMLINK,
    &TRANSFER_INSTANCES,
    &TRANSFER_VERIFY,
];

const TRANSFER_KEYS: &[&str] = &[
    "MinVersion",
    "ProtectVersion",
    "Verify",
    "ChangeLog",
    "AppStream",
    "Features",
    "RequisiteFeatures",
];
const SOURCE_KEYS: &[&str] = &["Type", "Path", "PathRelativeTo", "MatchPattern"];
const TARGET_KEYS: &[&str] = &[
    "Type",
    "Path",
    "PathRelativeTo",
    "MatchPattern",
    "MatchPartitionType",
    "PartitionUUID",
    "PartitionFlags",
    "PartitionNoAuto",
    "PartitionGrowFileSystem",
    "ReadOnly",
    "Mode",
    "TriesLeft",
    "TriesDone",
    "InstancesMax",
    "RemoveTemporary",
    "CurrentSymlink",
];
const TARGET_TYPES: &[&str] = &["partition", "regular-file", "directory", "subvolume"];
const SOURCE_TYPES: &[&str] = &[
    "url-file",
    "url-tar",
    "tar",
    "regular-file",
    "directory",
    "subvolume",
];

/// The keys sysupdate knows in a transfer file's `section`, or `None` for a section it
/// does not know; the fuzzer's oracle uses it to tell an unknown name from a renamed one.
pub fn known_keys(section: &str) -> Option<&'static [&'static str]> {
    match section {
        "Transfer" => Some(TRANSFER_KEYS),
        "Source" => Some(SOURCE_KEYS),
        "Target" => Some(TARGET_KEYS),
        _ => None,
    }
}

/// What a release directory holds, as far as these rules care.
pub struct ReleaseDir<'a> {
    pub dir: &'a Path,
    /// `*.raw` file names in the directory.
    pub images: Vec<String>,
    /// `(image file name, release name)` for images whose release file was found.
    pub release_names: Vec<(String, String)>,
}

/// The transfer files in `dir`: `*.transfer`, and `*.conf` files that parse as transfers.
pub fn transfer_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".transfer") || n.ends_with(".conf") {
                out.push(n);
            }
        }
    }
    out.sort();
    out
}

/// Whether `file` is `NAME.conf` for an extension published here: the bakery ships one
/// per extension, named after the images' release name.
fn names_an_extension(rd: &ReleaseDir, file: &str) -> bool {
    let Some(stem) = file.strip_suffix(".conf") else {
        return false;
    };
    let names: Vec<String> = rd.release_names.iter().map(|(_, n)| n.clone()).collect();
    names.iter().any(|n| n == stem)
        || rd
            .images
            .iter()
            .any(|img| sysext_builder::naming::triple(img, &names).is_some_and(|t| t.name == stem))
}

pub fn check(rd: &ReleaseDir) -> Vec<Finding> {
    let mut out = Vec::new();
    check_sums(rd, &mut out);
    for t in transfer_files(rd.dir) {
        check_transfer(rd, &t, &mut out);
    }
    // A release tag of a store is also checked as part of it (lint reads a store tag by tag).
    out.extend(super::store::check(rd.dir));
    out
}

fn check_sums(rd: &ReleaseDir, out: &mut Vec<Finding>) {
    let path = rd.dir.join("SHA256SUMS");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(_) => {
            if !rd.images.is_empty() {
                out.push(Finding::new(
                    &SUMS_MISSING,
                    "SHA256SUMS",
                    "no SHA256SUMS: systemd-sysupdate reads it to find versions and verify downloads. Create it with 'sha256sum *.raw > SHA256SUMS'",
                ));
            }
            return;
        }
    };
    let (entries, issues) = sha256sums::parse(&bytes);
    for i in issues {
        out.push(Finding::new(
            &SUMS_SYNTAX,
            "SHA256SUMS",
            format!("line {}: {}", i.line, i.message),
        ));
    }
    let listed: BTreeSet<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    for e in &entries {
        let file = rd.dir.join(&e.file);
        if !file.exists() {
            if e.file.ends_with(".raw") {
                out.push(Finding::new(
                    &SUMS_ABSENT,
                    "SHA256SUMS",
                    format!("line {}: lists {}, which is not in the directory; hosts that pick it get a 404", e.line, e.file),
                ));
            }
            continue;
        }
        match sha256sums::digest_file(&file) {
            Ok(d) if d.eq_ignore_ascii_case(&e.digest) => {}
            Ok(d) => out.push(Finding::new(
                &SUMS_DIGEST,
                e.file.as_str(),
                format!("SHA256SUMS line {} says {} but the file hashes to {d}: sysupdate refuses the download. Regenerate SHA256SUMS", e.line, e.digest),
            )),
            Err(err) => out.push(Finding::new(&SUMS_DIGEST, e.file.as_str(), format!("cannot read to verify: {err}"))),
        }
    }
    for img in &rd.images {
        if !listed.contains(img.as_str()) {
            out.push(Finding::new(
                &SUMS_UNLISTED,
                img.as_str(),
                "not listed in SHA256SUMS, so systemd-sysupdate never offers it; add its line",
            ));
        }
    }
}

fn check_transfer(rd: &ReleaseDir, file: &str, out: &mut Vec<Finding>) {
    let path = rd.dir.join(file);
    let Ok(text) = std::fs::read_to_string(&path) else {
        out.push(Finding::new(
            &TRANSFER_SYNTAX,
            file,
            "unreadable or not UTF-8",
        ));
        return;
    };
    let ini = IniFile::parse(&text);
    // A .conf that is not a transfer (no [Source]) is someone else's file, unless it is
    // named after an extension here: then it is that extension's transfer, however broken
    // (a NAME.conf cut short before its [Source] was once waved through as "not ours").
    if file.ends_with(".conf")
        && !ini.has_section("Source")
        && !ini.has_section("Target")
        && !names_an_extension(rd, file)
    {
        return;
    }
    for (line, msg) in &ini.issues {
        // Found by the differential oracle: a line that is not Key=Value costs sysupdate
        // only that line; an invalid section header fails the file.
        if IniFile::issue_is_fatal(msg) {
            out.push(Finding::new(
                &TRANSFER_SYNTAX,
                file,
                format!("line {line}: {msg}; sysupdate cannot load the file and fails every verb"),
            ));
        } else {
            out.push(
                Finding::new(
                    &TRANSFER_SYNTAX,
                    file,
                    format!("line {line}: {msg}; sysupdate ignores the line (\"ignoring line\")"),
                )
                .with_severity(Severity::Warning),
            );
        }
    }
    // Both suffix rules are reported here and kept by lint::gates for the targets they
    // hold on.
    if file.ends_with(".transfer") {
        out.push(Finding::new(
            &TRANSFER_UNREAD,
            file,
            "systemd before 257 reads only .conf transfer files, so this target never sees this one: publish it as .conf too",
        ));
    }
    if file.ends_with(".conf") {
        out.push(Finding::new(
            &TRANSFER_SUFFIX,
            file,
            "systemd >= 257 expects the .transfer suffix and warns about .conf (still read when no .transfer exists); publish it as .transfer too",
        ));
    }
    for (section, line) in &ini.sections {
        if !["Transfer", "Source", "Target"].contains(&section.as_str()) {
            out.push(Finding::new(
                &TRANSFER_UNKNOWN,
                file,
                format!("line {line}: unknown section [{section}], ignored"),
            ));
        }
    }
    for a in &ini.assignments {
        let known = match a.section.as_str() {
            "Transfer" => TRANSFER_KEYS,
            "Source" => SOURCE_KEYS,
            "Target" => TARGET_KEYS,
            _ => continue,
        };
        if !known.contains(&a.key.as_str()) {
            out.push(Finding::new(
                &TRANSFER_UNKNOWN,
                file,
                format!(
                    "line {}: unknown key {}= in [{}], which sysupdate ignores",
                    a.line, a.key, a.section
                ),
            ));
        }
    }
    let get = |s: &str, k: &str| ini.get(s, k).map(|a| a.value.as_str());
    for (s, k) in [
        ("Source", "Type"),
        ("Source", "Path"),
        ("Source", "MatchPattern"),
        ("Target", "Path"),
    ] {
        if get(s, k).is_none_or(str::is_empty) {
            out.push(Finding::new(
                &TRANSFER_REQUIRED,
                file,
                format!("[{s}] {k}= is required; sysupdate refuses the file and fails every verb"),
            ));
        }
    }
    let source_type = get("Source", "Type").unwrap_or("");
    if !source_type.is_empty() && !SOURCE_TYPES.contains(&source_type) {
        out.push(Finding::new(
            &TRANSFER_TYPES,
            file,
            format!(
                "[Source] Type={source_type} is not one of {}",
                SOURCE_TYPES.join(", ")
            ),
        ));
    }
    // Found by the differential oracle: sysupdate checks Path= against Type= ("Source
    // path is not a normalized, absolute path" for a URL given to a local type).
    if let Some(path) = get("Source", "Path").filter(|p| !p.is_empty()) {
        let url = ["http://", "https://", "file://"]
            .iter()
            .any(|p| path.starts_with(p));
        let wants_url = source_type.starts_with("url-");
        if SOURCE_TYPES.contains(&source_type) && url != wants_url {
            out.push(Finding::new(
                &TRANSFER_TYPES,
                file,
                if wants_url {
                    format!("[Source] Type={source_type} needs an http(s):// URL, not Path={path}; sysupdate refuses the file")
                } else {
                    format!("[Source] Type={source_type} takes a local absolute path, not the URL {path}: sysupdate says \"Source path is not a normalized, absolute path\" and fails every verb. Use Type=url-file")
                },
            ));
        }
    }
    if get("Target", "Type") == Some("partition") && source_type.starts_with("url-") {
        out.push(Finding::new(
            &TRANSFER_TYPES,
            file,
            "[Target] Type=partition writes a GPT partition of the root disk, not an extension image: sysupdate looks the partition table up on every verb (\"Failed to find whole disk device for partition backing file system\" where there is none). An extension's transfer needs Type=regular-file",
        ));
    }
    // Found by the differential oracle: an unknown [Target] Type= is ignored with a
    // warning and the type inferred from [Source] (url-file gives regular-file).
    let target_type = get("Target", "Type");
    if let Some(tt) = target_type.filter(|t| !TARGET_TYPES.contains(t)) {
        out.push(
            Finding::new(
                &TRANSFER_TYPES,
                file,
                format!(
                    "[Target] Type={tt} is not one of {}: sysupdate ignores the line and infers the type from [Source]; write it out",
                    TARGET_TYPES.join(", ")
                ),
            )
            .with_severity(Severity::Warning),
        );
    }
    if let Some(tt) = target_type.filter(|t| TARGET_TYPES.contains(t)) {
        let ok = match source_type {
            "url-file" | "regular-file" => ["partition", "regular-file"].contains(&tt),
            "url-tar" | "tar" | "directory" | "subvolume" => {
                ["directory", "subvolume"].contains(&tt)
            }
            _ => true,
        };
        if !ok {
            out.push(Finding::new(
                &TRANSFER_TYPES,
                file,
                format!("[Target] Type={tt} cannot take a [Source] Type={source_type}"),
            ));
        }
    }
    if let Some(n) = get("Target", "InstancesMax")
        && n.parse::<u64>().map(|n| n < 2).unwrap_or(true)
    {
        out.push(Finding::new(&TRANSFER_INSTANCES, file, format!("InstancesMax={n}: sysupdate needs at least 2 (one to keep, one to install) and bumps it")));
    }
    let verify = get("Transfer", "Verify")
        .map(|v| sysext_builder::osrelease::parse_bool(v) != Some(false))
        .unwrap_or(true);
    if verify && source_type.starts_with("url") && !rd.dir.join("SHA256SUMS.gpg").exists() {
        out.push(Finding::new(
            &TRANSFER_VERIFY,
            file,
            "Verify= defaults to yes but no SHA256SUMS.gpg is published: every update fails (\"Failed to retrieve signature file\"). Publish a signature or set Verify=false",
        ));
    }

    // Which published images each arch's Source pattern picks.
    let Some(patterns) = get("Source", "MatchPattern") else {
        return;
    };
    let mut matched: BTreeSet<String> = BTreeSet::new();
    let mut host_dependent = false;
    for arch in sysext_builder::Arch::ALL.map(|a| a.systemd_name()) {
        for raw in patterns.split_whitespace() {
            let expanded = match pattern::expand_specifiers(raw, arch) {
                Ok(e) => e,
                // Found by the differential oracle: sysupdate expands `%w` and the other
                // host values (to "" when os-release lacks the field); only each host knows
                // what the pattern matches there.
                Err(e @ pattern::PatternError::HostSpecifier(_)) => {
                    if !host_dependent {
                        out.push(
                            Finding::new(
                                &TRANSFER_PATTERN,
                                file,
                                format!("MatchPattern={raw}: {e}; use %a and literal text so every host picks the same images"),
                            )
                            .with_severity(Severity::Warning),
                        );
                    }
                    host_dependent = true;
                    continue;
                }
                Err(e) => {
                    out.push(Finding::new(
                        &TRANSFER_PATTERN,
                        file,
                        format!("MatchPattern={raw}: {e}; sysupdate drops the setting"),
                    ));
                    return;
                }
            };
            let elements = match pattern::parse(&expanded) {
                Ok(e) => e,
                Err(e) => {
                    out.push(Finding::new(
                        &TRANSFER_PATTERN,
                        file,
                        format!("MatchPattern={raw}: {e}"),
                    ));
                    return;
                }
            };
            for img in &rd.images {
                match pattern::match_name(&elements, img) {
                    Match::Version(_) => {
                        matched.insert(img.clone());
                    }
                    Match::InvalidVersion(v) => out.push(Finding::new(
                        &TRANSFER_INVISIBLE,
                        img.as_str(),
                        format!("{file} matches it with version '{v}', which sysupdate rejects (allowed: [A-Za-z0-9.,_+-]), so this image is never offered"),
                    )),
                    Match::NoMatch => {}
                }
            }
        }
    }
    if matched.is_empty() && !rd.images.is_empty() && !host_dependent {
        out.push(Finding::new(
            &TRANSFER_NO_MATCH,
            file,
            format!(
                "[Source] MatchPattern={patterns} matches none of the {} published images (e.g. {}); sysupdate will never find an update",
                rd.images.len(),
                rd.images.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Some(link) = get("Target", "CurrentSymlink") {
        let stem = link
            .rsplit('/')
            .next()
            .unwrap_or(link)
            .strip_suffix(".raw")
            .unwrap_or("");
        let names: BTreeSet<&str> = rd
            .release_names
            .iter()
            .filter(|(img, _)| matched.contains(img))
            .map(|(_, n)| n.as_str())
            .collect();
        if !link.starts_with("/etc/extensions/")
            && !link.starts_with("/var/lib/extensions/")
            && !link.starts_with("/run/extensions/")
        {
            out.push(Finding::new(
                &TRANSFER_SYMLINK,
                file,
                format!("CurrentSymlink={link} is not in a sysext search directory (/etc/extensions, /run/extensions, /var/lib/extensions), so systemd never merges the update"),
            ));
        } else if !names.is_empty() && !names.contains(stem) {
            let want = names.iter().next().copied().unwrap_or("NAME");
            out.push(Finding::new(
                &TRANSFER_SYMLINK,
                file,
                format!("CurrentSymlink={link} names the image '{stem}', but its release file is extension-release.{want}: after the first update systemd refuses it. Use /etc/extensions/{want}.raw"),
            ));
        }
    }
}
