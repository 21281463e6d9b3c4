//! The images family: generated deployments built with the formats' tools, lint's
//! prediction for each, one guest merging them in batches, and every disagreement shrunk to
//! the plainest image that still disagrees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use sysext_harness::Vm;

use super::observe::{self, Guest, Item, Observation};
use super::predict::{Prediction, predict};
use super::report::{Disagreement, FamilyReport, Run};
use super::stage::{self, Built};
use super::variant::{self, Deployment, HostFacts, ImageVariant};
use crate::lint::Linter;
use crate::lint::effects::Effect;
use crate::lint::rules::content;

/// First token of shrink candidates, apart from generated ones.
const SHRINK_BASE: u32 = 90_000;

struct Case {
    index: u32,
    deployment: Deployment,
    built: Vec<Built>,
    prediction: Prediction,
}

fn item(c: &Case) -> Item {
    Item {
        index: c.index,
        entries: c.built.iter().map(|b| b.entry.clone()).collect(),
        masks: match &c.deployment {
            Deployment::Masked { image } => vec![stage::names(c.index, image).1],
            _ => Vec::new(),
        },
        sbin: c.deployment.ships_sbin(),
    }
}

/// Builds and predicts `deployments` into `pool` (in parallel: each image is one
/// mksquashfs or mkfs.erofs).
fn prepare(
    linter: &Linter,
    pool: &Path,
    scratch: &Path,
    deployments: Vec<(u32, Deployment)>,
    arch: sysext_builder::Arch,
) -> Result<Vec<Case>, String> {
    deployments
        .into_par_iter()
        .map(|(index, deployment)| {
            let built = stage::build(pool, scratch, index, &deployment)
                .map_err(|e| format!("building {}: {e}", variant::token(index)))?;
            let prediction = predict(linter, index, &deployment, &built, arch)?;
            Ok(Case {
                index,
                deployment,
                built,
                prediction,
            })
        })
        .collect()
}

/// The merges to make, in order: first each deployment lint says stalls a merge
/// (systemd refuses a mounted image with usr/lib/os-release, then retries its busy loop
/// device for 6 s), alone, so a round's stalls overlap; then each one lint says fails the
/// whole merge, alone (in a batch it would cost the batch a failed merge and a second
/// one); then the rest, [`observe::BATCH`] per merge and at most one usr/sbin shipper each.
fn batches(cases: &[Case], naive: bool) -> Vec<Vec<Item>> {
    if naive {
        return cases.iter().map(|c| vec![item(c)]).collect();
    }
    let mut stalling: Vec<Vec<Item>> = Vec::new();
    let mut alone: Vec<Vec<Item>> = Vec::new();
    let mut shared: Vec<Vec<Item>> = Vec::new();
    let mut sbin: Vec<Item> = Vec::new();
    let mut cur: Vec<Item> = Vec::new();
    for c in cases {
        let it = item(c);
        let refuses =
            |f: &dyn Fn(&super::predict::Refusal) -> bool| c.prediction.refusals.iter().any(f);
        if refuses(&|r| r.rule == content::OS_RELEASE.id) {
            stalling.push(vec![it]);
        } else if refuses(&|r| r.effect == Effect::AbortsMerge) {
            alone.push(vec![it]);
        } else if it.sbin {
            sbin.push(it);
        } else {
            cur.push(it);
            if cur.len() == observe::BATCH {
                shared.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        shared.push(cur);
    }
    for (i, it) in sbin.into_iter().enumerate() {
        match shared.get_mut(i) {
            Some(b) => b.push(it),
            None => shared.push(vec![it]),
        }
    }
    stalling.into_iter().chain(alone).chain(shared).collect()
}

/// Runs the family on `vm`: `count` deployments of `seed`.
pub fn run(
    vm: &Vm,
    linter: &Linter,
    host: &HostFacts,
    r: &Run,
    work: &Path,
    progress: &dyn Fn(&str),
) -> Result<FamilyReport, String> {
    let pool = work.join("pool");
    let scratch = work.join("scratch");
    let _ = std::fs::remove_dir_all(&pool);
    std::fs::create_dir_all(&pool).map_err(|e| format!("{}: {e}", pool.display()))?;
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let started = Instant::now();
    progress(&format!(
        "building {} generated deployments (seed {})",
        r.count, r.seed
    ));
    let deployments: Vec<(u32, Deployment)> = (0..r.count)
        .map(|i| (i, variant::generate(r.seed, i, host)))
        .collect();
    let cases = prepare(linter, &pool, &scratch, deployments, r.arch)?;
    let tar = work.join("pool.tar");
    stage::pack_tar(&pool, &[".".into()], &tar)?;
    let build_seconds = started.elapsed().as_secs_f64();
    let guest_started = Instant::now();
    let lanes = if r.naive { 1 } else { observe::LANES };
    let guest = Guest::prepare(vm, &tar, lanes).map_err(|e| format!("guest: {e}"))?;
    let sbin_checked = guest.sbin_witness.is_some();
    let groups = batches(&cases, r.naive);
    let refs: Vec<Vec<&Item>> = groups.iter().map(|b| b.iter().collect()).collect();
    let mut observed: BTreeMap<u32, Observation> = guest
        .observe(refs, &|done, total| {
            progress(&format!("merged {done}/{total} deployments"))
        })
        .map_err(|e| format!("guest: {e}"))?;
    // A disagreement seen in a shared merge is looked at again alone: its words may be in
    // lines that do not name it.
    let mut disagreements = Vec::new();
    let mut agreed = 0;
    for c in &cases {
        let mut o = observed.remove(&c.index).unwrap_or_default();
        let mut verdict = super::judge::judge(&c.prediction, &o, sbin_checked);
        if verdict.is_err() && !o.alone {
            o = guest.alone(&item(c)).map_err(|e| format!("guest: {e}"))?;
            verdict = super::judge::judge(&c.prediction, &o, sbin_checked);
        }
        match verdict {
            Ok(()) => agreed += 1,
            Err(what) => disagreements.push((c, o, what)),
        }
    }
    let guest_seconds = guest_started.elapsed().as_secs_f64();
    let mut report = Vec::new();
    let mut shrink_token = SHRINK_BASE;
    for (i, (c, o, what)) in disagreements.into_iter().enumerate() {
        let shrunk = match &c.deployment {
            Deployment::Single { image } if i < r.shrink => {
                progress(&format!("shrinking {}", variant::token(c.index)));
                let mut shrinker = Shrinker {
                    guest: &guest,
                    linter,
                    r,
                    work,
                    sbin_checked,
                    next_token: &mut shrink_token,
                };
                shrinker.shrink(image, &what)?
            }
            _ => None,
        };
        report.push(Disagreement {
            name: format!("{}::{}", c.deployment.kind(), variant::token(c.index)),
            variant: c.deployment.describe(),
            what,
            lint: lint_words(&c.prediction),
            systemd: systemd_words(&o),
            shrunk,
            replay: format!(
                "sysext-test differential --family images --arch {} --profile {} --seed {} --count {}",
                r.arch,
                r.profile,
                r.seed,
                c.index + 1
            ),
        });
    }
    Ok(FamilyReport {
        family: "images",
        arch: r.arch.to_string(),
        profile: r.profile.to_string(),
        seed: r.seed,
        checked: cases.len(),
        agreed,
        disagreements: report,
        build_seconds,
        guest_seconds,
        per_second: cases.len() as f64 / guest_seconds.max(1e-9),
        notes: Vec::new(),
    })
}

fn lint_words(p: &Prediction) -> String {
    if p.merges {
        format!(
            "merges{}",
            if p.findings.is_empty() {
                String::new()
            } else {
                format!(" (findings: {})", p.findings.join(", "))
            }
        )
    } else {
        p.refusals
            .iter()
            .map(|r| format!("{} ({:?}): {}", r.rule, r.effect, r.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn systemd_words(o: &Observation) -> String {
    let head = if o.merged {
        "merged"
    } else if o.aborted {
        "the whole merge failed"
    } else {
        "not merged"
    };
    let lines = crate::sysext_status::refusal_lines(&o.words, "dt");
    if lines.is_empty() {
        head.to_string()
    } else {
        format!("{head}:\n{lines}")
    }
}

/// Shrinks a disagreeing image: one knob at a time back to its plainest value, kept when
/// the candidate still disagrees the same way (the same [`super::report::story`]), until no candidate does. Returns the smallest variant in
/// words, and what it disagrees on.
/// What shrinking needs of the run: the guest, lint, and fresh tokens for candidates.
struct Shrinker<'a> {
    guest: &'a Guest<'a>,
    linter: &'a Linter,
    r: &'a Run,
    work: &'a Path,
    sbin_checked: bool,
    next_token: &'a mut u32,
}

impl Shrinker<'_> {
    fn shrink(&mut self, start: &ImageVariant, start_what: &str) -> Result<Option<String>, String> {
        let (guest, linter, r, work, sbin_checked) = (
            self.guest,
            self.linter,
            self.r,
            self.work,
            self.sbin_checked,
        );
        let next_token = &mut *self.next_token;
        let mut current = start.clone();
        let mut last_what = None;
        for _ in 0..16 {
            let candidates = current.shrink_candidates();
            if candidates.is_empty() {
                break;
            }
            let deployments: Vec<(u32, Deployment)> = candidates
                .into_iter()
                .map(|image| {
                    *next_token += 1;
                    (*next_token, Deployment::Single { image })
                })
                .collect();
            let pool: PathBuf = work.join(format!("shrink-{next_token}"));
            let _ = std::fs::remove_dir_all(&pool);
            std::fs::create_dir_all(&pool).map_err(|e| format!("{}: {e}", pool.display()))?;
            let cases = prepare(linter, &pool, &work.join("scratch"), deployments, r.arch)?;
            let tar = work.join("shrink.tar");
            stage::pack_tar(&pool, &[".".into()], &tar)?;
            Guest::prepare(guest.vm, &tar, guest.lanes).map_err(|e| format!("guest: {e}"))?;
            let mut found = None;
            for c in &cases {
                let o = guest.alone(&item(c)).map_err(|e| format!("guest: {e}"))?;
                match super::judge::judge(&c.prediction, &o, sbin_checked) {
                    Err(what)
                        if super::report::story(&what) == super::report::story(start_what) =>
                    {
                        found = Some((c.deployment.clone(), what));
                        break;
                    }
                    _ => {}
                }
            }
            let _ = std::fs::remove_dir_all(&pool);
            match found {
                Some((Deployment::Single { image }, what)) => {
                    current = image;
                    last_what = Some(what);
                }
                _ => break,
            }
        }
        Ok(last_what.map(|w| format!("{} ({w})", current.describe())))
    }
}
