//! What a family run is asked to do and what it found: the types the CLI, the nextest
//! trials and `--format json` share.

use serde::Serialize;
use sysext_builder::Arch;
use sysext_builder::guest::Profile;

/// What one family run is asked to do.
#[derive(Debug, Clone)]
pub struct Run {
    pub seed: u64,
    pub count: u32,
    pub arch: Arch,
    pub profile: Profile,
    /// The way without this tool, for `bench`: one image per merge and one merge at a time,
    /// one `systemd-analyze compare-versions` per version pair.
    pub naive: bool,
    /// At most this many disagreements are shrunk (each costs guest time of its own).
    pub shrink: usize,
}

/// How many disagreements a run shrinks unless told otherwise.
pub const SHRINK_DEFAULT: usize = 8;

/// One difference between our prediction and systemd.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// `<kind>::<token>`, or the version pair.
    pub name: String,
    /// The generated input, in words.
    pub variant: String,
    /// What differs.
    pub what: String,
    /// Our side: lint's findings, or our order.
    pub lint: String,
    /// systemd's side, in its own words.
    pub systemd: String,
    /// The smallest input that still disagrees, when shrinking found one.
    pub shrunk: Option<String>,
    /// The command that generates this input again.
    pub replay: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyReport {
    pub family: &'static str,
    pub arch: String,
    pub profile: String,
    pub seed: u64,
    /// Inputs compared.
    pub checked: usize,
    pub agreed: usize,
    pub disagreements: Vec<Disagreement>,
    /// Host time to generate, build and predict.
    pub build_seconds: f64,
    /// Guest time to observe every input.
    pub guest_seconds: f64,
    /// Inputs per second of guest time.
    pub per_second: f64,
    pub notes: Vec<String>,
}

impl FamilyReport {
    pub fn passed(&self) -> bool {
        self.disagreements.is_empty() && self.agreed == self.checked && self.checked > 0
    }
}

/// What a disagreement says without its particulars (the rules and values in brackets):
/// a shrink step must keep the story, not trade it for another disagreement.
pub fn story(what: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in what.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::story;

    #[test]
    fn a_story_drops_the_particulars_only() {
        assert_eq!(
            story("lint predicts a refusal (match/id-mismatch), systemd merged it"),
            story("lint predicts a refusal (match/scope, release/other), systemd merged it")
        );
        assert_ne!(
            story("lint predicts a refusal (match/id-mismatch), systemd merged it"),
            story(
                "both refuse, but systemd's words are not those of lint's rule (match/id-mismatch)"
            )
        );
    }
}
