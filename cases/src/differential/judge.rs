//! Lint's prediction against what systemd did: agreement needs the same outcome for the
//! same reason (systemd's own words for one of lint's refusal rules), the same whole-merge
//! abort, and, once merged, the files lint said a host would see.

use crate::lint::effects::{self, Effect};

use super::observe::Observation;
use super::predict::Prediction;

/// `Ok` when they agree; otherwise what differs, in one line.
pub fn judge(p: &Prediction, o: &Observation, sbin_checked: bool) -> Result<(), String> {
    let rules = || {
        p.refusals
            .iter()
            .map(|r| r.rule)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (p.merges, o.merged) {
        (true, false) => {
            return Err(format!(
                "lint predicts a merge, systemd {}",
                if o.aborted {
                    "failed the whole merge"
                } else {
                    "ignored the image"
                }
            ));
        }
        (false, true) => {
            return Err(format!(
                "lint predicts a refusal ({}), systemd merged it",
                rules()
            ));
        }
        (false, false) => {
            let aborts = p.refusals.iter().any(|r| r.effect == Effect::AbortsMerge);
            if o.alone && aborts != o.aborted {
                return Err(if aborts {
                    format!(
                        "lint predicts the whole merge fails ({}), systemd only ignored the image",
                        rules()
                    )
                } else {
                    format!(
                        "lint predicts the image is ignored ({}), systemd failed the whole merge",
                        rules()
                    )
                });
            }
            let confirmed = p
                .refusals
                .iter()
                .any(|r| r.words.is_empty() || effects::said(r.words, &o.words));
            if !confirmed {
                return Err(format!(
                    "both refuse, but systemd's words are not those of lint's rule ({})",
                    rules()
                ));
            }
        }
        (true, true) => {
            if let Some((path, want)) = &p.probe {
                match o.probes.get(path) {
                    Some(got) if got == want => {}
                    Some(got) => {
                        return Err(format!(
                            "merged, but {path} holds {got:?}, lint predicts {want:?}"
                        ));
                    }
                    None => return Err(format!("merged, but {path} is not there")),
                }
            }
            if !o.outside_visible.is_empty() {
                return Err(format!(
                    "merged, and content outside /usr and /opt appeared: {}",
                    o.outside_visible.join(", ")
                ));
            }
            if sbin_checked && p.sbin_hidden != o.sbin_hidden {
                return Err(if p.sbin_hidden {
                    "lint predicts the host's /usr/sbin is hidden, it stayed visible".into()
                } else {
                    "the host's /usr/sbin disappeared under the merge, lint does not predict it"
                        .into()
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::predict::Refusal;
    use super::*;

    fn refused(effect: Effect, words: &'static [&'static str]) -> Prediction {
        Prediction {
            merges: false,
            refusals: vec![Refusal {
                rule: "match/id-mismatch",
                effect,
                message: String::new(),
                words,
            }],
            probe: None,
            sbin_hidden: false,
            findings: Vec::new(),
        }
    }

    #[test]
    fn a_refusal_agrees_only_on_systemds_words_for_the_rule() {
        let p = refused(Effect::Ignored, &["is for OS '"]);
        let mut o = Observation {
            words: "Extension 'dt00001' is for OS 'fedora', but deployed on top of 'debian'."
                .into(),
            ..Default::default()
        };
        assert!(judge(&p, &o, false).is_ok());
        o.words = "Extension 'dt00001' is for architecture 'arm64'".into();
        assert!(
            judge(&p, &o, false)
                .unwrap_err()
                .contains("not those of lint's rule")
        );
    }

    #[test]
    fn a_whole_merge_failure_is_not_an_ignored_image() {
        let p = refused(Effect::Ignored, &["No medium found"]);
        let o = Observation {
            aborted: true,
            alone: true,
            words: "No medium found".into(),
            ..Default::default()
        };
        assert!(
            judge(&p, &o, false)
                .unwrap_err()
                .contains("failed the whole merge")
        );
    }

    #[test]
    fn a_merge_must_show_the_predicted_file() {
        let p = Prediction {
            merges: true,
            refusals: Vec::new(),
            probe: Some(("/usr/share/dt00001/probe".into(), "dt00001.raw".into())),
            sbin_hidden: false,
            findings: Vec::new(),
        };
        let mut o = Observation {
            merged: true,
            ..Default::default()
        };
        assert!(judge(&p, &o, false).unwrap_err().contains("is not there"));
        o.probes
            .insert("/usr/share/dt00001/probe".into(), "dt00001.raw".into());
        assert!(judge(&p, &o, false).is_ok());
    }
}
