//! VM cases: what a user checks after installing an extension on a live host. Each case
//! starts from a restored snapshot, installs the image the bakery way, and acts only through
//! the `Vm` API, batching its checks so a case costs a few round trips into the guest.

pub(crate) mod binaries;
mod merge;
pub mod outcome;
pub mod runner;
pub(crate) mod services;
pub mod subject;
mod unmerge;

pub use outcome::{Assertion, Case, CaseError, CaseResult, Verdict};
pub use subject::Subject;
use sysext_harness::Vm;
use sysext_harness::ssh::Output;

pub fn run(case: Case, vm: &Vm, s: &Subject) -> CaseResult {
    match case {
        Case::Merge => merge::run(vm, s),
        Case::Binaries => binaries::run(vm, s),
        Case::Services => services::run(vm, s),
        Case::Unmerge => unmerge::run(vm, s),
        // Boot a disk of their own instead of using `vm`: `crate::boot::run`,
        // `crate::ignition::run`.
        Case::Boot | Case::Ignition => {
            Err(CaseError::Harness(sysext_harness::HarnessError::Command {
                cmd: "boot".into(),
                what: "boots a disk of its own (boot::run, ignition::run), not a restored guest"
                    .into(),
                output: String::new(),
            }))
        }
    }
}

/// `/usr` as a user would compare it before and after: mount, options, top-level listing.
const USR_FINGERPRINT: &str =
    "findmnt -n -o TARGET,OPTIONS --target /usr; ls -A /usr /usr/bin | md5sum";

/// What the guest looked like right after `systemd-sysext merge`, from one round trip.
pub struct Merged {
    /// `/usr` before the merge ([`USR_FINGERPRINT`]).
    pub usr_before: String,
    pub merge: Output,
    /// `systemd-sysext status --json=short`.
    pub status: String,
    /// `/usr/.systemd-sysext/extensions`.
    pub meta: String,
    /// `test -e` of each of the subject's sample files, in order.
    pub samples_present: Vec<bool>,
    /// `touch` on `/usr` (should fail with EROFS).
    pub usr_write: Output,
}

/// Installs the image as bakery users do (the file under /opt/extensions/NAME/ and the
/// symlink /etc/extensions/NAME.raw) and merges it with systemd's debug log on, so a
/// refusal carries systemd's reason (at the default level it only says "1 ignored").
/// `MergeRefused` unless the extension is listed on /usr afterwards: the exit status alone
/// says nothing (0 also when every image was ignored).
pub fn install_and_merge(vm: &Vm, s: &Subject) -> Result<Merged, CaseError> {
    let dir = format!("/opt/extensions/{}", s.name);
    let link = format!(
        "mkdir -p /etc/extensions && ln -sfn {dir}/{} /etc/extensions/{}.raw",
        s.file_name, s.name
    );
    let samples: Vec<String> = s
        .sample_files
        .iter()
        .map(|f| format!("test -e '{f}'"))
        .collect();
    let mut cmds: Vec<&str> = vec![
        &link,
        USR_FINGERPRINT,
        "SYSTEMD_LOG_LEVEL=debug systemd-sysext merge",
        "systemd-sysext status --json=short",
        "cat /usr/.systemd-sysext/extensions",
        "touch /usr/.sysext-test-probe",
    ];
    cmds.extend(samples.iter().map(String::as_str));
    let out = vm.upload_and_batch(&s.image, &format!("{dir}/{}", s.file_name), &cmds)?;
    if out[0].status != 0 {
        return Err(CaseError::Harness(sysext_harness::HarnessError::Command {
            cmd: link,
            what: format!("exited {}", out[0].status),
            output: out[0].combined(),
        }));
    }
    let mut out = out.into_iter();
    let _link = out.next();
    let mut next = || {
        out.next().unwrap_or_else(|| Output {
            status: -1,
            stdout: String::new(),
            stderr: String::new(),
        })
    };
    let merged = Merged {
        usr_before: next().stdout,
        merge: next(),
        status: next().stdout,
        meta: next().stdout,
        usr_write: next(),
        samples_present: (0..samples.len()).map(|_| next().status == 0).collect(),
    };
    let on_usr = merged_on(&merged.status, "/usr");
    if merged.merge.status != 0 || !on_usr.contains(&s.name) {
        let said = if merged.merge.status != 0 {
            format!("it exited {}", merged.merge.status)
        } else {
            format!("it exited 0 but /usr has {on_usr:?}")
        };
        return Err(CaseError::MergeRefused(
            Assertion::new(format!(
                "expected `systemd-sysext merge` to merge '{}' onto /usr; {said}",
                s.name
            ))
            .with_evidence(&refusal_lines(&merged.merge.combined(), &s.name)),
        ));
    }
    Ok(merged)
}

/// The lines of a debug-level merge that say why an image was taken or refused; the rest
/// (mount setup, hierarchy scans) would bury them.
pub(crate) fn refusal_lines(output: &str, name: &str) -> String {
    const WORDS: &[&str] = &[
        "refus",
        "incompatible",
        "ignored",
        "not allowed",
        "No medium",
        "ailed",
        "match",
        "architecture",
        "not found",
        "No suitable",
        "extension-release",
        "Extension",
    ];
    output
        .lines()
        .filter(|l| l.contains(name) || WORDS.iter().any(|w| l.contains(w)))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Extension names merged on `hierarchy` in `systemd-sysext status --json=short` output
/// (`extensions` is the string "none" or an array).
pub fn merged_on(status_json: &str, hierarchy: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(status_json) else {
        return Vec::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|row| row.get("hierarchy").and_then(|h| h.as_str()) == Some(hierarchy))
        .flat_map(|row| {
            row.get("extensions")
                .and_then(|e| e.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect()
}

/// Single-quotes `s` for the guest's shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_none_and_arrays() {
        let j = r#"[{"hierarchy":"/opt","extensions":"none","since":null},{"hierarchy":"/usr","extensions":["a","b"],"since":1}]"#;
        assert_eq!(merged_on(j, "/usr"), ["a", "b"]);
        assert!(merged_on(j, "/opt").is_empty());
        assert!(merged_on("garbage", "/usr").is_empty());
    }

    #[test]
    fn refusal_lines_keep_the_reason_and_drop_the_noise() {
        let out = "Mounting /usr...\nExtension 'x' is for architecture 'arm64', but deployed on top of 'x86-64'.\nNo suitable extensions found (1 ignored due to incompatible image(s)).\n";
        let kept = refusal_lines(out, "x");
        assert!(!kept.contains("Mounting"));
        assert!(kept.contains("deployed on top of"));
        assert!(kept.contains("1 ignored"));
    }
}
