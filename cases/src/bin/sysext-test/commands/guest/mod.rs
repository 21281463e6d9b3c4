//! `sysext-test guest …`: the cached guests the VM cases boot, and real Flatcar releases.

pub mod build;
pub mod clean;
pub mod exec;
pub mod fetch;
pub mod status;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build the guest for an arch (or reuse the cached one), and optionally save its booted state.
    Build(build::Args),
    /// Show the cached guests and saved states, and which of them the next run uses.
    Status(status::Args),
    /// Remove the saved guest states, or with --stale everything unused (old guests too).
    Clean(clean::Args),
    /// Restore the saved guest and run commands in it as root (after `--`, one per argument).
    Exec(exec::Args),
    /// Download, verify (gpgv, Flatcar's image signing key) and cache a real Flatcar release.
    Fetch(fetch::Args),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(a) => build::run(a),
        Command::Status(a) => status::run(a),
        Command::Clean(a) => clean::run(a),
        Command::Exec(a) => exec::run(a),
        Command::Fetch(a) => fetch::run(a),
    }
}
