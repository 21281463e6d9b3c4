//! `sysext-test`: build systemd system extensions and check them before they ship. This
//! file parses and dispatches; each verb lives in `commands/`, the conventions its flags
//! share in `args.rs`, progress and colour in `ui.rs`.

mod args;
mod commands;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{
    bake, bench, build, check, diff, differential, fuzz, guest, ignition, lint, mirror, report, run,
};

#[derive(Parser)]
#[command(
    name = "sysext-test",
    version,
    about = "Build systemd system extensions and check them before they ship",
    long_about = "Build systemd system extensions (sysexts) the way the Flatcar sysext bakery publishes \
                  them, check images against the Extension Image rules in milliseconds, and boot them in \
                  QEMU guests (x86-64 and arm64) the three ways a host takes them: merged at run time, \
                  baked and merged at boot, provisioned by Ignition at first boot.\n\n\
                  Every verb that prints results takes --format (text or json; markdown for tables). \
                  Exit status: 0 clean, 1 findings or failed cases, 2 usage or I/O problems (one line \
                  on stderr naming the file and the fix).",
    after_help = "Examples:\n  sysext-test build fixtures/extensions/busybox.toml --arch all -o out/\n  \
                  sysext-test lint out/\n  sysext-test run --via all out/busybox-1.37.0-x86-64.raw\n  \
                  sysext-test report target/nextest/ci/junit.xml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build NAME-VERSION-ARCH.raw, SHA256SUMS and NAME.conf from an extension spec (TOML).
    Build(build::Args),
    /// Check images, directory images or release directories against the Extension Image rules.
    Lint(lint::Args),
    /// Boot guests and run the VM cases on your images: at run time, baked, or by Ignition.
    Run(run::Args),
    /// Compare a release with the one before it: units' limits and properties, binaries, arches, transfer files.
    Diff(diff::Args),
    /// Build fixtures (specs with an [expect] verdict) and check each gets the lint verdict it expects.
    Check(check::Args),
    /// Merge test results (nextest JUnit from any number of partitions, or run's JSON) into one verdict.
    Report(report::Args),
    /// Copy an OS disk image with extensions baked in, as an ordinary user (no root, loop or mount).
    Bake(bake::Args),
    /// Print the Ignition config that provisions an extension at first boot (the bakery's Butane example).
    Ignition(ignition::Args),
    /// Serve a release directory under the paths extensions.flatcar.org uses, for sysupdate.
    Mirror(mirror::Args),
    /// Mutation-fuzz lint: break real images and a release directory byte by byte, lint each.
    Fuzz(fuzz::Args),
    /// Check lint's predictions against systemd itself: generated images and version pairs in a guest.
    Differential(differential::Args),
    /// The cached guests the VM cases boot (build, status, clean, exec) and real Flatcar releases (fetch).
    #[command(subcommand)]
    Guest(guest::Command),
    /// Measure lint against unsquashfs-then-check and build against mksquashfs (or, --vm, the guests).
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Build(a) => build::run(a),
        Command::Lint(a) => lint::run(a),
        Command::Run(a) => run::run(a),
        Command::Check(a) => check::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Report(a) => report::run(a),
        Command::Bake(a) => bake::run(a),
        Command::Ignition(a) => ignition::run(a),
        Command::Mirror(a) => mirror::run(a),
        Command::Fuzz(a) => fuzz::run(a),
        Command::Differential(a) => differential::run(a),
        Command::Guest(c) => guest::run(c),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sysext-test: {e:#}");
            ExitCode::from(2)
        }
    }
}
