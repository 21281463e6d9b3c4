//! What our readers say systemd-sysupdate makes of a release directory, and the comparison
//! with what it made of it in the guest.
//!
//! The prediction is lint's, plus lint's own readers: a finding in
//! `lint::effects::SYSUPDATE_FAILURES` says every verb fails; otherwise the versions are
//! those `SHA256SUMS` lists (`builder::sha256sums`) whose names the Source patterns match
//! with a valid version (`builder::pattern`), newest first (`builder::version`).

use sysext_builder::Arch;
use sysext_builder::osrelease::OsRelease;
use sysext_builder::pattern::{self, Match};
use sysext_builder::unitfile::IniFile;

use crate::lint::Finding;
use crate::lint::effects::fails_sysupdate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicted {
    pub fails: bool,
    /// Versions `list` shows, newest first.
    pub versions: Vec<String>,
    pub because: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// `list` failed (its exit status was not 0).
    pub fails: bool,
    pub versions: Vec<String>,
    /// What `check-new` offered.
    pub available: Option<String>,
    /// systemd-sysupdate's own words (stderr of the failing verb, or the JSON).
    pub words: String,
}

/// lint's prediction for a release directory whose transfer file reads `transfer` and
/// whose manifest is `sums` (None: not published), on `arch`.
pub fn predict(
    findings: &[Finding],
    transfer: &str,
    sums: Option<&[u8]>,
    arch: Arch,
    host: &OsRelease,
) -> Predicted {
    let because: Vec<String> = findings
        .iter()
        .filter(|f| fails_sysupdate(f))
        .map(|f| format!("{} ({:?}): {}", f.rule, f.severity, f.message))
        .collect();
    if !because.is_empty() {
        return Predicted {
            fails: true,
            versions: Vec::new(),
            because,
        };
    }
    let ini = IniFile::parse(transfer);
    let patterns: Vec<Vec<pattern::Element>> = ini
        .get("Source", "MatchPattern")
        .map(|a| a.value.clone())
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| {
            pattern::expand_specifiers_with(p, arch.systemd_name(), &|c| host_value(host, c)).ok()
        })
        .filter_map(|p| pattern::parse(&p).ok())
        .collect();
    let entries = sums
        .map(|b| sysext_builder::sha256sums::parse(b).0)
        .unwrap_or_default();
    let mut versions: Vec<String> = Vec::new();
    for e in &entries {
        for p in &patterns {
            if let Match::Version(v) = pattern::match_name(p, &e.file)
                && !versions.contains(&v)
            {
                versions.push(v);
                break;
            }
        }
    }
    versions.sort_by(|a, b| sysext_builder::version::compare_on(arch, b, a));
    Predicted {
        fails: false,
        versions,
        because: Vec::new(),
    }
}

/// What sysupdate expands a host specifier to from the host's os-release (systemd's
/// `specifier_os_release_common`: a missing field is ""), for the ones the guest tells.
fn host_value(host: &OsRelease, c: char) -> Option<String> {
    let field = match c {
        'o' => "ID",
        'w' => "VERSION_ID",
        'W' => "VARIANT_ID",
        'B' => "BUILD_ID",
        'A' => "IMAGE_VERSION",
        'M' => "IMAGE_ID",
        _ => return None,
    };
    Some(host.get(field).unwrap_or_default().to_string())
}

/// Ok when systemd-sysupdate did what the prediction says; else what differs.
pub fn judge(p: &Predicted, o: &Observed) -> Result<(), String> {
    match (p.fails, o.fails) {
        (true, true) => Ok(()),
        (true, false) => Err("lint says every sysupdate verb fails; list worked".into()),
        (false, true) => Err("sysupdate's list failed; lint has no error that says so".into()),
        (false, false) => {
            if p.versions != o.versions {
                return Err(format!(
                    "list shows versions ({}), our readers predict ({})",
                    o.versions.join(" "),
                    p.versions.join(" ")
                ));
            }
            if p.versions.first() != o.available.as_ref() {
                return Err(format!(
                    "check-new offers ({}), our readers predict ({})",
                    o.available.as_deref().unwrap_or("nothing"),
                    p.versions.first().map(String::as_str).unwrap_or("nothing")
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_manifest_through_the_pattern_newest_first() {
        let d = "a".repeat(64);
        let sums = format!(
            "{d}  dtx-1.2.3-x86-64.raw\n{d}  dtx-1.10.0-x86-64.raw\n{d}  dtx-2.0-arm64.raw\n{d}  dtx-1.0~rc1-x86-64.raw\n"
        );
        let p = predict(
            &[],
            "[Source]\nMatchPattern=dtx-@v-%a.raw\n",
            Some(sums.as_bytes()),
            Arch::X86_64,
            &OsRelease::default(),
        );
        assert!(!p.fails);
        assert_eq!(p.versions, vec!["1.10.0", "1.2.3"]);
        let o = Observed {
            versions: vec!["1.10.0".into(), "1.2.3".into()],
            available: Some("1.10.0".into()),
            ..Observed::default()
        };
        assert!(judge(&p, &o).is_ok());
        let late = Observed {
            available: None,
            ..o
        };
        assert!(judge(&p, &late).unwrap_err().contains("check-new"));
    }
}
