//! The units family: generated units and what they point at (programs present, absent,
//! without the execute bit, for the other arch, scripts without their interpreter, /usr/sbin
//! paths; drop-ins and their suffixes; `.wants` links and `Upholds=`; the accounts they run
//! as), lint's fate for each unit against the fate the guest's systemd gives it after a
//! real merge: a unit systemd fails must be an error in lint, and an error must be a unit
//! systemd fails.
//!
//! Units need the service manager to see the merge, so a batch is merged in the guest's
//! own namespace, one batch at a time, and undone before the next.

pub mod judge;
pub mod observe;
pub mod stage;
pub mod variant;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use sysext_builder::flatcar_release::MergeModel;
use sysext_harness::Vm;

use super::report::{Disagreement, FamilyReport, Run};
use super::variant::token;
use crate::lint::{Accounts, Linter, Options};
use judge::{Observed, Predicted};
use observe::Batch;
use variant::{Activation, GuestAccounts, UnitVariant};

/// First token of shrink candidates.
const SHRINK_BASE: u32 = 95_000;

/// Accounts variants name when they want one the guest has: common to Debian and the
/// images Flatcar's baselayout makes, where the guest has them.
const USERS: &[&str] = &["daemon", "bin", "nobody", "sys", "mail"];
const GROUPS: &[&str] = &["daemon", "adm", "nogroup", "sys", "mail", "users"];

/// What the guest says about itself that lint needs for units, beyond its os-release.
struct GuestFacts {
    accounts: Accounts,
    sbin_merged: bool,
}

fn facts(vm: &Vm) -> Result<GuestFacts, String> {
    let out = vm
        .batch(&["cat /etc/passwd", "cat /etc/group", "test -L /usr/sbin"])
        .map_err(|e| format!("guest: {e}"))?;
    Ok(GuestFacts {
        accounts: Accounts::from_files(&out[0].stdout, &out[1].stdout),
        sbin_merged: out[2].status == 0,
    })
}

struct Case {
    index: u32,
    variant: UnitVariant,
    predicted: Vec<Predicted>,
}

impl Case {
    fn service(&self) -> String {
        variant::service(self.index)
    }
    fn units(&self) -> Vec<String> {
        let mut u = vec![self.service()];
        if self.variant.socket.is_some() {
            u.push(variant::socket(self.index));
        }
        if self.variant.dangling_link {
            u.push(variant::gone(self.index));
        }
        u
    }
}

/// Builds variant `index` into `pool` and asks lint what becomes of its units.
fn prepare(
    linter: &Linter,
    pool: &Path,
    scratch: &Path,
    index: u32,
    v: UnitVariant,
    r: &Run,
    accounts: &GuestAccounts,
) -> Result<Case, String> {
    let file = stage::build(pool, scratch, index, &v, r.arch, accounts)
        .map_err(|e| format!("building {}: {e}", token(index)))?;
    let (report, _) = linter
        .lint_image(&file)
        .map_err(|e| format!("lint {}: {e}", file.display()))?;
    let image = sysext_builder::image::Image::open(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let enabled = sysext_builder::image::facts::enabled_units(&image);
    let mut case = Case {
        index,
        variant: v,
        predicted: Vec::new(),
    };
    case.predicted = judge::predict(&case.units(), &report.findings, &enabled);
    Ok(case)
}

/// Batches of at most [`observe::BATCH`], each all with or all without
/// `EXTENSION_RELOAD_MANAGER=1` (one image that has it reloads the manager for all), and
/// all or none shipping usr/sbin. `starts_wants`: after the merge something starts
/// `multi-user.target` again for the images' `.wants` links, as Flatcar's ensure-sysext
/// does (and as nothing does on a release that merges from the initrd).
fn batches(cases: &[Case], naive: bool, starts_wants: bool) -> Vec<Batch> {
    let size = if naive { 1 } else { observe::BATCH };
    let mut out = Vec::new();
    // An image that ships usr/sbin replaces a /usr/sbin that is a symlink to bin for
    // every image merged with it (lint's content/usr-sbin): those are merged apart.
    for (reload, sbin) in [(true, false), (true, true), (false, false), (false, true)] {
        let group: Vec<&Case> = cases
            .iter()
            .filter(|c| c.variant.reload_manager == reload)
            .filter(|c| (c.variant.program == variant::Program::SbinShipped) == sbin)
            .collect();
        for chunk in group.chunks(size) {
            let mut b = Batch {
                images: Vec::new(),
                direct: Vec::new(),
                start_target: false,
                read: Vec::new(),
                sockets: Vec::new(),
                reloads: reload,
            };
            for c in chunk {
                b.images.push(if c.variant.directory {
                    token(c.index)
                } else {
                    format!("{}.raw", token(c.index))
                });
                if let Some(_s) = &c.variant.socket {
                    b.direct.push(variant::socket(c.index));
                    b.sockets.push(variant::socket(c.index));
                }
                match c.variant.activation {
                    Activation::Direct => b.direct.push(c.service()),
                    Activation::Wants => b.start_target = starts_wants,
                    Activation::Upholds => {}
                }
                b.read.extend(c.units());
            }
            out.push(b);
        }
    }
    out
}

/// Whether the target's hosts start `multi-user.target` again after a live merge (Flatcar's
/// ensure-sysext): not where extensions merge from the initrd.
fn starts_wants(linter: &Linter) -> bool {
    linter.target().merge_model != Some(MergeModel::Initrd)
}

/// Uploads a pool of unit images.
fn upload(vm: &Vm, tar: &Path) -> Result<(), String> {
    super::stage::upload_pool(vm, tar, &[], &["/run/extensions"])
}

/// One unit on which lint and systemd differ: its case, both sides, and what differs.
struct Differs<'c> {
    case: &'c Case,
    predicted: Predicted,
    observed: Observed,
    what: String,
}

/// Observes `cases` in the guest and judges each unit: the number of units that agreed,
/// and every disagreement.
fn observe_and_judge<'c>(
    vm: &Vm,
    cases: &'c [Case],
    naive: bool,
    starts_wants: bool,
    progress: &dyn Fn(&str),
) -> Result<(usize, Vec<Differs<'c>>), String> {
    let plan = batches(cases, naive, starts_wants);
    let total = plan.len();
    let mut seen: BTreeMap<String, Observed> = BTreeMap::new();
    for (i, b) in plan.iter().enumerate() {
        seen.extend(observe::run(vm, b).map_err(|e| format!("guest: {e}"))?);
        if i % 4 == 3 || i + 1 == total {
            progress(&format!("ran {}/{total} batches of units", i + 1));
        }
    }
    let mut agreed = 0;
    let mut out = Vec::new();
    for c in cases {
        for p in &c.predicted {
            let o = seen.remove(&p.unit).unwrap_or_else(|| Observed {
                fate: None,
                words: "not observed".into(),
            });
            match judge::judge(p, &o) {
                Ok(()) => agreed += 1,
                Err(what) => out.push(Differs {
                    case: c,
                    predicted: p.clone(),
                    observed: o,
                    what,
                }),
            }
        }
    }
    Ok((agreed, out))
}

/// Runs the family on `vm`: `count` generated variants of `seed`, linted with `opts` (the
/// profile's) told the guest's own accounts and `/usr/sbin` layout.
pub fn run(
    vm: &Vm,
    mut opts: Options,
    r: &Run,
    work: &Path,
    progress: &dyn Fn(&str),
) -> Result<FamilyReport, String> {
    let f = facts(vm)?;
    opts.host_accounts = Some(f.accounts.clone());
    opts.host_sbin_merged = Some(f.sbin_merged);
    let linter = Linter::new(opts);
    let pick = |want: &[&str], have: &std::collections::HashSet<String>| -> Vec<String> {
        want.iter()
            .filter(|n| have.contains(**n))
            .map(|n| n.to_string())
            .collect()
    };
    let accounts = GuestAccounts {
        users: pick(USERS, &f.accounts.users),
        groups: pick(GROUPS, &f.accounts.groups),
    };
    let pool = work.join("units-pool");
    let scratch = work.join("scratch");
    let _ = std::fs::remove_dir_all(&pool);
    std::fs::create_dir_all(&pool).map_err(|e| format!("{}: {e}", pool.display()))?;
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let started = Instant::now();
    progress(&format!(
        "building {} generated unit images (seed {})",
        r.count, r.seed
    ));
    let cases: Vec<Case> = (0..r.count)
        .into_par_iter()
        .map(|i| {
            prepare(
                &linter,
                &pool,
                &scratch,
                i,
                variant::generate(r.seed, i),
                r,
                &accounts,
            )
        })
        .collect::<Result<_, String>>()?;
    let tar = work.join("units-pool.tar");
    super::stage::pack_tar(&pool, &[".".into()], &tar)?;
    let build_seconds = started.elapsed().as_secs_f64();
    let guest_started = Instant::now();
    upload(vm, &tar)?;
    let (agreed, found) = observe_and_judge(vm, &cases, r.naive, starts_wants(&linter), progress)?;
    let guest_seconds = guest_started.elapsed().as_secs_f64();
    let checked: usize = cases.iter().map(|c| c.predicted.len()).sum();

    let mut disagreements = Vec::new();
    let mut next = SHRINK_BASE;
    for (i, d) in found.into_iter().enumerate() {
        let Differs {
            case: c,
            predicted: p,
            observed: o,
            what,
        } = d;
        let shrunk = if i < r.shrink {
            progress(&format!("shrinking {}", token(c.index)));
            shrink(vm, &linter, r, work, c, &what, &accounts, &mut next)?
        } else {
            None
        };
        disagreements.push(Disagreement {
            name: format!("unit::{}", p.unit),
            variant: c.variant.describe(),
            what,
            lint: if p.because.is_empty() {
                format!("{:?} (no finding about it)", p.fate)
            } else {
                format!("{:?}: {}", p.fate, p.because.join("\n"))
            },
            systemd: o.words,
            shrunk,
            replay: format!(
                "sysext-test differential --family units --arch {} --profile {} --seed {} --count {}",
                r.arch,
                r.profile,
                r.seed,
                c.index + 1
            ),
        });
    }
    Ok(FamilyReport {
        family: "units",
        arch: r.arch.to_string(),
        profile: r.profile.to_string(),
        seed: r.seed,
        checked,
        agreed,
        disagreements,
        build_seconds,
        guest_seconds,
        per_second: cases.len() as f64 / guest_seconds.max(1e-9),
        notes: vec![format!(
            "{} images, {checked} units; guest /usr/sbin {}; accounts from the guest's /etc/passwd and /etc/group",
            cases.len(),
            if f.sbin_merged {
                "-> bin"
            } else {
                "a directory"
            }
        )],
    })
}

/// A disagreement's story without its particulars (unit names, fates in brackets).
fn story(what: &str) -> String {
    what.split_whitespace()
        .filter(|w| !w.contains("dt"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shrinks a disagreeing variant one knob at a time towards the plainest, keeping a step
/// when the candidate's own unit still disagrees the same way.
#[allow(clippy::too_many_arguments)]
fn shrink(
    vm: &Vm,
    linter: &Linter,
    r: &Run,
    work: &Path,
    start: &Case,
    start_what: &str,
    accounts: &GuestAccounts,
    next: &mut u32,
) -> Result<Option<String>, String> {
    let mut current = start.variant.clone();
    let mut last = None;
    for _ in 0..16 {
        let candidates = current.shrink_candidates();
        if candidates.is_empty() {
            break;
        }
        let pool = work.join(format!("units-shrink-{next}"));
        let _ = std::fs::remove_dir_all(&pool);
        std::fs::create_dir_all(&pool).map_err(|e| format!("{}: {e}", pool.display()))?;
        let cases: Vec<Case> = candidates
            .into_iter()
            .map(|v| {
                *next += 1;
                prepare(linter, &pool, &work.join("scratch"), *next, v, r, accounts)
            })
            .collect::<Result<_, String>>()?;
        let tar = work.join("units-shrink.tar");
        super::stage::pack_tar(&pool, &[".".into()], &tar)?;
        upload(vm, &tar)?;
        let (_, found) = observe_and_judge(vm, &cases, false, starts_wants(linter), &|_| {})?;
        let _ = std::fs::remove_dir_all(&pool);
        match found
            .into_iter()
            .find(|d| story(&d.what) == story(start_what))
        {
            Some(d) => {
                current = d.case.variant.clone();
                last = Some(d.what);
            }
            None => break,
        }
    }
    Ok(last.map(|w| format!("{} ({w})", current.describe())))
}
