//! `sysext-test differential`: lint's predictions against systemd itself, on generated
//! inputs, in restored guests.

use std::path::PathBuf;
use std::process::ExitCode;

use sysext_builder::guest::Profile;
use sysext_cases::differential::{self, Family, FamilyReport, Run};

use crate::args::{ArchChoice, Format, PROFILES, closed};

#[derive(clap::Args)]
#[command(
    after_help = "Generates inputs from a seed and asks both sides what systemd will do:
  images    extension images over the rule book's knobs (release file names, the strict xattr,
            ID/ID_LIKE, VERSION_ID, SYSEXT_LEVEL, ARCHITECTURE spellings, SYSEXT_SCOPE,
            usr/lib/os-release, content outside /usr, masks, .v directories, stacking), in
            squashfs and erofs; lint's merge-or-refuse prediction against `systemd-sysext merge`
            in one restored guest, many images per merge.
  versions  version pairs; our UAPI.10 order against systemd's strverscmp_improved.
  units     images whose services point at programs present, absent, without the execute
            bit, for the other arch, or scripts without their interpreter, through drop-ins
            (any suffix), .wants links or Upholds=, as users and groups the guest has or not;
            lint's fate for each unit (runs, 203/EXEC, 216/GROUP, 217/USER, refused, not
            started) against systemd's after a real merge. A unit systemd fails must be an
            error in lint, and an error a unit systemd fails.
  transfers release directories served by a local mirror byte for byte: SHA256SUMS in
            every form (binary marks, one space, tabs, CRLF, comments, blank lines,
            duplicates, wrong digests) and transfer files (.conf/.transfer, MatchPattern
            forms, types, paths, CurrentSymlink, InstancesMax, Verify); lint's verdict and
            the versions our readers see against systemd-sysupdate list and check-new.
A disagreement prints both sides' words, the smallest image that still disagrees, and the
command that generates it again. Exit status: 0 every input agreed, 1 a disagreement, 2 could
not run (no guest, a missing host tool).

Examples:
  sysext-test differential --count 500
  sysext-test differential --profile flatcar --family images --seed 7
  sysext-test differential --arch all --profile all --format json > findings.json"
)]
pub struct Args {
    /// Which families to run.
    #[arg(long, value_enum, default_value = "all")]
    family: FamilyChoice,
    /// Seed of the generated inputs (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Generated images per arch and profile.
    #[arg(long, default_value_t = 200)]
    count: u32,
    /// Generated version pairs per arch.
    #[arg(long, default_value_t = 20_000)]
    pairs: u32,
    /// Generated unit images per arch and profile.
    #[arg(long, default_value_t = 200)]
    units: u32,
    /// Generated release directories per arch and profile.
    #[arg(long, default_value_t = 200)]
    transfers: u32,
    /// Disagreements shrunk per family to the smallest input that still disagrees (each
    /// costs guest time); 0 reports them as found.
    #[arg(long, default_value_t = differential::report::SHRINK_DEFAULT)]
    shrink: usize,
    /// Which guests' arch.
    #[arg(long, value_enum, default_value = "x86-64")]
    arch: ArchChoice,
    /// Which guest profiles (each with lint's matching --target); `all` for both.
    #[arg(long, default_value = "debian", value_parser = closed::<ProfileChoice>(PROFILE_CHOICES))]
    profile: ProfileChoice,
    /// Scratch directory for the generated images.
    #[arg(long, default_value = "target/sysext-test/differential")]
    workdir: PathBuf,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum FamilyChoice {
    Images,
    Versions,
    Units,
    Transfers,
    All,
}

const PROFILE_CHOICES: &[&str] = &["debian", "flatcar", "flatcar-initrd", "all"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProfileChoice(Option<Profile>);

impl std::str::FromStr for ProfileChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(ProfileChoice(None));
        }
        s.parse::<Profile>().map(|p| ProfileChoice(Some(p)))
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    debug_assert!(PROFILES.iter().all(|p| PROFILE_CHOICES.contains(p)));
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    eprintln!("differential: seed {seed}");
    let families: Vec<Family> = match args.family {
        FamilyChoice::Images => vec![Family::Images],
        FamilyChoice::Versions => vec![Family::Versions],
        FamilyChoice::Units => vec![Family::Units],
        FamilyChoice::Transfers => vec![Family::Transfers],
        FamilyChoice::All => Family::ALL.to_vec(),
    };
    let profiles: Vec<Profile> = match args.profile.0 {
        Some(p) => vec![p],
        None => Profile::ALL.to_vec(),
    };
    let place = sysext_harness::Place::from_env();
    let mut reports: Vec<FamilyReport> = Vec::new();
    for arch in args.arch.arches() {
        for &profile in &profiles {
            // Versions do not depend on the profile: asked once per arch, of the first.
            let here: Vec<Family> = families
                .iter()
                .copied()
                .filter(|f| *f != Family::Versions || profile == profiles[0])
                .collect();
            if here.is_empty() {
                continue;
            }
            let progress =
                crate::ui::Progress::start(&format!("restoring the {arch} {profile} guest"));
            let vm = match differential::guest(arch, profile, &place, &|l| progress.step(l)) {
                Ok(vm) => vm,
                Err(e) => {
                    progress.finish();
                    return crate::args::usage(format!("{arch} {profile} guest: {e}"));
                }
            };
            for family in here {
                let r = Run {
                    seed,
                    count: match family {
                        Family::Images => args.count,
                        Family::Versions => args.pairs,
                        Family::Units => args.units,
                        Family::Transfers => args.transfers,
                    },
                    arch,
                    profile,
                    naive: false,
                    shrink: args.shrink,
                };
                let work = args
                    .workdir
                    .join(format!("{}-{arch}-{profile}", family.name()));
                progress.step(&format!("{} on {arch} {profile}", family.name()));
                let report =
                    differential::run_family(family, &vm, &r, &work, &|l| progress.step(l))
                        .map_err(|e| {
                            anyhow::anyhow!("{} on {arch} {profile}: {e}", family.name())
                        })?;
                progress.say(&summary(&report));
                reports.push(report);
            }
            progress.finish();
        }
    }
    let ok = reports.iter().all(FamilyReport::passed);
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "seed": seed, "families": reports })
            )?
        ),
        Format::Text => {
            for r in &reports {
                println!("{}", summary(r));
                for d in &r.disagreements {
                    println!("\n  DISAGREE {}: {}", d.name, d.what);
                    println!("    variant: {}", d.variant);
                    if let Some(s) = &d.shrunk {
                        println!("    smallest: {s}");
                    }
                    println!("    lint:    {}", d.lint.replace('\n', "\n             "));
                    println!(
                        "    systemd: {}",
                        d.systemd.replace('\n', "\n             ")
                    );
                    println!("    replay:  {}", d.replay);
                }
                for n in &r.notes {
                    println!("  note: {n}");
                }
            }
        }
    }
    Ok(crate::args::status(ok))
}

fn summary(r: &FamilyReport) -> String {
    format!(
        "{} on {} {} (seed {}): {} checked, {} agree, {} disagree; {:.1} per second of guest time ({:.1}s guest, {:.1}s build)",
        r.family,
        r.arch,
        r.profile,
        r.seed,
        r.checked,
        r.agreed,
        r.disagreements.len(),
        r.per_second,
        r.guest_seconds,
        r.build_seconds
    )
}
