//! What lint says systemd will do with a deployment: merged or refused (and by which rule,
//! with which of systemd's words), which file a merged host shows, whether `/usr/sbin` goes.

use serde::Serialize;
use sysext_builder::Arch;

use super::stage::Built;
use super::variant::{Deployment, Payload, token};
use crate::lint::effects::{self, Effect};
use crate::lint::rules::{content, matching};
use crate::lint::{Linter, Severity, deployment};

/// One of lint's findings that predicts a refusal.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub rule: &'static str,
    pub effect: Effect,
    pub message: String,
    /// The phrases of systemd's log that would confirm it.
    #[serde(skip)]
    pub words: &'static [&'static str],
}

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub merges: bool,
    /// Why not, when it does not merge.
    pub refusals: Vec<Refusal>,
    /// A file a merged host shows, and what it holds (`/usr/share/dt00001/probe`).
    pub probe: Option<(String, String)>,
    /// The image's `usr/sbin` replaces the host's (a symlink to bin).
    pub sbin_hidden: bool,
    /// Every finding, `rule (severity)`, for the report.
    pub findings: Vec<String>,
}

impl Prediction {
    fn merged(probe: Option<(String, String)>) -> Prediction {
        Prediction {
            merges: true,
            refusals: Vec::new(),
            probe,
            sbin_hidden: false,
            findings: Vec::new(),
        }
    }
}

/// Lint's prediction for deployment `index`, whose files are `built`, on `arch`.
pub fn predict(
    linter: &Linter,
    index: u32,
    d: &Deployment,
    built: &[Built],
    arch: Arch,
) -> Result<Prediction, String> {
    let t = token(index);
    match d {
        Deployment::Single { image } | Deployment::Masked { image } => {
            let b = built.first().ok_or("nothing was built")?;
            let (report, _) = linter
                .lint_image(&b.file)
                .map_err(|e| format!("lint {}: {e}", b.file.display()))?;
            let file = b
                .file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let refusals: Vec<Refusal> = report
                .findings
                .iter()
                .filter_map(|f| {
                    effects::refusal(f.rule).map(|r| Refusal {
                        rule: r.rule.id,
                        effect: effects::effect_among(r, &report.findings),
                        message: f.message.clone(),
                        words: r.words,
                    })
                })
                .collect();
            let probe = match image.payload {
                Payload::Usr | Payload::UsrAndOpt | Payload::Sbin => {
                    Some((format!("/usr/share/{t}/probe"), file.clone()))
                }
                Payload::Opt => Some((format!("/opt/{t}/probe"), file.clone())),
                Payload::ReleaseOnly => None,
            };
            let sbin_hidden = report
                .findings
                .iter()
                .any(|f| f.rule == content::USR_SBIN.id && f.severity == Severity::Error);
            let findings = report
                .findings
                .iter()
                .map(|f| format!("{} ({})", f.rule, f.severity.as_str()))
                .collect();
            let mut p = Prediction {
                merges: refusals.is_empty(),
                refusals,
                probe,
                sbin_hidden,
                findings,
            };
            let [etc, run, _] = deployment::SEARCH_PATH;
            if matches!(d, Deployment::Masked { .. })
                && deployment::winning_dir(&[run, etc]) == Some(etc)
            {
                // The mask is an entry of the same name earlier in the search path: it
                // wins, and an empty directory carries no release data.
                let no_data = effects::refusal(matching::NO_DATA.id).ok_or("no NO_DATA")?;
                p.merges = false;
                p.sbin_hidden = false;
                p.refusals = vec![Refusal {
                    rule: "deployment/masked",
                    effect: Effect::Ignored,
                    message: format!("an empty directory {t} in {etc} masks {}", b.entry),
                    words: no_data.words,
                }];
            }
            Ok(p)
        }
        Deployment::Versioned { .. } => {
            let files: Vec<String> = built
                .iter()
                .filter_map(|b| b.entry.rsplit('/').next().map(str::to_string))
                .collect();
            Ok(match deployment::pick_versioned(&t, &files, arch) {
                Some(f) => {
                    Prediction::merged(Some((format!("/usr/share/{t}/probe"), f.to_string())))
                }
                None => Prediction {
                    merges: false,
                    refusals: vec![Refusal {
                        rule: "deployment/no-version-for-arch",
                        effect: Effect::Ignored,
                        message: format!("no file in {t}.raw.v is for {arch} or for any arch"),
                        words: &[],
                    }],
                    probe: None,
                    sbin_hidden: false,
                    findings: Vec::new(),
                },
            })
        }
        Deployment::Stacked { suffixes, .. } => {
            let names: Vec<String> = suffixes.iter().map(|s| format!("{t}{s}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let winner = deployment::stacking_winner(&refs).ok_or("no names")?;
            Ok(Prediction::merged(Some((
                format!("/usr/share/dtstack/{t}/winner"),
                winner.to_string(),
            ))))
        }
    }
}
