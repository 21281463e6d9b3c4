//! The sysupdate cycles and mirror faults by name: what `update::<arch>::<subject>::<cycle>`
//! trials are called and which arch runs which.

use sysext_builder::Arch;

/// The mirror faults a cycle injects (see `faults.rs` for what each one checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCase {
    NotFound,
    ServerError,
    CutShort,
    Corrupt,
    Stall,
    WrongDigest,
    MalformedSums,
}

/// A sysupdate cycle: what a user does to stay current, or a fault on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    Update,
    Rollback,
    Retention,
    Timer,
    TimerRefresh,
    VersionRules,
    /// The update staged, and the reboot the docs' drop-in asks for done for real.
    Reboot,
    Fault(FaultCase),
}

impl Cycle {
    /// Every cycle, in the order they are listed.
    pub const ALL: [Cycle; 14] = [
        Cycle::Update,
        Cycle::Rollback,
        Cycle::Retention,
        Cycle::Timer,
        Cycle::TimerRefresh,
        Cycle::VersionRules,
        Cycle::Reboot,
        Cycle::Fault(FaultCase::NotFound),
        Cycle::Fault(FaultCase::ServerError),
        Cycle::Fault(FaultCase::CutShort),
        Cycle::Fault(FaultCase::Corrupt),
        Cycle::Fault(FaultCase::Stall),
        Cycle::Fault(FaultCase::WrongDigest),
        Cycle::Fault(FaultCase::MalformedSums),
    ];

    /// The cycles arm64 runs: every path a user takes, but not the fault matrix, which
    /// exercises systemd-pull's arch-independent error handling and would add minutes of
    /// emulation (arm64 runs at a sixth of x86-64's speed here), nor the real reboot (a
    /// second cold boot of the arm64 guest; the run-time reboot case covers arm64).
    pub const ARM64: [Cycle; 5] = [
        Cycle::Update,
        Cycle::Rollback,
        Cycle::Retention,
        Cycle::Timer,
        Cycle::VersionRules,
    ];

    /// The name in test names (`update::<arch>::<subject>::<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Cycle::Update => "update",
            Cycle::Rollback => "rollback",
            Cycle::Retention => "retention",
            Cycle::Timer => "timer",
            Cycle::TimerRefresh => "timer-refresh",
            Cycle::VersionRules => "version-rules",
            Cycle::Reboot => "reboot",
            Cycle::Fault(FaultCase::NotFound) => "fault-not-found",
            Cycle::Fault(FaultCase::ServerError) => "fault-server-error",
            Cycle::Fault(FaultCase::CutShort) => "fault-cut-short",
            Cycle::Fault(FaultCase::Corrupt) => "fault-corrupt",
            Cycle::Fault(FaultCase::Stall) => "fault-stall",
            Cycle::Fault(FaultCase::WrongDigest) => "fault-wrong-digest",
            Cycle::Fault(FaultCase::MalformedSums) => "fault-malformed-sums",
        }
    }
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Cycle {
    type Err = String;
    fn from_str(s: &str) -> Result<Cycle, String> {
        Cycle::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Cycle::ALL.iter().map(|c| c.name()).collect();
                format!("unknown cycle '{s}': use one of {}", names.join(", "))
            })
    }
}

/// The cycles to run on `arch`.
pub fn cycles_for(arch: Arch) -> &'static [Cycle] {
    match arch {
        Arch::X86_64 => &Cycle::ALL,
        Arch::Arm64 => &Cycle::ARM64,
    }
}
