//! The document `sysext-test run --format json` writes and `sysext-test report` reads: one
//! serde type for both, so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use sysext_builder::Arch;

use crate::outcome::{Case, Verdict};
use crate::runner::Row;
use crate::via::Via;

/// One case of one image: where it ran, how long it took, and its verdict (flattened:
/// `result` is `pass`, `fail`, `error` or `not-run`, with that verdict's fields beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseRecord {
    pub image: String,
    pub arch: Arch,
    pub case: Case,
    pub via: Via,
    pub seconds: f64,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl From<&Row> for CaseRecord {
    fn from(r: &Row) -> CaseRecord {
        CaseRecord {
            image: r.image.clone(),
            arch: r.arch,
            case: r.case,
            via: r.case.via(),
            seconds: (r.outcome.duration.as_secs_f64() * 10.0).round() / 10.0,
            verdict: r.outcome.verdict.clone(),
        }
    }
}

/// The whole document: a list of cases.
pub fn to_json(rows: &[Row]) -> serde_json::Result<String> {
    let records: Vec<CaseRecord> = rows.iter().map(CaseRecord::from).collect();
    serde_json::to_string_pretty(&records)
}

/// Reads what [`to_json`] wrote.
pub fn parse(text: &str) -> serde_json::Result<Vec<CaseRecord>> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Assertion, Outcome};
    use std::time::Duration;

    #[test]
    fn what_run_writes_report_reads_back() {
        let rows = [Row {
            image: "hello-1.0-arm64.raw".into(),
            arch: Arch::Arm64,
            case: Case::Boot,
            outcome: Outcome {
                verdict: Verdict::Fail {
                    assertion: Assertion::new("not merged at boot")
                        .with_evidence("No medium found"),
                    notes: vec!["artifacts: /a/b".into()],
                },
                duration: Duration::from_millis(21_340),
                merge_refused: false,
            },
        }];
        let text = to_json(&rows).unwrap();
        assert!(text.contains("\"via\": \"baked\""), "{text}");
        assert!(text.contains("\"result\": \"fail\""), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].via, Via::Baked);
        assert_eq!(back[0].seconds, 21.3);
        assert_eq!(back[0].verdict.artifacts(), Some("/a/b"));
    }
}
