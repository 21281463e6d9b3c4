//! What systemd does with an image when a rule fires, and the words it says so in.
//!
//! Most error rules predict trouble after the merge (a binary that will not load, a unit that
//! will fail); the rules here predict that `systemd-sysext merge` does not take the image at
//! all. That prediction is what the differential oracle (`crate::differential`) checks against
//! systemd itself, and it only counts as right when systemd's own debug log says the words
//! listed for the rule: a refusal for another reason is a disagreement too.

use crate::lint::finding::{Finding, Rule};
use crate::lint::rules::{content, image, matching, naming, release_dir, release_file, units};

/// What `systemd-sysext merge` does with an image a rule fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// The image is skipped ("ignoring"); the others still merge (rule book C15).
    Ignored,
    /// Reading the image's metadata fails before anything merges, so the whole merge fails
    /// and no extension is merged (rule book E10).
    AbortsMerge,
}

/// A rule that predicts a refusal, with the phrases of systemd 257's debug log that name it
/// (any one of them is enough: some refusals are worded differently by the mount-time and
/// the match-time check).
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub rule: &'static Rule,
    pub effect: Effect,
    pub words: &'static [&'static str],
}

/// Every rule whose finding means systemd will not merge the image. Phrases are systemd's
/// (`src/shared/extension-util.c`, `src/basic/os-util.c`, `src/sysext/sysext.c`), as the
/// guests print them with `SYSTEMD_LOG_LEVEL=debug`.
pub const REFUSALS: &[Refusal] = &[
    Refusal {
        rule: &naming::INVALID_NAME,
        effect: Effect::Ignored,
        words: &["doesn't look like an image"],
    },
    Refusal {
        rule: &release_file::MISSING,
        effect: Effect::AbortsMerge,
        words: &["No medium found"],
    },
    Refusal {
        rule: &release_file::CONFEXT_ONLY,
        effect: Effect::Ignored,
        words: &[
            "carries no release data",
            "carries no extension-release data",
        ],
    },
    Refusal {
        rule: &release_file::NAME_MISMATCH,
        effect: Effect::AbortsMerge,
        words: &[
            "does not have user.extension-release.strict xattr",
            "'user.extension-release.strict' attribute is true",
            "'user.extension-release.strict' extended attribute from file, ignoring",
        ],
    },
    Refusal {
        rule: &release_file::AMBIGUOUS,
        effect: Effect::AbortsMerge,
        words: &["Name not unique on network"],
    },
    Refusal {
        rule: &release_file::NOT_REGULAR,
        effect: Effect::AbortsMerge,
        words: &["Is a directory", "No medium found"],
    },
    Refusal {
        rule: &matching::NO_DATA,
        effect: Effect::Ignored,
        words: &[
            "carries no release data",
            "carries no extension-release data",
        ],
    },
    Refusal {
        rule: &matching::SCOPE,
        effect: Effect::Ignored,
        words: &["is not suitable for scope"],
    },
    Refusal {
        rule: &matching::ARCH_INVALID,
        effect: Effect::Ignored,
        words: &["is for architecture"],
    },
    Refusal {
        rule: &matching::ARCH_TARGET,
        effect: Effect::Ignored,
        words: &["is for architecture"],
    },
    Refusal {
        rule: &matching::NO_ID,
        effect: Effect::Ignored,
        words: &["does not contain ID in release file"],
    },
    Refusal {
        rule: &matching::ID_MISMATCH,
        effect: Effect::Ignored,
        words: &["is for OS '"],
    },
    Refusal {
        rule: &matching::LEVEL_MISMATCH,
        effect: Effect::Ignored,
        words: &["is for API level", "is for sysext API level"],
    },
    Refusal {
        rule: &matching::VERSION_MISMATCH,
        effect: Effect::Ignored,
        words: &["does not contain VERSION_ID", "is for OS '"],
    },
    Refusal {
        rule: &matching::KEYS_NEED_252,
        effect: Effect::Ignored,
        words: &["is for OS '"],
    },
    Refusal {
        rule: &content::OS_RELEASE,
        // Raw images (the differential's): refused at mount time. A directory image fails
        // its metadata read and the whole merge ("Conflicting content").
        effect: Effect::Ignored,
        words: &["which is not allowed, refusing", "Conflicting content"],
    },
    Refusal {
        rule: &image::UNREADABLE,
        effect: Effect::AbortsMerge,
        words: &["Failed to read metadata for image"],
    },
];

/// The refusal a finding of rule `id` predicts, if any.
pub fn refusal(id: &str) -> Option<&'static Refusal> {
    REFUSALS.iter().find(|r| r.rule.id == id)
}

/// Rules about the release file whose whole-merge failure comes from the image not
/// validating as an extension when it is mounted (rule book E9, E10).
const RELEASE_FILE_ABORTS: &[&str] = &[
    release_file::MISSING.id,
    release_file::NAME_MISMATCH.id,
    release_file::AMBIGUOUS.id,
    release_file::NOT_REGULAR.id,
];

/// What `refusal` does to the merge on an image with `findings`. An image that carries
/// `usr/lib/os-release` validates as an OS image without a release file, so a release file
/// that is not found no longer fails the whole merge: the image is refused alone, for its
/// os-release (`sysext-test differential`, seed 5, dt00026: a dangling release symlink).
/// A release file that is found and cannot be read (a directory: "Is a directory") still
/// fails it (seed 27182818, dt01840).
pub fn effect_among(refusal: &Refusal, findings: &[Finding]) -> Effect {
    let os_release = findings.iter().any(|f| f.rule == content::OS_RELEASE.id);
    let unreadable_directory = refusal.rule.id == release_file::NOT_REGULAR.id
        && findings.iter().any(|f| {
            f.rule == release_file::NOT_REGULAR.id
                && f.message == release_file::NOT_REGULAR_DIRECTORY
        });
    if refusal.effect == Effect::AbortsMerge
        && RELEASE_FILE_ABORTS.contains(&refusal.rule.id)
        && os_release
        && !unreadable_directory
    {
        Effect::Ignored
    } else {
        refusal.effect
    }
}

/// True when one of `words` is in `log`.
pub fn said(words: &[&str], log: &str) -> bool {
    words.iter().any(|w| log.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_names_a_listed_error_rule_once() {
        let all = crate::lint::rules::all();
        let mut seen = std::collections::HashSet::new();
        for r in REFUSALS {
            assert!(all.iter().any(|a| a.id == r.rule.id), "{}", r.rule.id);
            assert_eq!(
                r.rule.severity,
                crate::lint::Severity::Error,
                "{}: a rule that predicts a refusal must be an error",
                r.rule.id
            );
            assert!(seen.insert(r.rule.id), "{} listed twice", r.rule.id);
            assert!(!r.words.is_empty(), "{} has no systemd words", r.rule.id);
        }
    }

    #[test]
    fn an_os_release_inside_turns_a_release_file_abort_into_a_refusal() {
        let f = |rule: &Rule, message: &str| Finding::new(rule, "", message);
        let os = f(&content::OS_RELEASE, "");
        let missing = refusal("release/missing").unwrap();
        let alone = [f(&release_file::MISSING, "")];
        assert_eq!(effect_among(missing, &alone), Effect::AbortsMerge);
        let with_os = [f(&release_file::MISSING, ""), os.clone()];
        assert_eq!(effect_among(missing, &with_os), Effect::Ignored);
        // A directory is found and fails to read: the whole merge fails anyway.
        let not_regular = refusal("release/not-regular-file").unwrap();
        let dir = [
            f(
                &release_file::NOT_REGULAR,
                release_file::NOT_REGULAR_DIRECTORY,
            ),
            os.clone(),
        ];
        assert_eq!(effect_among(not_regular, &dir), Effect::AbortsMerge);
        let dangling = [
            f(&release_file::NOT_REGULAR, "a symlink that dangles"),
            os.clone(),
        ];
        assert_eq!(effect_among(not_regular, &dangling), Effect::Ignored);
        let unreadable = refusal("image/unreadable").unwrap();
        let broken = [f(&crate::lint::rules::image::UNREADABLE, ""), os];
        assert_eq!(effect_among(unreadable, &broken), Effect::AbortsMerge);
    }

    #[test]
    fn a_warning_rule_predicts_no_refusal() {
        assert!(refusal("release/prefix-fallback").is_none());
        assert_eq!(
            refusal("match/scope").map(|r| r.effect),
            Some(Effect::Ignored)
        );
    }
}

/// What becomes of a unit an image ships, as `systemctl show` tells it after a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// Started and ran (active, or exited with success).
    Ran,
    /// Never started: nothing pulled it in.
    NotStarted,
    /// Failed with `status=203/EXEC`: the program could not be executed.
    Exec,
    /// Failed with `status=216/GROUP`.
    Group,
    /// Failed with `status=217/USER`.
    User,
    /// Not loadable (`bad-setting`): systemd refuses the unit file.
    BadSetting,
    /// No such unit (`not-found`).
    NotFound,
}

impl Fate {
    /// A fate systemd reports as a failure (the unit is failed, refused or missing).
    pub fn is_failure(self) -> bool {
        !matches!(self, Fate::Ran | Fate::NotStarted)
    }
}

/// Rules whose finding predicts a unit's fate. A finding at error severity predicts the
/// failure; the same rule at warning severity (a `-` prefix, an account lint cannot check)
/// predicts that the unit still runs. When several fire, the one systemd meets first wins:
/// the unit file is loaded before anything runs, a unit nothing starts never fails, and
/// the exec child resolves the user, then the groups, then the program.
pub const UNIT_FATES: &[(&Rule, Fate)] = &[
    (&units::NO_EXEC_START, Fate::BadSetting),
    (&units::DANGLING_LINK, Fate::NotFound),
    (&units::UNKNOWN_USER, Fate::User),
    (&units::UNKNOWN_GROUP, Fate::Group),
    (&units::EXEC_MISSING, Fate::Exec),
    (&units::EXEC_NOT_EXECUTABLE, Fate::Exec),
    (&units::EXEC_INTERPRETER, Fate::Exec),
    (&units::NO_RELOAD, Fate::NotStarted),
    (&units::WANTS_AT_BOOT_ONLY, Fate::NotStarted),
];

/// The fate `f` predicts, if its rule predicts one.
pub fn unit_fate(f: &Finding) -> Option<Fate> {
    UNIT_FATES
        .iter()
        .find(|(r, _)| r.id == f.rule)
        .map(|(_, fate)| *fate)
}

/// Which of two predicted failures systemd meets first.
pub fn first_met(a: Fate, b: Fate) -> Fate {
    // A unit that never starts never fails; one that does not load never starts.
    let order = |f: Fate| match f {
        Fate::BadSetting | Fate::NotFound => 0,
        Fate::NotStarted => 1,
        Fate::User => 2,
        Fate::Group => 3,
        Fate::Exec => 4,
        Fate::Ran => 5,
    };
    if order(b) < order(a) { b } else { a }
}

/// Rules whose finding on a release directory means systemd-sysupdate fails every verb
/// for the transfer (`list` and `check-new` included): the transfer file or the manifest
/// does not load. The other transfer and manifest rules change which versions are seen,
/// or fail later (a download, a symlink), and are predicted by the versions lint's
/// readers find.
pub const SYSUPDATE_FAILURES: &[&Rule] = &[
    &release_dir::TRANSFER_SYNTAX,
    &release_dir::TRANSFER_REQUIRED,
    &release_dir::TRANSFER_TYPES,
    &release_dir::TRANSFER_PATTERN,
    &release_dir::TRANSFER_VERIFY,
    &release_dir::SUMS_SYNTAX,
    &release_dir::SUMS_MISSING,
];

/// Whether `f` says every sysupdate verb fails.
pub fn fails_sysupdate(f: &Finding) -> bool {
    f.severity == crate::lint::Severity::Error && SYSUPDATE_FAILURES.iter().any(|r| r.id == f.rule)
}
