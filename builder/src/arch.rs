//! Architecture names as systemd spells them.
//!
//! systemd compares `ARCHITECTURE=` in extension-release against
//! `architecture_to_string(uname_architecture())`, so our names must be its names, not Rust's
//! (`x86_64`) or Debian's (`amd64`). Those other spellings are the most common mistake we lint.

use std::fmt;
use std::str::FromStr;

/// The architectures the bakery builds and this suite boots. Serialized as systemd's name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    /// systemd's name, used in extension-release, file names and `%a`.
    pub fn systemd_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Debian's name, used to fetch packages for this architecture.
    pub fn debian_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The architecture of the machine running us, if it is one we support.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

impl TryFrom<String> for Arch {
    type Error = UnknownArch;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Arch> for String {
    fn from(a: Arch) -> String {
        a.systemd_name().to_string()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.systemd_name())
    }
}

/// An architecture name we do not build for; the message lists what we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture '{0}': use x86-64 or arm64 (systemd's names)")]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86-64" => Ok(Arch::X86_64),
            "arm64" => Ok(Arch::Arm64),
            other => Err(UnknownArch(other.to_string())),
        }
    }
}

/// Every value `architecture_to_string()` can return (systemd src/basic/architecture.c).
pub const SYSTEMD_ARCHITECTURES: &[&str] = &[
    "alpha",
    "arc",
    "arc-be",
    "arm",
    "arm-be",
    "arm64",
    "arm64-be",
    "cris",
    "ia64",
    "loongarch64",
    "m68k",
    "mips",
    "mips-le",
    "mips64",
    "mips64-le",
    "nios2",
    "parisc",
    "parisc64",
    "ppc",
    "ppc-le",
    "ppc64",
    "ppc64-le",
    "riscv32",
    "riscv64",
    "s390",
    "s390x",
    "sh",
    "sh64",
    "sparc",
    "sparc64",
    "tilegx",
    "x86",
    "x86-64",
];

/// The systemd name a common misspelling was meant to be, if we recognise it.
pub fn correct_misspelling(value: &str) -> Option<&'static str> {
    match value {
        "x86_64" | "amd64" | "x64" | "x86-64-v2" | "x86-64-v3" => Some("x86-64"),
        "aarch64" | "arm64-v8" | "armv8" => Some("arm64"),
        "armhf" | "armv7" | "armv7l" | "armel" => Some("arm"),
        "i386" | "i686" | "i586" | "i486" => Some("x86"),
        "ppc64le" => Some("ppc64-le"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("x86-64", Some(Arch::X86_64))]
    #[case("arm64", Some(Arch::Arm64))]
    #[case("x86_64", None)]
    #[case("amd64", None)]
    fn parses_only_systemd_names(#[case] input: &str, #[case] expected: Option<Arch>) {
        assert_eq!(input.parse::<Arch>().ok(), expected);
    }

    #[rstest]
    #[case("x86_64", Some("x86-64"))]
    #[case("amd64", Some("x86-64"))]
    #[case("aarch64", Some("arm64"))]
    #[case("armhf", Some("arm"))]
    #[case("arm64", None)]
    fn suggests_systemd_spelling(#[case] input: &str, #[case] expected: Option<&str>) {
        assert_eq!(correct_misspelling(input), expected);
    }

    #[test]
    fn every_supported_arch_is_a_systemd_architecture() {
        for arch in Arch::ALL {
            assert!(SYSTEMD_ARCHITECTURES.contains(&arch.systemd_name()));
        }
    }
}
