//! The transfers family: generated release directories (`SHA256SUMS` in every form a
//! hand or a tool writes it, transfer files with every `MatchPattern=` form, type, path,
//! `CurrentSymlink=`, `InstancesMax=`, `Verify=`, `.conf` or `.transfer`) served by the
//! local mirror verbatim, lint's verdict and readers against `systemd-sysupdate
//! --definitions=DIR list` and `check-new` in the guest.

pub mod judge;
pub mod observe;
pub mod stage;
pub mod variant;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use sysext_builder::osrelease::OsRelease;
use sysext_harness::{Mirror, Vm};

use super::report::{Disagreement, FamilyReport, Run};
use crate::lint::{Linter, Options};
use judge::{Observed, Predicted};
use variant::TransferVariant;

const SHRINK_BASE: u32 = 95_000;

struct Case {
    index: u32,
    variant: TransferVariant,
    predicted: Predicted,
}

/// What every case needs from the run: lint, where the tree is and how the guest reaches
/// it, the one image all releases publish copies of.
struct Setup<'a> {
    linter: &'a Linter,
    r: &'a Run,
    tree: PathBuf,
    tree_url: String,
    image: PathBuf,
    digest: String,
    /// The guest's os-release, for the host specifiers (`%w`) sysupdate expands.
    host: OsRelease,
}

/// The image every release publishes (copies under each version's name): a real
/// squashfs sysext `dtx`, so lint reads the release directory as a bakery one.
fn shared_image(work: &Path) -> Result<(PathBuf, String), String> {
    let root = work.join("image-tree");
    let _ = std::fs::remove_dir_all(&root);
    let rel = root.join("usr/lib/extension-release.d");
    std::fs::create_dir_all(&rel).map_err(|e| format!("{}: {e}", rel.display()))?;
    std::fs::write(
        rel.join(format!("extension-release.{}", variant::NAME)),
        "ID=_any\n",
    )
    .map_err(|e| format!("{}: {e}", rel.display()))?;
    let share = root.join("usr/share/dtx");
    std::fs::create_dir_all(&share).map_err(|e| format!("{}: {e}", share.display()))?;
    std::fs::write(share.join("probe"), "dtx\n")
        .map_err(|e| format!("{}: {e}", share.display()))?;
    let image = work.join("dtx.raw");
    let _ = std::fs::remove_file(&image);
    super::stage::pack(&root, super::variant::Format::Squashfs, &image)?;
    let _ = std::fs::remove_dir_all(&root);
    let digest = sysext_builder::sha256sums::digest_file(&image)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    Ok((image, digest))
}

fn prepare(s: &Setup, index: u32, v: TransferVariant) -> Result<Case, String> {
    let dir = stage::build(
        &s.tree,
        &s.tree_url,
        index,
        &v,
        s.r.arch,
        &s.image,
        &s.digest,
    )?;
    let reports = s
        .linter
        .lint_path(&dir)
        .map_err(|e| format!("lint {}: {e}", dir.display()))?;
    let findings: Vec<crate::lint::Finding> =
        reports.into_iter().flat_map(|r| r.findings).collect();
    let transfer = std::fs::read_to_string(dir.join(stage::transfer_name(&v)))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let sums = std::fs::read(dir.join("SHA256SUMS")).ok();
    let predicted = judge::predict(&findings, &transfer, sums.as_deref(), s.r.arch, &s.host);
    Ok(Case {
        index,
        variant: v,
        predicted,
    })
}

/// Packs the transfer files of `cases` (the guest needs nothing else: the mirror serves
/// the rest).
fn pack_tree(tree: &Path, cases: &[Case], tar: &Path) -> Result<(), String> {
    let files: Vec<String> = cases
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                stage::case_dir(c.index),
                stage::transfer_name(&c.variant)
            )
        })
        .collect();
    super::stage::pack_tar(tree, &files, tar)
}

/// Uploads the transfer files, clearing what the last cases left.
fn upload(vm: &Vm, tar: &Path) -> Result<(), String> {
    super::stage::upload_pool(
        vm,
        tar,
        &[
            stage::GUEST_DEFINITIONS,
            stage::GUEST_TARGETS,
            "/run/dt/out",
        ],
        &[],
    )
}

struct Differs<'c> {
    case: &'c Case,
    observed: Observed,
    what: String,
}

fn observe_and_judge<'c>(
    vm: &Vm,
    cases: &'c [Case],
    naive: bool,
    progress: &dyn Fn(&str),
) -> Result<(usize, Vec<Differs<'c>>), String> {
    let lanes = if naive { 1 } else { observe::LANES };
    let all: Vec<(String, String)> = cases
        .iter()
        .map(|c| (stage::case_dir(c.index), stage::transfer_name(&c.variant)))
        .collect();
    let mut seen: BTreeMap<String, Observed> = BTreeMap::new();
    let batches: Vec<&[(String, String)]> = all.chunks(observe::BATCH).collect();
    let mut done = 0;
    for b in batches {
        seen.extend(observe::run(vm, b, lanes).map_err(|e| format!("guest: {e}"))?);
        done += b.len();
        progress(&format!(
            "asked sysupdate about {done}/{} release directories",
            all.len()
        ));
    }
    let mut agreed = 0;
    let mut out = Vec::new();
    for c in cases {
        let o = seen.remove(&stage::case_dir(c.index)).unwrap_or_default();
        match judge::judge(&c.predicted, &o) {
            Ok(()) => agreed += 1,
            Err(what) => out.push(Differs {
                case: c,
                observed: o,
                what,
            }),
        }
    }
    Ok((agreed, out))
}

/// Runs the family on `vm`: `count` generated release directories of `seed`, served by a
/// mirror of their own, linted with `opts`.
pub fn run(
    vm: &Vm,
    opts: Options,
    r: &Run,
    work: &Path,
    progress: &dyn Fn(&str),
) -> Result<FamilyReport, String> {
    let host = vm
        .succeed("cat /etc/os-release")
        .map(|t| OsRelease::parse(&t).0)
        .map_err(|e| format!("guest: {e}"))?;
    let linter = Linter::new(opts);
    let tree = work.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).map_err(|e| format!("{}: {e}", tree.display()))?;
    let mirror = Mirror::serve(&tree).map_err(|e| format!("mirror: {e}"))?;
    let started = Instant::now();
    let (image, digest) = shared_image(work)?;
    let setup = Setup {
        linter: &linter,
        r,
        tree: tree.clone(),
        tree_url: mirror.guest_tree_url(),
        image,
        digest,
        host,
    };
    progress(&format!(
        "building {} generated release directories (seed {})",
        r.count, r.seed
    ));
    let cases: Vec<Case> = (0..r.count)
        .into_par_iter()
        .map(|i| prepare(&setup, i, variant::generate(r.seed, i)))
        .collect::<Result<_, String>>()?;
    let tar = work.join("transfers.tar");
    pack_tree(&tree, &cases, &tar)?;
    let build_seconds = started.elapsed().as_secs_f64();
    let guest_started = Instant::now();
    upload(vm, &tar)?;
    let (agreed, found) = observe_and_judge(vm, &cases, r.naive, progress)?;
    let guest_seconds = guest_started.elapsed().as_secs_f64();

    let mut disagreements = Vec::new();
    let mut next = SHRINK_BASE;
    for (i, d) in found.into_iter().enumerate() {
        let shrunk = if i < r.shrink {
            progress(&format!("shrinking {}", stage::case_dir(d.case.index)));
            shrink(vm, &setup, work, d.case, &d.what, &mut next)?
        } else {
            None
        };
        let p = &d.case.predicted;
        disagreements.push(Disagreement {
            name: format!("transfer::{}", stage::case_dir(d.case.index)),
            variant: d.case.variant.describe(),
            what: d.what,
            lint: if p.fails {
                format!("every verb fails: {}", p.because.join("\n"))
            } else {
                format!("versions ({})", p.versions.join(" "))
            },
            systemd: d.observed.words,
            shrunk,
            replay: format!(
                "sysext-test differential --family transfers --arch {} --profile {} --seed {} --transfers {}",
                r.arch,
                r.profile,
                r.seed,
                d.case.index + 1
            ),
        });
    }
    Ok(FamilyReport {
        family: "transfers",
        arch: r.arch.to_string(),
        profile: r.profile.to_string(),
        seed: r.seed,
        checked: cases.len(),
        agreed,
        disagreements,
        build_seconds,
        guest_seconds,
        per_second: cases.len() as f64 / guest_seconds.max(1e-9),
        notes: vec![format!(
            "served by the local mirror at {} (verbatim); systemd-sysupdate list and check-new per release directory, {} at once",
            mirror.guest_tree_url(),
            if r.naive { 1 } else { observe::LANES }
        )],
    })
}

/// Shrinks a disagreeing release directory one knob at a time towards the plainest,
/// keeping a step when the candidate still disagrees the same way.
fn shrink(
    vm: &Vm,
    s: &Setup,
    work: &Path,
    start: &Case,
    start_what: &str,
    next: &mut u32,
) -> Result<Option<String>, String> {
    let mut current = start.variant.clone();
    let mut last = None;
    for _ in 0..24 {
        let candidates = current.shrink_candidates();
        if candidates.is_empty() {
            break;
        }
        let cases: Vec<Case> = candidates
            .into_iter()
            .map(|v| {
                *next += 1;
                prepare(s, *next, v)
            })
            .collect::<Result<_, String>>()?;
        let tar = work.join("transfers-shrink.tar");
        pack_tree(&s.tree, &cases, &tar)?;
        upload(vm, &tar)?;
        let (_, found) = observe_and_judge(vm, &cases, false, &|_| {})?;
        match found
            .into_iter()
            .find(|d| super::report::story(&d.what) == super::report::story(start_what))
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
