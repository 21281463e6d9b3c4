//! What an image is checked against: the host OS it will be merged on.
//!
//! The default is Flatcar, the bakery's only consumer, described by its os-release and the
//! binaries and libraries its `/usr` ships; `generic` describes a systemd distribution we
//! know nothing about beyond the basics, so checks that need the base image say less.

use std::collections::HashSet;

use sysext_builder::Arch;
use sysext_builder::flatcar_release::{self, Channel, Facts, MergeModel, Systemd};
use sysext_builder::osrelease::OsRelease;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Flatcar,
    Generic,
}

impl std::str::FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flatcar" => Ok(TargetKind::Flatcar),
            "generic" => Ok(TargetKind::Generic),
            o => Err(format!("unknown target '{o}': use flatcar or generic")),
        }
    }
}

/// What the user named with `--target`: a kind and, for Flatcar, a release version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub kind: TargetKind,
    /// A Flatcar release (`4593.2.5`): Flatcar numbers its releases as semver.
    pub version: Option<semver::Version>,
}

impl std::str::FromStr for TargetSpec {
    type Err = String;
    /// `flatcar`, `flatcar:stable` (a channel's current release as the release table knows
    /// it), `flatcar:4230.2.0`, `flatcar:stable:4593.2.5` or `generic`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, version) = match s.split_once(':') {
            Some((k, v)) => (k, Some(v)),
            None => (s, None),
        };
        let kind: TargetKind = kind.parse()?;
        let version = match version {
            None => None,
            Some(_) if kind == TargetKind::Generic => {
                return Err(format!(
                    "target '{s}': only flatcar takes a version (flatcar:4593.2.5, flatcar:stable); for another OS give --systemd"
                ));
            }
            Some(v) => Some(
                Facts::resolve(v)
                    .map_err(|e| format!("target '{s}': {e}"))?
                    .version,
            ),
        };
        Ok(TargetSpec { kind, version })
    }
}

/// What is known about the target's systemd: a major version range. Rules that exist for
/// one side of a systemd change (see `lint::gates`) only run when the range says which side
/// the target is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemdRange {
    /// The target's systemd is at least this major version (0: unknown).
    pub at_least: u32,
    /// The target's systemd is older than this major version, if known.
    pub below: Option<u32>,
}

impl SystemdRange {
    pub fn exactly(major: u32) -> SystemdRange {
        SystemdRange {
            at_least: major,
            below: Some(major + 1),
        }
    }

    /// Certainly at least `major`.
    pub fn is_at_least(&self, major: u32) -> bool {
        self.at_least >= major
    }

    /// Certainly older than `major`.
    pub fn is_below(&self, major: u32) -> bool {
        self.below.is_some_and(|b| b <= major)
    }

    pub fn describe(&self) -> String {
        match (self.at_least, self.below) {
            (0, None) => "unknown".into(),
            (a, Some(b)) if b == a + 1 => format!("{a}"),
            (0, Some(b)) => format!("< {b}"),
            (a, None) => format!(">= {a}"),
            (a, Some(b)) => format!(">= {a}, < {b}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: TargetKind,
    /// The Flatcar release, when the user named one.
    pub version: Option<semver::Version>,
    /// The target's systemd, as far as it is known.
    pub systemd: SystemdRange,
    pub os_release: OsRelease,
    /// Absolute paths of executables the base OS provides.
    pub binaries: HashSet<String>,
    /// Sonames of libraries the base OS provides.
    pub libraries: HashSet<String>,
    /// Dynamic loaders (PT_INTERP paths) the base OS provides.
    pub interpreters: HashSet<String>,
    /// `/usr/sbin` is a symlink to `bin` (Flatcar since 2024-09): shipping `usr/sbin` in an
    /// extension then shadows every base sbin binary.
    pub sbin_merged: bool,
    /// The `/usr/sbin` layout is the target's own (a Flatcar release, or the host's layout
    /// given to lint), not a guess.
    pub sbin_known: bool,
    /// True when the binary and library sets are a real description of the base, so a
    /// missing entry means something; false for generic, where we only warn gently.
    pub knows_base: bool,
    /// The users and groups units may name in `User=`, `Group=`, `SocketGroup=`...
    pub accounts: Accounts,
    /// When the target merges extensions at boot, for a named Flatcar release.
    pub merge_model: Option<MergeModel>,
}

/// Users and groups of the target. Only a host's own `/etc/passwd` and `/etc/group`
/// (`--host-passwd`, `--host-group`) make the lists complete: without them lint knows the
/// few every such host has, and an unknown name is a warning, not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    pub users: HashSet<String>,
    pub groups: HashSet<String>,
    /// Both lists are the host's own, so a name not in them is missing there.
    pub complete: bool,
}

impl Accounts {
    fn known(users: &[&str], groups: &[&str]) -> Accounts {
        Accounts {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            complete: false,
        }
    }

    /// A host's accounts from its `passwd(5)` and `group(5)` texts (the first field of each
    /// line; comments and blank lines skipped).
    pub fn from_files(passwd: &str, group: &str) -> Accounts {
        let names = |text: &str| -> HashSet<String> {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split(':').next())
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        };
        Accounts {
            users: names(passwd),
            groups: names(group),
            complete: true,
        }
    }
}

/// Binaries Flatcar's `/usr` ships that extension units commonly call (flatcar/scripts'
/// base packages: coreutils, util-linux, systemd, iproute2, kmod, docker/containerd built-ins).
const FLATCAR_BINARIES: &[&str] = &[
    "bash",
    "sh",
    "env",
    "true",
    "false",
    "cat",
    "cp",
    "mv",
    "rm",
    "ln",
    "mkdir",
    "rmdir",
    "chmod",
    "chown",
    "touch",
    "test",
    "[",
    "echo",
    "sleep",
    "install",
    "readlink",
    "realpath",
    "sed",
    "grep",
    "awk",
    "gawk",
    "find",
    "xargs",
    "tar",
    "gzip",
    "zstd",
    "xz",
    "bzip2",
    "curl",
    "wget",
    "mount",
    "umount",
    "findmnt",
    "modprobe",
    "insmod",
    "rmmod",
    "lsmod",
    "sysctl",
    "ip",
    "iptables",
    "ip6tables",
    "nft",
    "systemctl",
    "systemd-tmpfiles",
    "systemd-sysusers",
    "systemd-sysext",
    "systemd-confext",
    "systemd-escape",
    "systemd-notify",
    "systemd-run",
    "journalctl",
    "loginctl",
    "networkctl",
    "resolvectl",
    "hostnamectl",
    "timedatectl",
    "udevadm",
    "busctl",
    "rsync",
    "ssh",
    "sshd",
    "sudo",
    "su",
    "useradd",
    "groupadd",
    "usermod",
    "getent",
    "id",
    "flock",
    "logger",
    "nsenter",
    "unshare",
    "chroot",
    "mkfs.ext4",
    "blkid",
    "lsblk",
    "jq",
    "ethtool",
    "conntrack",
    "socat",
    "docker",
    "dockerd",
    "containerd",
    "ctr",
    "runc",
    "containerd-shim-runc-v2",
    "docker-init",
    "docker-proxy",
    "update-ca-certificates",
    "kmod",
    "depmod",
    "agetty",
    "login",
    "passwd",
    "setfacl",
    "getfacl",
    "setfattr",
    "getfattr",
    "ldconfig",
    "ldd",
    // coreutils, procps and util-linux beyond the above (the bakery's docker.service
    // reloads with `ExecReload=/bin/kill -s HUP $MAINPID`).
    "kill",
    "pkill",
    "pgrep",
    "ps",
    "head",
    "tail",
    "cut",
    "tr",
    "sort",
    "uniq",
    "wc",
    "tee",
    "date",
    "basename",
    "dirname",
    "stat",
    "dd",
    "df",
    "du",
    "ls",
    "mktemp",
    "hostname",
    "printf",
    "uname",
    "nproc",
    "chgrp",
    "sync",
    "seq",
    "timeout",
    "nohup",
    "setpriv",
    "runuser",
];

/// Libraries Flatcar's `/usr/lib64` provides (glibc, and the common ones from its base).
const FLATCAR_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
    "libcrypt.so.1",
    "libcrypt.so.2",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libz.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
    "libsystemd.so.0",
    "libudev.so.1",
    "libseccomp.so.2",
    "libselinux.so.1",
    "libcap.so.2",
    "libacl.so.1",
    "libattr.so.1",
    "libblkid.so.1",
    "libmount.so.1",
    "libuuid.so.1",
    "libdevmapper.so.1.02",
    "libkmod.so.2",
    "liblzma.so.5",
    "libzstd.so.1",
    "libbz2.so.1",
    "libcurl.so.4",
    "libnftnl.so.11",
    "libmnl.so.0",
    "libgmp.so.10",
    "libffi.so.8",
    "libexpat.so.1",
    "libpcre2-8.so.0",
    "libncursesw.so.6",
    "libtinfo.so.6",
    "libreadline.so.8",
    "libip4tc.so.2",
    "libip6tc.so.2",
    "libxtables.so.12",
    "libnl-3.so.200",
    "libnl-genl-3.so.200",
    "libjson-c.so.5",
    "libaudit.so.1",
    "libpam.so.0",
    "libkeyutils.so.1",
    "libgcrypt.so.20",
    "libgpg-error.so.0",
    "libelf.so.1",
    "liblz4.so.1",
    "libtirpc.so.3",
    "libnsl.so.3",
    "libsqlite3.so.0",
    "libxml2.so.2",
];

impl Target {
    /// The target `spec` names; `systemd` (a major version, from `--systemd`) overrides
    /// what the Flatcar version implies.
    pub fn from_spec(spec: &TargetSpec, systemd: Option<u32>) -> Target {
        let mut t = Target::new(spec.kind);
        if let Some(v) = &spec.version {
            let facts = Facts::for_version(v);
            t.os_release = flatcar_os_release(&facts);
            t.sbin_merged = facts.sbin_merged;
            t.sbin_known = true;
            t.systemd = match facts.systemd {
                Systemd::Major(m) => SystemdRange::exactly(m),
                Systemd::AtLeast(m) => SystemdRange {
                    at_least: m,
                    below: None,
                },
                Systemd::Below(m) => SystemdRange {
                    at_least: 0,
                    below: Some(m),
                },
            };
            t.merge_model = Some(facts.merge);
            t.version = Some(v.clone());
        }
        if let Some(major) = systemd {
            t.systemd = SystemdRange::exactly(major);
        }
        t
    }

    /// One line for reports: `flatcar stable 4593.2.5 (systemd 257, /usr/sbin -> bin,
    /// real-root merge)`.
    pub fn describe(&self) -> String {
        let sbin = if self.sbin_merged {
            "-> bin"
        } else {
            "a directory"
        };
        match (&self.kind, &self.version) {
            (TargetKind::Flatcar, Some(v)) => {
                let facts = Facts::for_version(v);
                format!(
                    "flatcar {}{v} (systemd {}, /usr/sbin {sbin}, {} merge)",
                    facts.channel.map(|c| format!("{c} ")).unwrap_or_default(),
                    self.systemd.describe(),
                    facts.merge.name()
                )
            }
            (kind, _) => format!(
                "{} (systemd {}, /usr/sbin {sbin})",
                match kind {
                    TargetKind::Flatcar => "flatcar",
                    TargetKind::Generic => "generic",
                },
                self.systemd.describe()
            ),
        }
    }

    pub fn new(kind: TargetKind) -> Target {
        match kind {
            TargetKind::Flatcar => Target {
                kind,
                version: None,
                systemd: SystemdRange::default(),
                // Any Flatcar release: Stable's current one speaks for them (ID, ID_LIKE
                // and SYSEXT_LEVEL are the same on every channel).
                os_release: flatcar_os_release(&Channel::Stable.current()),
                binaries: bin_paths(FLATCAR_BINARIES, true),
                libraries: FLATCAR_LIBRARIES.iter().map(|s| s.to_string()).collect(),
                interpreters: [
                    "/lib64/ld-linux-x86-64.so.2",
                    "/lib/ld-linux-aarch64.so.1",
                    "/usr/lib64/ld-linux-x86-64.so.2",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                sbin_merged: true,
                sbin_known: false,
                knows_base: true,
                // flatcar/baselayout's (packages add more: the lists are not complete).
                accounts: Accounts::known(
                    &flatcar_release::USERS
                        .iter()
                        .map(|u| u.name)
                        .collect::<Vec<_>>(),
                    &flatcar_release::GROUPS
                        .iter()
                        .map(|g| g.name)
                        .collect::<Vec<_>>(),
                ),
                merge_model: None,
            },
            TargetKind::Generic => Target {
                kind,
                version: None,
                systemd: SystemdRange::default(),
                os_release: OsRelease::from_pairs(&[("ID", "linux")]),
                binaries: bin_paths(FLATCAR_BINARIES, false),
                libraries: [
                    "libc.so.6",
                    "libm.so.6",
                    "libdl.so.2",
                    "libpthread.so.0",
                    "librt.so.1",
                    "libgcc_s.so.1",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                interpreters: [
                    "/lib64/ld-linux-x86-64.so.2",
                    "/lib/ld-linux-aarch64.so.1",
                    "/lib/ld-linux-armhf.so.3",
                    "/lib/ld64.so.1",
                    "/lib/ld-linux-riscv64-lp64d.so.1",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                sbin_merged: false,
                sbin_known: false,
                knows_base: false,
                accounts: Accounts::known(&["root", "nobody"], &["root"]),
                merge_model: None,
            },
        }
    }

    /// Whether `path` (absolute) is an executable the base provides, with the merged-usr
    /// aliases every current distribution has (`/bin` → `/usr/bin`, and on Flatcar
    /// `/usr/sbin` → `/usr/bin`).
    pub fn has_binary(&self, path: &str) -> bool {
        aliases(path, self.sbin_merged)
            .iter()
            .any(|p| self.binaries.contains(p))
    }

    /// Whether the base provides a dynamic loader at `path`.
    pub fn has_interpreter(&self, path: &str) -> bool {
        aliases(path, self.sbin_merged)
            .iter()
            .any(|p| self.interpreters.contains(p))
    }
}

/// The os-release a Flatcar release writes (the release table's, so lint and the Flatcar
/// guest read the same one); its board does not take part in matching.
fn flatcar_os_release(facts: &Facts) -> OsRelease {
    OsRelease::parse(&facts.os_release(Arch::X86_64, "")).0
}

fn bin_paths(names: &[&str], sbin_merged: bool) -> HashSet<String> {
    let mut out = HashSet::new();
    for n in names {
        out.insert(format!("/usr/bin/{n}"));
        if !sbin_merged {
            out.insert(format!("/usr/sbin/{n}"));
        }
    }
    out
}

/// The spellings of `path` that reach the same file on a merged-usr system.
pub fn aliases(path: &str, sbin_merged: bool) -> Vec<String> {
    let mut out = vec![path.to_string()];
    for (from, to) in [
        ("/bin/", "/usr/bin/"),
        ("/sbin/", "/usr/sbin/"),
        ("/lib/", "/usr/lib/"),
        ("/lib64/", "/usr/lib64/"),
    ] {
        if let Some(rest) = path.strip_prefix(from) {
            out.push(format!("{to}{rest}"));
        }
    }
    if sbin_merged {
        let extra: Vec<String> = out
            .iter()
            .filter_map(|p| {
                p.strip_prefix("/usr/sbin/")
                    .map(|r| format!("/usr/bin/{r}"))
            })
            .collect();
        out.extend(extra);
    }
    out
}
