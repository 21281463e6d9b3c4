//! `sysext-test run`: the VM cases on an author's images or a whole release store, each the
//! way (or ways) `--via` names.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use sysext_builder::Arch;
use sysext_cases::manifest::Manifest;
use sysext_cases::outcome::Case;
use sysext_cases::subject::Subject;
use sysext_cases::via::Via;
use sysext_cases::{fixtures, report, runner};

use crate::args::{ARCHES, Format, closed};

#[derive(clap::Args)]
#[command(
    after_help = "Each run-time case restores a saved Debian trixie guest (systemd 257), installs \
the image the bakery way (/opt/extensions/NAME/FILE plus /etc/extensions/NAME.raw) and checks it. \
The first run builds the guest and saves its booted state under the cache ($XDG_CACHE_HOME/sysext-test, \
or SYSEXT_TEST_CACHE); later runs restore it in about a second (`sysext-test guest status`). With \
--via baked the boot case bakes the image (and NAME.conf beside it) into a copy of the flatcar \
guest's disk (Flatcar's partitions, /usr/sbin -> bin, ID=flatcar) and cold-boots it. With --via \
ignition the ignition case serves the image from a local mirror and has Ignition fetch it at the \
Flatcar guest's first boot (the config `sysext-test ignition` prints). A failed case keeps \
console, journal and sysext status under target/sysext-test/artifacts/; when the merge is refused, \
the other run-time cases are not run. A boot that is only slow is retried once and then a harness \
error, never the image's failure. Exit status: 0 all passed, 1 a case failed or did not run, 2 the \
harness broke (no verdict). Needs root, QEMU and the guest (bash .ci/setup).

Examples:
  sysext-test run docker-28.0.4-x86-64.raw --manifest docker-test.toml
  sysext-test run --arch arm64 --case merge --format json my.raw
  sysext-test run --via all my-1.0-x86-64.raw
  sysext-test run --via baked,ignition store/
  sysext-test run --guest flatcar:stable --via all my-1.0-x86-64.raw
  sysext-test run --guest ./flatcar_production_qemu_uefi_image.img --via all my-1.0-x86-64.raw"
)]
pub struct Args {
    /// Extension images (.raw), or a bakery release store (a folder per release tag as
    /// `gh release download` leaves it, or a flat folder with SHA256SUMS): its digests
    /// are verified first, then every image runs.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Guest architecture; default: from the bakery-style file name, else x86-64.
    #[arg(long, value_parser = closed::<Arch>(ARCHES))]
    arch: Option<Arch>,
    /// A test manifest (TOML: commands = [{ run, expect }], services, waiting, ports,
    /// creates, ...); default: the bundled one for the extension's name, if any
    /// (fixtures/manifests/NAME.toml, SYSEXT_TEST_MANIFESTS).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Run only these cases (repeatable); default: every case of the --via ways.
    #[arg(long = "case", value_name = "CASE", value_enum)]
    cases: Vec<Case>,
    /// How the guest takes the image (comma-separated, or all).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "runtime")]
    via: Vec<ViaArg>,
    /// Instead of the cases: install every image on one guest, merge them at once (as a
    /// host that takes several extensions has them) and run each one's manifest commands,
    /// printing which image's copy of its program each command reached. Fails when a
    /// command does not print what its manifest expects (another image's copy won).
    #[arg(long, conflicts_with_all = ["cases", "via"])]
    together: bool,
    /// Run on this guest instead of the built ones: flatcar:CHANNEL[:VERSION] (a Flatcar
    /// release, fetched and verified as `guest fetch` does) or the path of a disk image in
    /// Flatcar's format (raw or qcow2). Every way runs on it: run-time cases through sudo as
    /// core, boot cases on baked copies, Ignition at its first boot.
    #[arg(long, value_name = "flatcar:CHANNEL[:VERSION]|PATH")]
    guest: Option<String>,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `--via`: one of the ways ([`Via`]), or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ViaArg {
    /// Installed into a restored guest and merged with systemd-sysext merge (merge,
    /// binaries, services, unmerge).
    Runtime,
    /// Baked into the Flatcar guest's disk and merged at boot (boot).
    Baked,
    /// Fetched by Ignition at the Flatcar guest's first boot (ignition).
    Ignition,
    /// All three.
    All,
}

impl ViaArg {
    fn ways(self) -> Vec<Via> {
        match self {
            ViaArg::Runtime => vec![Via::Runtime],
            ViaArg::Baked => vec![Via::Baked],
            ViaArg::Ignition => vec![Via::Ignition],
            ViaArg::All => Via::ALL.to_vec(),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(g) = &args.guest
        && let Err(e) = crate::args::choose_guest(g)
    {
        return crate::args::usage(e);
    }
    let given = match &args.manifest {
        Some(p) => Some(Manifest::load(p).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let cases: Vec<Case> = if args.cases.is_empty() {
        args.via
            .iter()
            .flat_map(|v| v.ways())
            .flat_map(|v| Case::of(v).iter().copied())
            .collect()
    } else {
        args.cases.clone()
    };
    if args.together {
        return together(&args, given.as_ref());
    }
    let mut plan = Vec::new();
    for (image, manifest) in subjects(&args.images, given.as_ref())? {
        let subject = Subject::from_image(&image, manifest)
            .map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))?;
        let arch = args
            .arch
            .or_else(|| sysext_builder::naming::arch_of(&subject.file_name))
            .unwrap_or(Arch::X86_64);
        plan.push((subject, arch));
    }
    let progress = crate::ui::Progress::start(&format!(
        "running {} case(s) on {} image(s)",
        cases.len(),
        plan.len()
    ));
    let rows = runner::run_session(&plan, &cases, &sysext_harness::Place::from_env(), &|l| {
        // `[k/N] name: verdict in …` lines stay; the rest is the live line.
        if l.starts_with('[') && !l.ends_with("...") {
            progress.say(l)
        } else {
            progress.step(l)
        }
    });
    progress.finish();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => report::vm_json(&mut out, &rows)?,
        Format::Text => report::vm_human(&mut out, &rows)?,
    }
    Ok(ExitCode::from(runner::exit_status(&rows)))
}

/// `--together`: the images on one guest of the arch they share, each with its manifest.
fn together(args: &Args, given: Option<&Manifest>) -> anyhow::Result<ExitCode> {
    let mut subjects = Vec::new();
    for (image, manifest) in self::subjects(&args.images, given)? {
        subjects.push(
            Subject::from_image(&image, manifest)
                .map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))?,
        );
    }
    if subjects.len() < 2 {
        anyhow::bail!("--together needs two images or more (or a store with two extensions)");
    }
    let arches: Vec<Arch> = subjects
        .iter()
        .filter_map(|s| sysext_builder::naming::arch_of(&s.file_name))
        .collect();
    let arch = args
        .arch
        .or(arches.first().copied())
        .unwrap_or(Arch::X86_64);
    if let Some(other) = arches.iter().find(|a| **a != arch) {
        anyhow::bail!(
            "--together takes images of one arch (a host has one); got {arch} and {other}: pass --arch or the images of one arch"
        );
    }
    let names: Vec<String> = subjects.iter().map(|s| s.file_name.clone()).collect();
    let progress = crate::ui::Progress::start(&format!(
        "merging {} extensions together on the {arch} guest",
        subjects.len()
    ));
    let outcome = runner::run_together(
        "together",
        &subjects,
        arch,
        None,
        &sysext_harness::Place::from_env(),
        // Every line stays: which copy is merged and which each command reached are the
        // point of --together.
        &|l| progress.say(l),
    );
    progress.finish();
    let mut out = std::io::stdout().lock();
    report::together(
        &mut out,
        &names,
        arch,
        &outcome,
        args.format == Format::Json,
    )?;
    Ok(ExitCode::from(outcome.verdict.exit_code()))
}

/// Every image to run with its manifest: a store is verified whole before any guest
/// starts and each of its extensions gets its own manifest (unless --manifest names one for
/// all); a loose image of an extension the project knows gets that extension's.
fn subjects(
    paths: &[PathBuf],
    given: Option<&Manifest>,
) -> anyhow::Result<Vec<(PathBuf, Manifest)>> {
    let mut out = Vec::new();
    let known = |name: &str| -> anyhow::Result<Manifest> {
        Ok(match given {
            Some(m) => m.clone(),
            None => fixtures::manifest_for(name)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .unwrap_or_default(),
        })
    };
    for path in paths {
        if path.is_dir() {
            let store = sysext_builder::store::open(path)?;
            for (ext, _, _, image) in store.images() {
                out.push((image.to_path_buf(), known(&ext.name)?));
            }
        } else if path.is_file() {
            let name = path
                .file_name()
                .and_then(|n| sysext_builder::naming::triple(&n.to_string_lossy(), &[]))
                .map(|t| t.name);
            let manifest = match &name {
                Some(n) if given.is_none() => {
                    match fixtures::manifest_for(n).map_err(|e| anyhow::anyhow!("{e}"))? {
                        Some(m) => {
                            eprintln!("{}: checking with the manifest for {n}", path.display());
                            m
                        }
                        None => Manifest::default(),
                    }
                }
                _ => given.cloned().unwrap_or_default(),
            };
            out.push((path.clone(), manifest));
        } else {
            anyhow::bail!(
                "{}: no such image file or release store; pass NAME-VERSION-ARCH.raw or the folder `gh release download` filled",
                path.display()
            );
        }
    }
    Ok(out)
}
