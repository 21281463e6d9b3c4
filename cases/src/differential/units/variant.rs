//! Generated units and what they point at: one image per variant, holding one service
//! (sometimes with a socket), the program it runs, the accounts it runs as and the way it
//! is started. Data, not bytes: (seed, index) always gives the same variant.

use serde::Serialize;

use crate::differential::variant::{Format, chance, pick, token};
use crate::fuzz::Rng;

/// What `ExecStart=` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Program {
    /// `/bin/true`, the host's.
    HostTrue,
    /// `true`, found through systemd's search path.
    HostTrueBySearch,
    /// A `#!/bin/sh` script the image ships.
    Script,
    /// A static ELF for the image's arch.
    Elf,
    /// A static ELF for the other arch.
    ElfOtherArch,
    /// A script whose `#!` interpreter exists nowhere.
    ScriptMissingInterpreter,
    /// A path nothing ships.
    Absent,
    /// The image ships the script in usr/bin; the unit calls it through /usr/sbin.
    SbinCall,
    /// The image ships the script in usr/sbin and the unit calls it there.
    SbinShipped,
}

/// Where the `ExecStart=` line is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecIn {
    Unit,
    /// A file in `NAME.service.d/` with this suffix (`.conf` is the only one systemd reads).
    DropIn(String),
    /// No `ExecStart=` anywhere.
    Nowhere,
    /// Two `ExecStart=` lines in the unit.
    Twice,
}

/// An account a unit names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Account {
    Unset,
    Root,
    /// One the guest has (picked from its own lists).
    Existing,
    /// One nothing has.
    Unknown,
}

/// How the service gets started after the merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `systemctl start NAME.service`.
    Direct,
    /// A `multi-user.target.wants/` link, then `systemctl start multi-user.target` (what
    /// Flatcar's ensure-sysext.service and a boot do).
    Wants,
    /// `Upholds=` in a `multi-user.target.d/` drop-in: systemd starts it itself.
    Upholds,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    pub user: Account,
    pub group: Account,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitVariant {
    pub format: Format,
    /// Deployed as a directory tree instead of a packed image: the same units, no loop
    /// device to set up (a merge of directories is several times faster under TCG).
    pub directory: bool,
    pub reload_manager: bool,
    pub program: Program,
    /// The shipped program's execute bits (ignored for host programs).
    pub executable: bool,
    /// `-` before the program: systemd ignores its failure.
    pub dash: bool,
    pub exec_in: ExecIn,
    pub oneshot: bool,
    pub user: Account,
    pub group: Account,
    pub supplementary: Account,
    pub dynamic_user: bool,
    pub activation: Activation,
    pub socket: Option<Socket>,
    /// A `multi-user.target.wants/` link to a unit the image does not ship.
    pub dangling_link: bool,
}

/// The accounts the guest has that variants may name: `(users, groups)`, never root.
#[derive(Debug, Clone, Default)]
pub struct GuestAccounts {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

const PROGRAMS: &[Program] = &[
    Program::HostTrue,
    Program::HostTrueBySearch,
    Program::Script,
    Program::Script,
    Program::Elf,
    Program::Elf,
    Program::ElfOtherArch,
    Program::ScriptMissingInterpreter,
    Program::Absent,
    Program::SbinCall,
    Program::SbinShipped,
];

fn account(rng: &mut Rng) -> Account {
    match rng.below(100) {
        0..=54 => Account::Unset,
        55..=64 => Account::Root,
        65..=84 => Account::Existing,
        _ => Account::Unknown,
    }
}

impl UnitVariant {
    /// The variant every knob shrinks towards: a oneshot running the image's script, as root,
    /// started directly.
    pub fn plainest(format: Format) -> UnitVariant {
        UnitVariant {
            format,
            directory: false,
            reload_manager: true,
            program: Program::Script,
            executable: true,
            dash: false,
            exec_in: ExecIn::Unit,
            oneshot: true,
            user: Account::Unset,
            group: Account::Unset,
            supplementary: Account::Unset,
            dynamic_user: false,
            activation: Activation::Direct,
            socket: None,
            dangling_link: false,
        }
    }

    /// Whether the image ships the program (so its mode and contents matter).
    pub fn ships_program(&self) -> bool {
        !matches!(
            self.program,
            Program::HostTrue | Program::HostTrueBySearch | Program::Absent
        )
    }

    /// Copies with one knob set back to its plainest value.
    pub fn shrink_candidates(&self) -> Vec<UnitVariant> {
        let plain = UnitVariant::plainest(self.format);
        let mut out = Vec::new();
        let mut try_knob = |f: &dyn Fn(&mut UnitVariant)| {
            let mut c = self.clone();
            f(&mut c);
            if c != *self {
                out.push(c);
            }
        };
        try_knob(&|c| c.reload_manager = plain.reload_manager);
        try_knob(&|c| c.program = plain.program);
        try_knob(&|c| c.executable = true);
        try_knob(&|c| c.dash = false);
        try_knob(&|c| c.exec_in = ExecIn::Unit);
        try_knob(&|c| c.oneshot = true);
        try_knob(&|c| c.user = Account::Unset);
        try_knob(&|c| c.group = Account::Unset);
        try_knob(&|c| c.supplementary = Account::Unset);
        try_knob(&|c| c.dynamic_user = false);
        try_knob(&|c| c.socket = None);
        if self.socket.is_none() {
            try_knob(&|c| c.activation = Activation::Direct);
        }
        try_knob(&|c| c.dangling_link = false);
        try_knob(&|c| c.format = Format::Squashfs);
        try_knob(&|c| c.directory = false);
        out
    }

    /// The variant in words, only what differs from the plainest.
    pub fn describe(&self) -> String {
        let mut parts = vec![if self.directory {
            "directory".to_string()
        } else {
            format!("{:?}", self.format).to_lowercase()
        }];
        let plain = UnitVariant::plainest(self.format);
        if !self.reload_manager {
            parts.push("no EXTENSION_RELOAD_MANAGER".into());
        }
        if self.program != plain.program {
            parts.push(format!("program {:?}", self.program));
        }
        if !self.executable && self.ships_program() {
            parts.push("mode 0644".into());
        }
        if self.dash {
            parts.push("ExecStart=-".into());
        }
        if self.exec_in != plain.exec_in {
            parts.push(format!("ExecStart {:?}", self.exec_in));
        }
        if !self.oneshot {
            parts.push("Type=simple".into());
        }
        for (k, a) in [
            ("User", self.user),
            ("Group", self.group),
            ("SupplementaryGroups", self.supplementary),
        ] {
            if a != Account::Unset {
                parts.push(format!("{k} {a:?}"));
            }
        }
        if self.dynamic_user {
            parts.push("DynamicUser=yes".into());
        }
        if self.activation != plain.activation {
            parts.push(format!("started {:?}", self.activation));
        }
        if let Some(s) = &self.socket {
            parts.push(format!(
                "socket (SocketUser {:?}, SocketGroup {:?})",
                s.user, s.group
            ));
        }
        if self.dangling_link {
            parts.push("dangling .wants link".into());
        }
        parts.join(", ")
    }
}

/// Variant `index` of the run seeded with `seed`.
pub fn generate(seed: u64, index: u32) -> UnitVariant {
    // A seed of its own, so the units family never replays the images family's draws.
    let mut rng = Rng::for_mutant(seed ^ 0x756e_6974_7300_0000, u64::from(index));
    let format = if chance(&mut rng, 50) {
        Format::Squashfs
    } else {
        Format::Erofs
    };
    let mut v = UnitVariant::plainest(format);
    v.directory = chance(&mut rng, 60);
    v.reload_manager = !chance(&mut rng, 12);
    v.program = PROGRAMS[rng.below(PROGRAMS.len())];
    v.executable = !chance(&mut rng, 15);
    v.dash = chance(&mut rng, 8);
    v.exec_in = match rng.below(100) {
        0..=69 => ExecIn::Unit,
        70..=84 => ExecIn::DropIn(".conf".into()),
        85..=91 => ExecIn::DropIn(pick(&mut rng, &[".cfg", ".conf.bak", ".service", ""]).into()),
        92..=95 => ExecIn::Nowhere,
        _ => ExecIn::Twice,
    };
    v.oneshot = !chance(&mut rng, 15);
    v.user = account(&mut rng);
    v.group = account(&mut rng);
    v.supplementary = if chance(&mut rng, 20) {
        account(&mut rng)
    } else {
        Account::Unset
    };
    v.dynamic_user = chance(&mut rng, 8);
    v.activation = match rng.below(100) {
        0..=69 => Activation::Direct,
        70..=84 => Activation::Wants,
        _ => Activation::Upholds,
    };
    // A socket is started before its service, as sockets.target would: a socket whose
    // service already runs refuses to start ("Socket service ... already active").
    if v.activation == Activation::Direct && chance(&mut rng, 20) {
        v.socket = Some(Socket {
            user: account(&mut rng),
            group: account(&mut rng),
        });
    }
    v.dangling_link = chance(&mut rng, 5);
    v
}

/// The unit names of variant `index`: the service, and the socket when it has one.
pub fn service(index: u32) -> String {
    format!("{}.service", token(index))
}

pub fn socket(index: u32) -> String {
    format!("{}.socket", token(index))
}

/// The unit a dangling link names.
pub fn gone(index: u32) -> String {
    format!("{}-gone.service", token(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_index_give_the_same_variant() {
        assert_eq!(generate(7, 3), generate(7, 3));
        let differ = (0..50)
            .filter(|i| generate(7, *i) != generate(8, *i))
            .count();
        assert!(differ > 40, "{differ}");
    }

    #[test]
    fn every_program_and_account_comes_up_in_a_few_hundred_variants() {
        let vs: Vec<UnitVariant> = (0..400).map(|i| generate(1, i)).collect();
        for p in PROGRAMS {
            assert!(vs.iter().any(|v| v.program == *p), "{p:?}");
        }
        for a in [
            Account::Unset,
            Account::Root,
            Account::Existing,
            Account::Unknown,
        ] {
            assert!(vs.iter().any(|v| v.user == a), "{a:?}");
        }
        assert!(vs.iter().any(|v| v.socket.is_some()));
        assert!(vs.iter().any(|v| !v.reload_manager));
        assert!(vs.iter().any(|v| v.exec_in == ExecIn::Twice));
    }

    #[test]
    fn shrinking_only_moves_towards_the_plainest() {
        let v = generate(3, 9);
        for c in v.shrink_candidates() {
            assert_ne!(c, v);
        }
        assert!(
            UnitVariant::plainest(Format::Squashfs)
                .shrink_candidates()
                .is_empty()
        );
    }
}
