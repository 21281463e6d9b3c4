//! lint's findings as a fate for each unit of a variant, and the comparison with the fate
//! the guest's systemd gave it.

use crate::lint::Finding;
use crate::lint::Severity;
use crate::lint::effects::{Fate, first_met, unit_fate};
use crate::lint::rules::units::{self, UNIT_DIRS};

/// What lint predicts for one unit, and the findings that say so.
#[derive(Debug, Clone)]
pub struct Predicted {
    pub unit: String,
    pub fate: Fate,
    pub because: Vec<String>,
}

/// What the guest did with one unit, and its own words.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `None`: a failure no rule predicts (another exit status, a dependency failure).
    pub fate: Option<Fate>,
    pub words: String,
}

/// The unit a finding is about: the unit file or drop-in directory its path names, or the
/// unit an enablement link names.
fn unit_of(f: &Finding) -> Option<String> {
    for dir in UNIT_DIRS {
        let Some(rest) = f.path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        return Some(match rest.split_once('/') {
            None => rest.to_string(),
            Some((sub, name)) => match sub.strip_suffix(".d") {
                Some(unit) => unit.to_string(),
                None => name.to_string(),
            },
        });
    }
    None
}

/// lint's fate for each of `units`: the first failure systemd meets among the error
/// findings about it, `NotStarted` when lint says the image's enablement is not seen
/// (`enabled`: the units its links and drop-ins pull in), else `Ran`.
pub fn predict(units: &[String], findings: &[Finding], enabled: &[String]) -> Vec<Predicted> {
    let mut out: Vec<Predicted> = units
        .iter()
        .map(|u| {
            let mut fate = Fate::Ran;
            let mut because = Vec::new();
            for f in findings {
                let Some(predicted) = unit_fate(f) else {
                    continue;
                };
                // The missing reload is the image's, so every unit it enables; any other
                // finding names its unit (a link's names the unit it starts).
                let about = if f.rule == units::NO_RELOAD.id {
                    enabled.contains(u)
                } else {
                    unit_of(f).as_deref() == Some(u.as_str())
                };
                if !about {
                    continue;
                }
                because.push(format!("{} ({:?}): {}", f.rule, f.severity, f.message));
                if f.severity == Severity::Error || predicted == Fate::NotStarted {
                    fate = if fate == Fate::Ran {
                        predicted
                    } else {
                        first_met(fate, predicted)
                    };
                }
            }
            Predicted {
                unit: u.clone(),
                fate,
                because,
            }
        })
        .collect();
    // systemd starts a socket only when the service it triggers loads ("Socket service
    // ... not loaded, refusing"): a refused service leaves its socket never started.
    let refused: Vec<String> = out
        .iter()
        .filter(|p| p.fate == Fate::BadSetting)
        .filter_map(|p| {
            p.unit
                .strip_suffix(".service")
                .map(|s| format!("{s}.socket"))
        })
        .collect();
    for p in out.iter_mut().filter(|p| refused.contains(&p.unit)) {
        p.because.push(format!(
            "its service is refused, so systemd refuses to start {} (was {:?})",
            p.unit, p.fate
        ));
        p.fate = Fate::NotStarted;
    }
    out
}

/// Ok when systemd did what lint predicted; else what differs, in words.
pub fn judge(p: &Predicted, o: &Observed) -> Result<(), String> {
    match o.fate {
        Some(f) if f == p.fate => Ok(()),
        Some(f) if f.is_failure() && p.fate == Fate::Ran => Err(format!(
            "systemd fails {} ({f:?}); lint has no error for it",
            p.unit
        )),
        Some(f) => Err(format!(
            "lint predicts {:?} for {}, systemd gave {f:?}",
            p.fate, p.unit
        )),
        None => Err(format!(
            "systemd failed {} in a way no rule predicts (lint: {:?})",
            p.unit, p.fate
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::rules::{binaries, units};

    fn finding(rule: &'static crate::lint::Rule, path: &str) -> Finding {
        Finding::new(rule, path, "m")
    }

    #[test]
    fn findings_go_to_the_unit_their_path_names() {
        let dir = "usr/lib/systemd/system";
        assert_eq!(
            unit_of(&finding(
                &units::EXEC_MISSING,
                &format!("{dir}/dt1.service.d/10-x.conf")
            ))
            .as_deref(),
            Some("dt1.service")
        );
        assert_eq!(
            unit_of(&finding(
                &units::DANGLING_LINK,
                &format!("{dir}/multi-user.target.wants/dt1-gone.service")
            ))
            .as_deref(),
            Some("dt1-gone.service")
        );
        // A file's own finding is not a unit's: the unit rules say what it does to a unit.
        assert_eq!(
            unit_of(&finding(&binaries::ARCH_MISMATCH, "usr/bin/dt1-run")),
            None
        );
    }

    #[test]
    fn the_user_is_resolved_before_the_program() {
        let dir = "usr/lib/systemd/system";
        let p = predict(
            &["dt1.service".into()],
            &[
                finding(&units::EXEC_MISSING, &format!("{dir}/dt1.service")),
                finding(&units::UNKNOWN_USER, &format!("{dir}/dt1.service")),
            ],
            &[],
        );
        assert_eq!(p[0].fate, Fate::User);
    }

    #[test]
    fn a_warning_predicts_the_unit_still_runs_and_a_failure_against_it_disagrees() {
        let dir = "usr/lib/systemd/system";
        let p = predict(
            &["dt1.service".into()],
            &[finding(&units::EXEC_MISSING, &format!("{dir}/dt1.service"))
                .with_severity(Severity::Warning)],
            &[],
        );
        assert_eq!(p[0].fate, Fate::Ran);
        let o = Observed {
            fate: Some(Fate::Exec),
            words: String::new(),
        };
        assert!(judge(&p[0], &o).unwrap_err().contains("no error"));
    }
}
