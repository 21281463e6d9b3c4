//! `sysext-test diff`: what a release changed against the one before it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sysext_cases::manifest::Manifest;
use sysext_cases::release_diff::{self, Acceptance, DiffReport};
use sysext_cases::{fixtures, report};

use crate::args::Format;

#[derive(clap::Args)]
#[command(
    after_help = "OLD and NEW are images (NAME-VERSION-ARCH.raw, or directory images) or \
release folders (a tag's images for every arch, with their transfer files); a single STORE compares \
each release of each extension with the one before it. Regressions (a Limit* lowered or gone, a unit \
or an executable lost, a unit no longer started at boot, an arch lost) are errors unless accepted; \
every other change is shown. Acceptances come from --accept, from --manifest's \
accept-regressions, and for a store from each extension's manifest (fixtures/manifests/NAME.toml, \
$SYSEXT_TEST_MANIFESTS). Exit status: 0 no regression, 1 regressions, 2 bad input.

Examples:
  sysext-test diff containerd-1.7.28-x86-64.raw containerd-1.7.29-x86-64.raw
  sysext-test diff releases/containerd-1.7.28 releases/containerd-1.7.29
  sysext-test diff --format json store/
  sysext-test diff --accept diff/limit-lowered:containerd.service:LimitNOFILE OLD.raw NEW.raw
  sysext-test diff --list-rules"
)]
pub struct Args {
    /// OLD NEW (images or release folders), or one release store.
    #[arg(required_unless_present = "list_rules", num_args = 1..=2, value_name = "OLD NEW | STORE")]
    paths: Vec<PathBuf>,
    /// Accept a regression: RULE (every one of that rule) or RULE:SUBJECT, as the output
    /// names them (diff/limit-lowered:containerd.service:LimitNOFILE). Repeatable.
    #[arg(long, value_name = "RULE[:SUBJECT]")]
    accept: Vec<Acceptance>,
    /// A test manifest whose accept-regressions apply (for two images or releases).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// List every diff rule with its id, severity and summary, then exit.
    #[arg(long)]
    list_rules: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if args.list_rules {
        for r in release_diff::RULES {
            writeln!(out, "{:<26} {:<7} {}", r.id, r.severity.as_str(), r.summary)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut accept = args.accept.clone();
    if let Some(m) = &args.manifest {
        let manifest = Manifest::load(m).map_err(|e| anyhow::anyhow!(e))?;
        accept.extend(manifest.accept_regressions);
    }
    let reports = match args.paths.as_slice() {
        [store] => {
            let store = sysext_builder::store::open(store).with_context(|| {
                format!(
                    "{}: one path is read as a release store; pass OLD NEW to compare two images or releases",
                    store.display()
                )
            })?;
            let mut reports = release_diff::store(&store)?;
            for r in &mut reports {
                let own = fixtures::manifest_for(&r.extension)
                    .map_err(|e| anyhow::anyhow!(e))?
                    .map(|m| m.accept_regressions)
                    .unwrap_or_default();
                r.accept(&[accept.clone(), own].concat());
            }
            if reports.is_empty() {
                anyhow::bail!(
                    "{}: no extension has two releases to compare",
                    store.root.display()
                );
            }
            reports
        }
        [old, new] => {
            let (o, n) = (
                release_diff::Side::read(old)?,
                release_diff::Side::read(new)?,
            );
            let mut reports: Vec<DiffReport> = release_diff::releases(&o, &n)?;
            for r in &mut reports {
                r.accept(&accept);
            }
            reports
        }
        _ => unreachable!("clap takes one or two paths"),
    };
    match args.format {
        Format::Json => report::diff_json(&mut out, &reports)?,
        Format::Text => report::diff_human(&mut out, &reports, crate::ui::colour())?,
    }
    let clean = reports.iter().all(|r| r.regressions().count() == 0);
    Ok(crate::args::status(clean))
}
