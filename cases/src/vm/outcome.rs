//! What a VM case can conclude, typed so that only the right thing can satisfy a negative
//! test: a case passes, fails an assertion (with the guest's own words kept apart from ours),
//! or cannot run because the harness broke (a guest that died, SSH lost). A harness error is
//! never an expected failure.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sysext_harness::HarnessError;

/// The VM cases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    Merge,
    Binaries,
    Services,
    Unmerge,
    /// The image baked into the flatcar-shaped guest's disk and merged during a cold boot
    /// (`crate::boot`), not in a restored guest at run time like the others.
    Boot,
    /// The image provisioned by Ignition at the flatcar-shaped guest's first boot
    /// (`crate::ignition`).
    Ignition,
}

impl Case {
    /// The cases that merge at run time in a restored guest.
    pub const ALL: [Case; 4] = [Case::Merge, Case::Binaries, Case::Services, Case::Unmerge];

    pub fn name(self) -> &'static str {
        match self {
            Case::Merge => "merge",
            Case::Binaries => "binaries",
            Case::Services => "services",
            Case::Unmerge => "unmerge",
            Case::Boot => "boot",
            Case::Ignition => "ignition",
        }
    }

    /// How the case consumes the image: `runtime` (installed into a restored guest and
    /// merged with `systemd-sysext merge`) or `baked` (in the disk, merged at boot).
    pub fn via(self) -> &'static str {
        match self {
            Case::Boot => "baked",
            Case::Ignition => "ignition",
            _ => "runtime",
        }
    }

    /// Every case but `merge` needs the image merged first.
    pub fn needs_merge(self) -> bool {
        !matches!(self, Case::Merge | Case::Boot | Case::Ignition)
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
            .chain([Case::Boot, Case::Ignition])
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCase(s.to_string()))
    }
}

/// A failed check: what we expected and saw (our words), and what the guest said about it
/// (systemd's journal lines, `systemctl show` properties, a command's own stderr), verbatim.
/// Expected failures are matched against `evidence` only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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

    /// Whether every pinned string appears in some evidence line.
    pub fn evidence_contains_all(&self, pinned: &[String]) -> Result<(), Vec<String>> {
        let missing: Vec<String> = pinned
            .iter()
            .filter(|p| !self.evidence.iter().any(|l| l.contains(p.as_str())))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }
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
    /// reason every other case cannot run.
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

/// The verdict on one case after comparing with what the manifest expected.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Verdict {
    /// Passed, or failed exactly as the manifest expected (`expected_failure`).
    Pass {
        #[serde(skip_serializing_if = "Option::is_none")]
        expected_failure: Option<Assertion>,
        notes: Vec<String>,
    },
    /// A check failed (or passed where it should have failed).
    Fail {
        assertion: Assertion,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_round_trip_and_typos_are_errors() {
        for c in Case::ALL {
            assert_eq!(c.name().parse::<Case>().unwrap(), c);
        }
        assert!("service".parse::<Case>().is_err());
    }

    #[test]
    fn evidence_is_kept_once_and_matched_apart_from_our_words() {
        let a = Assertion::new("expected x.service active; status=203/EXEC is our text here")
            .with_evidence("x.service: Main process exited, code=exited, status=1/FAILURE\n\nx.service: Main process exited, code=exited, status=1/FAILURE\n");
        assert_eq!(a.evidence.len(), 1);
        assert!(
            a.evidence_contains_all(&["status=1/FAILURE".into()])
                .is_ok()
        );
        assert_eq!(
            a.evidence_contains_all(&["status=203/EXEC".into()]),
            Err(vec!["status=203/EXEC".to_string()]),
            "our explanation never satisfies a pin"
        );
    }
}
