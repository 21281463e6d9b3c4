//! Flatcar releases as their own sources show them: one table that lint's
//! `--target flatcar:…` and the Flatcar guest profiles both read, so the two cannot say
//! different things about the same release (they did: lint said `ID_LIKE=coreos`, the
//! guest `debian`, and an `ID=debian` image got opposite answers from them).
//!
//! Every fact names where it was read, in flatcar/scripts at its 2026-08-22 snapshot
//! (release tags `stable-4593.2.5`, `beta-4757.1.0`, `alpha-4790.0.0`, `lts-4081.3.10`):
//! `git show TAG:PATH` reproduces each one.

use std::fmt;

use crate::Arch;

/// Flatcar's channels. A release's channel is its version's minor number (`4593.2.5`:
/// 2 is Stable), which is how Flatcar numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Alpha,
    Beta,
    Stable,
    Lts,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Lts, Channel::Stable, Channel::Beta, Channel::Alpha];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Alpha => "alpha",
            Channel::Beta => "beta",
            Channel::Stable => "stable",
            Channel::Lts => "lts",
        }
    }

    /// The channel a release number belongs to (its minor number), if it is one of the four.
    pub fn of(version: &semver::Version) -> Option<Channel> {
        match version.minor {
            0 => Some(Channel::Alpha),
            1 => Some(Channel::Beta),
            2 => Some(Channel::Stable),
            3 => Some(Channel::Lts),
            _ => None,
        }
    }

    /// The channel's newest release at the snapshot this table was read from.
    pub fn current(self) -> Facts {
        let v = match self {
            Channel::Lts => "4081.3.10",
            Channel::Stable => "4593.2.5",
            Channel::Beta => "4757.1.0",
            Channel::Alpha => "4790.0.0",
        };
        // The literals above are release numbers; a typo is caught by the table's tests.
        Facts::for_version(&semver::Version::parse(v).unwrap_or(semver::Version::new(0, 0, 0)))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Channel, String> {
        Channel::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown Flatcar channel '{s}': use lts, stable, beta or alpha"))
    }
}

/// When and where a Flatcar host merges its extensions at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeModel {
    /// `systemd-sysext.service` in the real root, then Flatcar's `ensure-sysext.service`
    /// (a `daemon-reload` and a restart of sockets, timers and multi-user), so an image's
    /// `.wants` links start at boot and, with ensure-sysext run again, after a refresh.
    RealRoot,
    /// Merged from the initrd into `/sysroot` before the real root's manager starts
    /// (flatcar/scripts#3555, "Moved systemd-sysext image mounting into the initrd",
    /// merged 2026-03-03): `.wants` links work at boot, ensure-sysext is gone, and `/etc`
    /// is a mutable confext.
    Initrd,
}

impl MergeModel {
    pub fn name(self) -> &'static str {
        match self {
            MergeModel::RealRoot => "real-root",
            MergeModel::Initrd => "initrd",
        }
    }
}

/// The first release number (major) from which a behaviour holds, on every channel that
/// has reached it: Flatcar branches each channel from the same majors, so a major decides.
pub mod from_major {
    /// `/usr/sbin` is a symlink to `bin`: flatcar/scripts#2068 (merge commit b99e666f00,
    /// changelog `2024-09-05-sbin-merge.md`), first in alpha-4116.0.0, beta-4116.1.0 and
    /// stable-4152.2.0; no LTS release has it (lts-4081.x keeps the directory).
    pub const SBIN_MERGE: u64 = 4116;
    /// `systemd-sysupdate.timer` enabled by `preset-all` (coreos-overlay a3d6f4ee3b,
    /// Flatcar/Flatcar#1979): first in alpha-4515.0.0, beta-4515.1.0, stable-4593.2.0.
    pub const SYSUPDATE_TIMER: u64 = 4515;
    /// Extensions merged from the initrd (flatcar/scripts#3555, merge commit 7072d08e82):
    /// first in alpha-4628.0.0 and beta-4628.1.0; no Stable or LTS release yet.
    pub const INITRD_MERGE: u64 = 4628;
    /// os-release values quoted, no codename, `SUPPORT_URL` added (b82850d1c9, d70cfcaab9).
    pub const QUOTED_OS_RELEASE: u64 = 4628;
}

/// systemd's major version by the first Flatcar major that ships it (the systemd ebuild a
/// tag's profile picks: coreos-overlay, later portage-stable `sys-apps/systemd`). Below the
/// first entry the table says nothing but "older than 255".
const SYSTEMD_BY_MAJOR: &[(u64, u32)] = &[
    (3913, 255), // alpha-3913.0.0: systemd-255.3 (Flatcar/Flatcar#1391)
    (4230, 256), // the 4230 majors: 256.9
    (4487, 257), // alpha-4487: 257.7; 4515-4593: 257.9
    (4628, 258), // alpha-4628.0.0, beta-4628.1.x: 258.2 (accept_keywords from #3555)
    (4722, 260), // 4722, 4757, 4790: 260.1
];

/// What is known of a release's systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Systemd {
    /// This major version.
    Major(u32),
    /// Older than this major version (releases before the table starts).
    Below(u32),
    /// This major version or newer (releases after the snapshot the table was read from).
    AtLeast(u32),
}

/// The newest major the table was read at (alpha-4790.0.0): later releases may carry a
/// newer systemd than the last one the table lists.
const SNAPSHOT_MAJOR: u64 = 4790;

/// The facts of one Flatcar release that decide what its host does with an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub version: semver::Version,
    pub channel: Option<Channel>,
    pub systemd: Systemd,
    /// `/usr/sbin -> bin` (an image's `usr/sbin` directory then hides every base sbin
    /// program).
    pub sbin_merged: bool,
    pub merge: MergeModel,
    /// `systemd-sysupdate.timer` runs without being enabled by the user.
    pub sysupdate_timer: bool,
}

impl Facts {
    /// The facts for any release number, from the boundaries above.
    pub fn for_version(version: &semver::Version) -> Facts {
        let major = version.major;
        let systemd = SYSTEMD_BY_MAJOR
            .iter()
            .rev()
            .find(|(from, _)| major >= *from)
            .map(|&(_, s)| {
                if major > SNAPSHOT_MAJOR {
                    Systemd::AtLeast(s)
                } else {
                    Systemd::Major(s)
                }
            })
            .unwrap_or(Systemd::Below(SYSTEMD_BY_MAJOR[0].1));
        let channel = Channel::of(version);
        // LTS branches from an older major and keeps its layout: lts-4081.3.x has neither
        // the sbin merge nor the timer, whatever a later LTS major will carry.
        Facts {
            version: version.clone(),
            channel,
            systemd,
            sbin_merged: major >= from_major::SBIN_MERGE,
            merge: if major >= from_major::INITRD_MERGE {
                MergeModel::Initrd
            } else {
                MergeModel::RealRoot
            },
            sysupdate_timer: major >= from_major::SYSUPDATE_TIMER,
        }
    }

    /// `stable`, `4593.2.5` or `stable:4593.2.5` (the channel then must be the version's).
    pub fn resolve(spec: &str) -> Result<Facts, String> {
        let (channel, version) = match spec.split_once(':') {
            Some((c, v)) => (Some(c), Some(v)),
            None if spec.chars().next().is_some_and(|c| c.is_ascii_digit()) => (None, Some(spec)),
            None => (Some(spec), None),
        };
        let channel: Option<Channel> = channel.map(str::parse).transpose()?;
        let Some(v) = version else {
            // `channel` is Some: a spec with neither was sent to the digit branch.
            return Ok(channel
                .map(Channel::current)
                .unwrap_or_else(|| Channel::Stable.current()));
        };
        let version = semver::Version::parse(v)
            .map_err(|e| format!("'{v}' is not a Flatcar release number like 4593.2.5 ({e})"))?;
        let facts = Facts::for_version(&version);
        if let Some(c) = channel
            && facts.channel != Some(c)
        {
            return Err(format!(
                "Flatcar {version} is not a {c} release (the minor number names the channel: 0 alpha, 1 beta, 2 stable, 3 lts)"
            ));
        }
        Ok(facts)
    }

    /// `/usr/lib/os-release` as `build_library/set_lsb_release` writes it for this release
    /// and board. `build_id` stands for the build's timestamp (any value: nothing matches
    /// on it).
    pub fn os_release(&self, arch: Arch, build_id: &str) -> String {
        let v = &self.version;
        let board = match arch {
            Arch::X86_64 => "amd64-usr",
            Arch::Arm64 => "arm64-usr",
        };
        let name = "Flatcar Container Linux by Kinvolk";
        let cpe = format!("cpe:2.3:o:flatcar-linux:flatcar_linux:{v}:*:*:*:*:*:*:*");
        if v.major >= from_major::QUOTED_OS_RELEASE {
            format!(
                "NAME=\"{name}\"\nID=\"flatcar\"\nID_LIKE=\"coreos\"\nVERSION=\"{v}\"\nVERSION_ID=\"{v}\"\nBUILD_ID=\"{build_id}\"\nSYSEXT_LEVEL=\"1.0\"\nPRETTY_NAME=\"{name} {v}\"\nANSI_COLOR=\"38;5;75\"\nHOME_URL=\"https://flatcar.org\"\nBUG_REPORT_URL=\"https://issues.flatcar.org\"\nSUPPORT_URL=\"https://groups.google.com/forum/#!forum/flatcar-linux-user\"\nFLATCAR_BOARD=\"{board}\"\nCPE_NAME=\"{cpe}\"\n"
            )
        } else {
            let codename = if self.channel == Some(Channel::Lts) {
                "LTS 2024"
            } else {
                "Oklo"
            };
            format!(
                "NAME=\"{name}\"\nID=flatcar\nID_LIKE=coreos\nVERSION={v}\nVERSION_ID={v}\nBUILD_ID={build_id}\nSYSEXT_LEVEL=1.0\nPRETTY_NAME=\"{name} {v} ({codename})\"\nANSI_COLOR=\"38;5;75\"\nHOME_URL=\"https://flatcar.org/\"\nBUG_REPORT_URL=\"https://issues.flatcar.org\"\nFLATCAR_BOARD=\"{board}\"\nCPE_NAME=\"{cpe}\"\n"
            )
        }
    }

    /// One line for reports: `stable 4593.2.5 (systemd 257, /usr/sbin -> bin, real-root merge)`.
    pub fn describe(&self) -> String {
        let systemd = match self.systemd {
            Systemd::Major(m) => format!("systemd {m}"),
            Systemd::Below(m) => format!("systemd < {m}"),
            Systemd::AtLeast(m) => format!("systemd >= {m}"),
        };
        format!(
            "{}{} ({systemd}, /usr/sbin {}, {} merge)",
            self.channel.map(|c| format!("{c} ")).unwrap_or_default(),
            self.version,
            if self.sbin_merged {
                "-> bin"
            } else {
                "a directory"
            },
            self.merge.name()
        )
    }
}

/// A user of Flatcar's baselayout (flatcar/baselayout `baselayout/passwd`, the revision
/// lts-4081.3.10 pins; later revisions changed `messagebus`'s ids only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    pub home: &'static str,
    pub shell: &'static str,
}

/// A group of Flatcar's baselayout (`baselayout/group`) with its listed members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub name: &'static str,
    pub gid: u32,
    pub members: &'static [&'static str],
}

const NOLOGIN: &str = "/sbin/nologin";

const fn user(name: &'static str, uid: u32, gid: u32, home: &'static str) -> User {
    User {
        name,
        uid,
        gid,
        home,
        shell: NOLOGIN,
    }
}

/// Baselayout's users. `core` is the login user (Ignition gives it its keys).
pub const USERS: &[User] = &[
    User {
        name: "root",
        uid: 0,
        gid: 0,
        home: "/root",
        shell: "/bin/bash",
    },
    user("bin", 1, 1, "/bin"),
    user("daemon", 2, 2, "/sbin"),
    user("adm", 3, 4, "/var/adm"),
    user("lp", 4, 7, "/var/spool/lpd"),
    user("news", 9, 13, "/var/spool/news"),
    user("uucp", 10, 14, "/var/spool/uucp"),
    user("operator", 11, 0, "/root"),
    user("man", 13, 15, "/usr/share/man"),
    user("netperf", 168, 168, "/dev/null"),
    user("messagebus", 201, 201, "/dev/null"),
    user("syslog", 202, 202, "/dev/null"),
    user("ntp", 203, 203, "/dev/null"),
    user("sshd", 204, 204, "/var/empty"),
    user("tcpdump", 215, 215, "/dev/null"),
    user("dhcp", 224, 224, "/var/lib/dhcpcd"),
    user("etcd", 232, 232, "/dev/null"),
    user("docker", 233, 233, "/dev/null"),
    user("tlsdate", 234, 234, "/dev/null"),
    user("polkitd", 235, 235, "/var/lib/polkit-1"),
    user("tss", 236, 252, "/dev/null"),
    user("systemd-journal-remote", 242, 242, "/dev/null"),
    user("systemd-network", 244, 244, "/dev/null"),
    user("systemd-resolve", 245, 245, "/dev/null"),
    user("systemd-bus-proxy", 246, 246, "/dev/null"),
    user("portage", 250, 250, "/var/tmp/portage"),
    User {
        name: "core",
        uid: 500,
        gid: 500,
        home: "/home/core",
        shell: "/bin/bash",
    },
    user("nobody", 65534, 65534, "/var/empty"),
];

const fn group(name: &'static str, gid: u32, members: &'static [&'static str]) -> Group {
    Group { name, gid, members }
}

/// Baselayout's groups: `core` is in wheel, docker, systemd-journal and portage; sudo rights
/// come from baselayout's sudoers (`core ALL=(ALL) NOPASSWD: ALL`), not from a group.
pub const GROUPS: &[Group] = &[
    group("root", 0, &["root"]),
    group("bin", 1, &["root", "bin", "daemon"]),
    group("daemon", 2, &["root", "bin", "daemon"]),
    group("sys", 3, &["root", "bin", "adm"]),
    group("adm", 4, &["root", "adm", "daemon"]),
    group("tty", 5, &[]),
    group("disk", 6, &["root", "adm"]),
    group("lp", 7, &["lp"]),
    group("mem", 8, &[]),
    group("kmem", 9, &[]),
    group("wheel", 10, &["root", "core"]),
    group("floppy", 11, &["root"]),
    group("news", 13, &[]),
    group("uucp", 14, &[]),
    group("man", 15, &[]),
    group("console", 17, &[]),
    group("audio", 18, &[]),
    group("cdrom", 19, &[]),
    group("tape", 26, &["root"]),
    group("video", 27, &["root"]),
    group("input", 28, &[]),
    group("lock", 29, &[]),
    group("render", 30, &[]),
    group("kvm", 78, &[]),
    group("cdrw", 80, &[]),
    group("usb", 85, &[]),
    group("users", 100, &[]),
    group("sudo", 150, &[]),
    group("netperf", 168, &[]),
    group("messagebus", 201, &[]),
    group("syslog", 202, &[]),
    group("ntp", 203, &[]),
    group("sshd", 204, &[]),
    group("tcpdump", 215, &[]),
    group("dhcp", 224, &[]),
    group("etcd", 232, &[]),
    group("docker", 233, &["core"]),
    group("tlsdate", 234, &[]),
    group("polkitd", 235, &[]),
    group("systemd-journal-remote", 242, &[]),
    group("systemd-network", 244, &[]),
    group("systemd-resolve", 245, &[]),
    group("systemd-bus-proxy", 246, &[]),
    group("systemd-journal", 248, &["core"]),
    group("dialout", 249, &[]),
    group("portage", 250, &["core"]),
    group("tss", 252, &[]),
    group("sgx", 405, &[]),
    group("utmp", 406, &[]),
    group("core", 500, &[]),
    group("nogroup", 65533, &[]),
    group("nobody", 65534, &[]),
];

/// Baselayout's sudoers (`/usr/share/baselayout/sudoers`, which Flatcar's `sudo.conf`
/// points sudo at).
pub const SUDOERS: &str = "Defaults env_keep += \"LESSCHARSET\"\nroot ALL=(ALL) ALL\n%wheel ALL=(ALL) ALL\n%sudo ALL=(ALL) NOPASSWD: ALL\ncore ALL=(ALL) NOPASSWD: ALL\n";

/// Where Flatcar keeps its built-in extensions and how it links them
/// (`build_library/sysext_prod_builder`): the image in `/usr/share/flatcar/sysext/`, an
/// absolute link to it in `/etc/extensions/`.
pub const BUILTIN_DIR: &str = "/usr/share/flatcar/sysext";

/// The built-in extensions (`build_image --base_sysexts`).
pub const BUILTINS: &[&str] = &["containerd-flatcar", "docker-flatcar"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osrelease::OsRelease;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn every_channel_current_release_is_on_its_own_channel() {
        for c in Channel::ALL {
            let f = c.current();
            assert_eq!(f.channel, Some(c), "{}", f.describe());
            assert!(f.version.major > 4000, "{}", f.describe());
        }
    }

    #[test]
    fn channels_today_have_the_facts_their_tags_show() {
        let lts = Channel::Lts.current();
        assert_eq!(
            (lts.systemd, lts.sbin_merged, lts.merge),
            (Systemd::Major(255), false, MergeModel::RealRoot)
        );
        assert!(!lts.sysupdate_timer);
        let stable = Channel::Stable.current();
        assert_eq!(
            (stable.systemd, stable.sbin_merged, stable.merge),
            (Systemd::Major(257), true, MergeModel::RealRoot)
        );
        assert!(stable.sysupdate_timer);
        for c in [Channel::Beta, Channel::Alpha] {
            let f = c.current();
            assert_eq!(
                (f.systemd, f.sbin_merged, f.merge),
                (Systemd::Major(260), true, MergeModel::Initrd)
            );
        }
    }

    #[test]
    fn boundaries_fall_on_the_first_release_that_has_them() {
        assert!(!Facts::for_version(&v("4081.3.10")).sbin_merged);
        assert!(Facts::for_version(&v("4116.0.0")).sbin_merged);
        assert_eq!(
            Facts::for_version(&v("3815.2.5")).systemd,
            Systemd::Below(255)
        );
        assert_eq!(
            Facts::for_version(&v("3913.0.0")).systemd,
            Systemd::Major(255)
        );
        assert_eq!(
            Facts::for_version(&v("4593.0.0")).merge,
            MergeModel::RealRoot
        );
        assert_eq!(Facts::for_version(&v("4628.0.0")).merge, MergeModel::Initrd);
        assert_eq!(
            Facts::for_version(&v("4800.0.0")).systemd,
            Systemd::AtLeast(260)
        );
    }

    #[test]
    fn resolve_takes_a_channel_a_version_or_both_and_refuses_a_mismatch() {
        assert_eq!(Facts::resolve("stable").unwrap(), Channel::Stable.current());
        assert_eq!(Facts::resolve("4230.2.0").unwrap().version, v("4230.2.0"));
        assert_eq!(
            Facts::resolve("beta:4757.1.0").unwrap().channel,
            Some(Channel::Beta)
        );
        let e = Facts::resolve("stable:4757.1.0").unwrap_err();
        assert!(e.contains("not a stable release"), "{e}");
        assert!(
            Facts::resolve("nightly")
                .unwrap_err()
                .contains("use lts, stable")
        );
        assert!(Facts::resolve("4593").unwrap_err().contains("4593.2.5"));
    }

    #[test]
    fn os_release_parses_to_flatcar_like_coreos_with_sysext_level_in_both_styles() {
        for c in Channel::ALL {
            let f = c.current();
            for arch in Arch::ALL {
                let text = f.os_release(arch, "2026-08-12-0000");
                let (os, problems) = OsRelease::parse(&text);
                assert!(problems.is_empty(), "{c}: {problems:?}");
                assert_eq!(os.get("ID"), Some("flatcar"));
                assert_eq!(os.get("ID_LIKE"), Some("coreos"));
                assert_eq!(os.get("SYSEXT_LEVEL"), Some("1.0"));
                assert_eq!(os.get("VERSION_ID"), Some(f.version.to_string().as_str()));
            }
        }
    }

    #[test]
    fn every_group_member_is_a_user_and_ids_are_unique() {
        let mut uids: Vec<u32> = USERS.iter().map(|u| u.uid).collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), USERS.len());
        for g in GROUPS {
            for m in g.members {
                assert!(USERS.iter().any(|u| u.name == *m), "{} lists {m}", g.name);
            }
        }
        assert!(
            GROUPS
                .iter()
                .any(|g| g.name == "docker" && g.gid == 233 && g.members.contains(&"core"))
        );
    }
}
