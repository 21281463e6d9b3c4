//! What several verbs' arguments share: one convention per flag. `--format` is always the
//! output format; arches, durations and closed sets of words parse the same everywhere,
//! and clap lists each set's values in `--help`.

use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use sysext_builder::Arch;

/// The output format of a verb that prints results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    #[value(alias = "human")]
    Text,
    /// JSON for machines.
    Json,
}

/// The output format of a verb whose people's form is a table for a pull request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    /// GitHub-flavoured Markdown (a job summary, a PR comment).
    Markdown,
    /// JSON for machines.
    Json,
}

/// One architecture, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchChoice {
    #[value(name = "x86-64")]
    X86_64,
    Arm64,
    /// Both.
    All,
}

impl ArchChoice {
    pub fn arches(self) -> Vec<Arch> {
        match self {
            ArchChoice::X86_64 => vec![Arch::X86_64],
            ArchChoice::Arm64 => vec![Arch::Arm64],
            ArchChoice::All => Arch::ALL.to_vec(),
        }
    }
}

/// A closed set of words whose meaning a library type's `FromStr` owns: clap lists `values`
/// in `--help` and refuses others (old names in [`ALIASES`] still accepted), the library
/// parses the one given.
pub fn closed<T>(values: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use clap::builder::{PossibleValue, TypedValueParser as _};
    let values = values.iter().map(|v| {
        ALIASES
            .iter()
            .filter(|(_, to)| to == v)
            .fold(PossibleValue::new(*v), |p, (from, _)| p.alias(*from))
    });
    clap::builder::PossibleValuesParser::new(values).try_map(|s| s.parse::<T>())
}

/// Names a value had before, still taken: `(old, new)`.
const ALIASES: &[(&str, &str)] = &[("flatcar-shaped", "flatcar")];

/// The arches a guest or image can have, by systemd's names.
pub const ARCHES: &[&str] = &["x86-64", "arm64"];
/// The guest profiles (`sysext_builder::guest::Profile`; `flatcar-shaped` is the old name of
/// `flatcar`).
pub const PROFILES: &[&str] = &["debian", "flatcar", "flatcar-initrd"];

/// A duration with its unit: `90s`, `10m`, `1h` (a bare number is seconds).
pub fn duration(s: &str) -> Result<Duration, String> {
    sysext_cases::fuzz::parse_duration(s)
}

/// `--guest` (run, guest exec): a Flatcar release or a disk image in Flatcar's format,
/// chosen for this process; `Err` is the one-line problem with its fix.
pub fn choose_guest(given: &str) -> Result<sysext_cases::via::guest::Choice, String> {
    use sysext_cases::via::guest::{self, Choice};
    let choice: Choice = given.parse().map_err(|e| format!("--guest {given}: {e}"))?;
    if let Choice::Disk(p) = &choice
        && !p.is_file()
    {
        return Err(format!(
            "--guest {given}: no such disk image; give flatcar:CHANNEL[:VERSION] or a disk `guest fetch` or `guest build --profile flatcar` made"
        ));
    }
    guest::choose(choice.clone());
    Ok(choice)
}

/// Bad input: one line on stderr naming the file and the fix, exit status 2.
pub fn usage(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(2))
}

/// 0 when `ok`, else 1 (findings, failed cases, a red verdict).
pub fn status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
