//! What a case can conclude, typed so that only the right thing can satisfy a negative
//! test: a case passes, fails an assertion (with the guest's own words kept apart from ours),
//! or cannot run because the harness broke (a guest that died, SSH lost, a slow boot). A
//! harness error is never an expected failure.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysext_harness::HarnessError;

use crate::via::Via;

/// The cases a subject can run, in the order they run. Each belongs to one [`Via`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    /// Merged at run time: listed on /usr (and /opt), its files visible, /usr read-only.
    Merge,
    /// Merged at run time: the manifest's commands and every binary load.
    Binaries,
    /// Merged at run time: the units it enables come up and stay up, nothing failed.
    Services,
    /// Merged at run time: unmerged, /usr exactly as before.
    Unmerge,
    /// Merged at run time: still merged, units up, after `systemctl restart
    /// systemd-sysext` and after a real reboot.
    Reboot,
    /// Baked into the Flatcar guest's disk and merged during a cold boot.
    Boot,
    /// Provisioned by Ignition at the Flatcar guest's first boot.
    Ignition,
}

impl Case {
    /// The cases that merge at run time in a restored guest, every subject's. The reboot
    /// case merges at run time too, but costs a cold boot under TCG: the suite runs it
    /// where a reboot can break something (images that start units), `run` on request.
    pub const RUNTIME: [Case; 4] = [Case::Merge, Case::Binaries, Case::Services, Case::Unmerge];
    /// Every case of the run-time way.
    const RUNTIME_WAY: [Case; 5] = [
        Case::Merge,
        Case::Binaries,
        Case::Services,
        Case::Unmerge,
        Case::Reboot,
    ];
    /// Every case.
    pub const ALL: [Case; 7] = [
        Case::Merge,
        Case::Binaries,
        Case::Services,
        Case::Unmerge,
        Case::Reboot,
        Case::Boot,
        Case::Ignition,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::Merge => "merge",
            Case::Binaries => "binaries",
            Case::Services => "services",
            Case::Unmerge => "unmerge",
            Case::Reboot => "reboot",
            Case::Boot => "boot",
            Case::Ignition => "ignition",
        }
    }

    /// How the case's image reaches the guest.
    pub fn via(self) -> Via {
        match self {
            Case::Boot => Via::Baked,
            Case::Ignition => Via::Ignition,
            _ => Via::Runtime,
        }
    }

    /// The cases a way of reaching the guest runs.
    pub fn of(via: Via) -> &'static [Case] {
        match via {
            Via::Runtime => &Case::RUNTIME_WAY,
            Via::Baked => &[Case::Boot],
            Via::Ignition => &[Case::Ignition],
        }
    }

    /// Cases that cannot say anything once the run-time merge was refused (the merge case
    /// says why, once).
    pub fn needs_merge(self) -> bool {
        matches!(
            self,
            Case::Binaries | Case::Services | Case::Unmerge | Case::Reboot
        )
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A case name that is not one of [`Case::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown case '{0}': use one of merge, binaries, services, unmerge, boot, ignition")]
pub struct UnknownCase(pub String);

impl FromStr for Case {
    type Err = UnknownCase;
    fn from_str(s: &str) -> Result<Case, UnknownCase> {
        Case::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCase(s.to_string()))
    }
}

/// A failed check: what we expected and saw (our words), and what the guest said about it
/// (systemd's journal lines, `systemctl show` properties, a command's own stderr), verbatim.
/// Expected failures are matched against `evidence` only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    pub explanation: String,
    pub evidence: Vec<String>,
}

impl Assertion {
    pub fn new(explanation: impl Into<String>) -> Assertion {
        Assertion {
            explanation: explanation.into(),
            evidence: Vec::new(),
        }
    }

    /// Adds the guest's words: each non-empty line once, in order.
    pub fn with_evidence(mut self, text: &str) -> Assertion {
        for line in text.lines().map(str::trim_end) {
            if !line.trim().is_empty() && !self.evidence.iter().any(|l| l == line) {
                self.evidence.push(line.to_string());
            }
        }
        self
    }

    /// The pins the evidence does not hold (see [`pin_holds`]); empty when all hold.
    pub fn missing_pins(&self, pinned: &[String]) -> Vec<String> {
        pinned
            .iter()
            .filter(|p| !self.evidence.iter().any(|l| pin_holds(p, l)))
            .cloned()
            .collect()
    }
}

/// Whether one evidence line says what a pin pins. A pin shaped like a unit property
/// (`ActiveState=inactive`, `UpheldBy=`) is the whole `NAME=VALUE` line `systemctl show`
/// prints, never part of one: `UpheldBy=` is in every `UpheldBy=multi-user.target`. Any
/// other pin is systemd's sentence, found anywhere in the line.
pub fn pin_holds(pin: &str, line: &str) -> bool {
    if is_property(pin) {
        line.trim() == pin.trim()
    } else {
        line.contains(pin)
    }
}

/// `Name=...` with a systemd property name: a capital, then letters and digits only.
fn is_property(pin: &str) -> bool {
    let Some((name, _)) = pin.split_once('=') else {
        return false;
    };
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

impl fmt::Display for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)?;
        if !self.evidence.is_empty() {
            f.write_str("\nthe guest said:")?;
            for l in &self.evidence {
                write!(f, "\n  | {l}")?;
            }
        }
        Ok(())
    }
}

/// Why a case body stopped early.
#[derive(Debug)]
pub enum CaseError {
    /// A check failed: the extension's fault (or the test's expectation).
    Fail(Assertion),
    /// `systemd-sysext merge` did not merge the image: the `merge` case's failure, and the
    /// reason every other run-time case cannot run.
    MergeRefused(Assertion),
    /// The harness could not do its part.
    Harness(HarnessError),
}

impl From<HarnessError> for CaseError {
    fn from(e: HarnessError) -> CaseError {
        CaseError::Harness(e)
    }
}

impl From<Assertion> for CaseError {
    fn from(a: Assertion) -> CaseError {
        CaseError::Fail(a)
    }
}

/// A failed check in our own words only (the sysupdate cycles quote systemd inside them).
impl From<String> for CaseError {
    fn from(explanation: String) -> CaseError {
        CaseError::Fail(Assertion::new(explanation))
    }
}

impl From<&str> for CaseError {
    fn from(explanation: &str) -> CaseError {
        CaseError::Fail(Assertion::new(explanation))
    }
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseError::Fail(a) | CaseError::MergeRefused(a) => a.fmt(f),
            CaseError::Harness(e) => write!(f, "harness error at {}: {e}", e.stage()),
        }
    }
}

/// What a case body returns.
pub type CaseResult = Result<(), CaseError>;

/// Why a way of reaching the guest ([`Via`]) could not hand the case a guest.
#[derive(Debug)]
pub enum NotReached {
    /// The harness could not (no guest image, a restore that failed, a slow boot twice):
    /// no verdict on the image.
    Harness { stage: String, message: String },
    /// The guest never gave a login with the image in it, and systemd said why: the case's
    /// verdict, with the console as its artifact.
    BrokeBoot {
        assertion: Assertion,
        console: String,
    },
}

impl NotReached {
    pub fn harness(stage: &str, message: impl fmt::Display) -> NotReached {
        NotReached::Harness {
            stage: stage.to_string(),
            message: message.to_string(),
        }
    }
}

impl From<HarnessError> for NotReached {
    fn from(e: HarnessError) -> NotReached {
        NotReached::harness(&e.stage(), &e)
    }
}

/// The verdict on one case after comparing with what the manifest expected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Verdict {
    /// Passed, or failed exactly as the manifest expected (`expected_failure`).
    Pass {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_failure: Option<Assertion>,
        #[serde(default)]
        notes: Vec<String>,
    },
    /// A check failed (or passed where it should have failed).
    Fail {
        assertion: Assertion,
        #[serde(default)]
        notes: Vec<String>,
    },
    /// The harness broke at `stage`: not a verdict on the extension.
    Error { stage: String, message: String },
    /// Not run, and why (another case's failure already says it).
    NotRun { reason: String },
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass { .. } => "pass",
            Verdict::Fail { .. } => "FAIL",
            Verdict::Error { .. } => "ERROR",
            Verdict::NotRun { .. } => "not run",
        }
    }

    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass { .. })
    }

    /// The exit status of a verb that ran this one case: 0 passed, 1 failed or not run,
    /// 2 the harness broke.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Pass { .. } => 0,
            Verdict::Error { .. } => 2,
            _ => 1,
        }
    }

    /// Where the artifacts of a case that did not pass went, from its notes.
    pub fn artifacts(&self) -> Option<&str> {
        let notes = match self {
            Verdict::Pass { notes, .. } | Verdict::Fail { notes, .. } => notes,
            _ => return None,
        };
        notes.iter().find_map(|n| n.strip_prefix(ARTIFACTS_NOTE))
    }
}

/// How a note names the artifacts directory.
const ARTIFACTS_NOTE: &str = "artifacts: ";

/// How one case went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub duration: Duration,
    /// The run-time merge itself was refused: cases run after this one in the same session
    /// need not say so again.
    pub merge_refused: bool,
}

impl Outcome {
    /// A harness error before the case could start (no guest, no mirror).
    pub fn harness_error(stage: &str, message: impl fmt::Display, duration: Duration) -> Outcome {
        Outcome {
            verdict: Verdict::Error {
                stage: stage.to_string(),
                message: message.to_string(),
            },
            duration,
            merge_refused: false,
        }
    }

    /// The same outcome with `note` added: to a verdict's notes, or to a harness error's
    /// message.
    pub fn noted(mut self, note: String) -> Outcome {
        match &mut self.verdict {
            Verdict::Pass { notes, .. } | Verdict::Fail { notes, .. } => notes.push(note),
            Verdict::Error { message, .. } => message.push_str(&format!("\n{note}")),
            Verdict::NotRun { reason } => reason.push_str(&format!("; {note}")),
        }
        self
    }

    /// The nextest form: notes on stderr for a pass, the whole story as the error otherwise.
    pub fn into_test_result(self, name: &str) -> Result<(), String> {
        match self.verdict {
            Verdict::Pass {
                expected_failure,
                notes,
            } => {
                if let Some(a) = expected_failure {
                    eprintln!("{name}: failed as expected: {a}");
                }
                for n in notes {
                    eprintln!("{name}: note: {n}");
                }
                Ok(())
            }
            Verdict::Fail { assertion, notes } => {
                let mut s = assertion.to_string();
                for n in notes {
                    s.push_str(&format!("\n{n}"));
                }
                Err(s)
            }
            Verdict::Error { stage, message } => Err(format!(
                "harness error at {stage} (not a verdict on the extension): {message}"
            )),
            Verdict::NotRun { reason } => Err(format!("not run: {reason}")),
        }
    }
}

/// A negative test: `case` must fail an assertion, and the guest's own words (systemd's
/// journal lines and properties, a command's stderr; never our explanation) must hold
/// every pin of `systemd` ([`pin_holds`]). A harness error never satisfies it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFailure {
    pub case: Case,
    pub systemd: Vec<String>,
}

/// The verdict on a case's result: against `expected` (a negative test) only the guest's
/// own words count, and a harness error never does. `keep` saves the artifacts (console,
/// journal, sysext status) of anything but a plain pass and says where they went.
pub fn judge(
    result: CaseResult,
    expected: Option<&ExpectedFailure>,
    mut notes: Vec<String>,
    keep: impl FnOnce() -> PathBuf,
) -> Verdict {
    let mut keep = Some(keep);
    let mut keep = |notes: &mut Vec<String>| {
        if let Some(k) = keep.take() {
            notes.push(format!("{ARTIFACTS_NOTE}{}", k().display()));
        }
    };
    match (result, expected) {
        (Ok(()), None) => Verdict::Pass {
            expected_failure: None,
            notes,
        },
        (Ok(()), Some(exp)) => {
            keep(&mut notes);
            Verdict::Fail {
                assertion: Assertion::new(format!(
                    "expected this case to fail with the guest saying {:?}, but it passed",
                    exp.systemd
                )),
                notes,
            }
        }
        (Err(CaseError::Harness(e)), _) => {
            keep(&mut notes);
            Verdict::Error {
                stage: e.stage(),
                message: format!("{e}\n{}", notes.join("\n")),
            }
        }
        (Err(CaseError::Fail(a) | CaseError::MergeRefused(a)), None) => {
            keep(&mut notes);
            Verdict::Fail {
                assertion: a,
                notes,
            }
        }
        (Err(CaseError::Fail(a) | CaseError::MergeRefused(a)), Some(exp)) => {
            keep(&mut notes);
            let missing = a.missing_pins(&exp.systemd);
            if missing.is_empty() {
                Verdict::Pass {
                    expected_failure: Some(a),
                    notes,
                }
            } else {
                Verdict::Fail {
                    assertion: Assertion {
                        explanation: format!(
                            "failed, but not for the reason it exists for: the guest never said {missing:?} ({})",
                            a.explanation
                        ),
                        evidence: a.evidence,
                    },
                    notes,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_round_trip_and_typos_are_errors() {
        for c in Case::ALL {
            assert_eq!(c.name().parse::<Case>().unwrap(), c);
            assert!(Case::of(c.via()).contains(&c));
        }
        assert!("service".parse::<Case>().is_err());
    }

    #[test]
    fn evidence_is_kept_once_and_matched_apart_from_our_words() {
        let a = Assertion::new("expected x.service active; status=203/EXEC is our text here")
            .with_evidence("x.service: Main process exited, code=exited, status=1/FAILURE\n\nx.service: Main process exited, code=exited, status=1/FAILURE\n");
        assert_eq!(a.evidence.len(), 1);
        assert!(a.missing_pins(&["status=1/FAILURE".into()]).is_empty());
        assert_eq!(
            a.missing_pins(&["status=203/EXEC".into()]),
            vec!["status=203/EXEC".to_string()],
            "our explanation never satisfies a pin"
        );
    }

    #[test]
    fn a_property_pin_is_the_whole_line_not_a_prefix_of_one() {
        let upheld = Assertion::new("x").with_evidence(
            "ActiveState=inactive\nSubState=dead\nUpheldBy=multi-user.target\nLoadState=loaded",
        );
        assert_eq!(
            upheld.missing_pins(&["UpheldBy=".into(), "SubState=dead".into()]),
            vec!["UpheldBy=".to_string()],
            "`UpheldBy=` pins an empty UpheldBy, not every UpheldBy line"
        );
        let nothing = Assertion::new("x").with_evidence("UpheldBy=\nLoadState=loaded");
        assert!(nothing.missing_pins(&["UpheldBy=".into()]).is_empty());
        // A sentence with `=` in it is still a sentence.
        let exec = Assertion::new("x")
            .with_evidence("x.service: Main process exited, code=exited, status=203/EXEC");
        assert!(exec.missing_pins(&["status=203/EXEC".into()]).is_empty());
    }

    fn failed_with(evidence: &str) -> CaseResult {
        Err(CaseError::Fail(
            Assertion::new("ours").with_evidence(evidence),
        ))
    }

    #[test]
    fn a_harness_error_never_passes_a_negative_test() {
        let exp = ExpectedFailure {
            case: Case::Services,
            systemd: vec!["status=203/EXEC".into()],
        };
        let e = HarnessError::Ssh("connection lost: status=203/EXEC".into());
        let v = judge(Err(e.into()), Some(&exp), Vec::new(), PathBuf::new);
        assert!(matches!(v, Verdict::Error { .. }), "{v:?}");
        let v = judge(
            failed_with("Main process exited, code=exited, status=203/EXEC"),
            Some(&exp),
            Vec::new(),
            || PathBuf::from("/a"),
        );
        assert!(v.is_pass(), "{v:?}");
        assert_eq!(v.artifacts(), Some("/a"));
    }

    #[test]
    fn verdicts_round_trip_through_json() {
        let v = Verdict::Fail {
            assertion: Assertion::new("no").with_evidence("said"),
            notes: vec!["artifacts: /x".into()],
        };
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains("\"result\":\"fail\""), "{text}");
        let back: Verdict = serde_json::from_str(&text).unwrap();
        assert_eq!(back.artifacts(), Some("/x"));
    }
}
