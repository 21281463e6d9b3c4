//! `sysext-test lint`: images, directory images, release directories and stores against
//! the Extension Image rules.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sysext_builder::Arch;
use sysext_cases::lint::{self, LintError, Linter, TargetSpec};
use sysext_cases::report;

use crate::args::{ARCHES, Format, closed};

#[derive(clap::Args)]
#[command(
    after_help = "A release directory (holding *.raw and SHA256SUMS) is checked as a whole: each \
image, SHA256SUMS against the files, and each transfer file against the published names. A release \
store has its digests verified first. Images of two extensions or more (one arch; each extension's \
newest release) are also checked together as one host merges them: a path two of them ship with \
different contents (collision/*), and on Flatcar the built-in extensions that stack above one. Exit status: 0 no errors, 1 findings of severity error, 2 bad \
input.

Examples:
  sysext-test lint out/
  sysext-test lint --format json docker-28.0.4-x86-64.raw
  sysext-test lint --target flatcar:4081.2.0 release/
  sysext-test lint --target flatcar:beta docker-28.0.0-x86-64.raw
  sysext-test lint --list-rules"
)]
pub struct Args {
    /// Images (.raw), directory images, or bakery release directories.
    #[arg(required_unless_present = "list_rules")]
    paths: Vec<PathBuf>,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The OS the images will be merged on: flatcar (any release), flatcar:CHANNEL (lts,
    /// stable, beta, alpha: the channel's current release as sysext-test's Flatcar release
    /// table knows it), flatcar:VERSION (e.g. flatcar:4593.2.5: its os-release, its
    /// /usr/sbin layout and its systemd decide the version-gated rules), or generic.
    #[arg(long, default_value = "flatcar", value_parser = parse_target)]
    target: TargetSpec,
    /// The target's systemd major version (e.g. 255), when you know it: rules that hold
    /// only before or after a systemd change (lint --list-rules shows which) use it.
    #[arg(long, value_name = "MAJOR")]
    systemd: Option<u32>,
    /// Match extension-release against this os-release instead of the target's built-in one.
    #[arg(long, value_name = "FILE")]
    host_os_release: Option<PathBuf>,
    /// The host's /etc/passwd: with --host-group, a unit's User=, Group=, SocketUser= or
    /// SocketGroup= naming an account the host lacks is an error (217/USER, 216/GROUP);
    /// without them lint knows only root and nobody (and on Flatcar its baselayout's
    /// accounts: core, docker, wheel, ...) and warns.
    #[arg(long, value_name = "FILE", requires = "host_group")]
    host_passwd: Option<PathBuf>,
    /// The host's /etc/group (with --host-passwd).
    #[arg(long, value_name = "FILE", requires = "host_passwd")]
    host_group: Option<PathBuf>,
    /// The architecture the images are for (default: from each file name, if bakery-style).
    #[arg(long, value_parser = closed::<Arch>(ARCHES))]
    arch: Option<Arch>,
    /// List every rule with its id, severity and summary, then exit.
    #[arg(long)]
    list_rules: bool,
}

fn parse_target(s: &str) -> Result<TargetSpec, String> {
    s.parse()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.list_rules {
        return list_rules(args.format);
    }
    let host = match &args.host_os_release {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the host os-release", p.display()))?;
            Some(sysext_builder::osrelease::OsRelease::parse(&text).0)
        }
        None => None,
    };
    let accounts = match (&args.host_passwd, &args.host_group) {
        (Some(p), Some(g)) => {
            let read = |f: &PathBuf, what: &str| {
                std::fs::read_to_string(f)
                    .with_context(|| format!("{}: cannot read the host {what}", f.display()))
            };
            Some(lint::Accounts::from_files(
                &read(p, "passwd")?,
                &read(g, "group")?,
            ))
        }
        _ => None,
    };
    let linter = Linter::new(lint::Options {
        target: args.target,
        systemd: args.systemd,
        host_os_release: host,
        host_accounts: accounts,
        host_sbin_merged: None,
        arch: args.arch,
    });
    let mut reports = Vec::new();
    for p in &args.paths {
        match linter.lint_path(p) {
            Ok(r) => reports.extend(r),
            Err(LintError::Io { path, source })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                anyhow::bail!(
                    "{}: no such file or directory; pass an image (.raw), a directory image or a release directory",
                    path.display()
                )
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Several extensions (of one arch) are also checked as a host merges them together.
    let images: Vec<PathBuf> = reports
        .iter()
        .filter(|r| r.kind == lint::ReportKind::Image)
        .map(|r| PathBuf::from(&r.path))
        .collect();
    reports.extend(linter.lint_together(&images)?);
    let mut out = std::io::stdout().lock();
    let target = linter.target().describe();
    match args.format {
        Format::Json => report::json(&mut out, &reports, &target)?,
        Format::Text => report::human(&mut out, &reports, &target, crate::ui::colour())?,
    }
    Ok(crate::args::status(report::summarize(&reports).errors == 0))
}

fn list_rules(format: Format) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let rules: Vec<serde_json::Value> = lint::rules::all()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "severity": r.severity.as_str(),
                    "summary": r.summary, "reference": r.reference,
                    "applies_to": lint::gates::gate(r.id).map(|g| g.describe()),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rules)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in lint::rules::all() {
        let gate = lint::gates::gate(r.id)
            .map(|g| format!(" (only {})", g.describe()))
            .unwrap_or_default();
        writeln!(
            out,
            "{:<36} {:<7} {}{gate}  [{}]",
            r.id,
            r.severity.as_str(),
            r.summary,
            r.reference
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
