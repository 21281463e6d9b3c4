//! The Flatcar profile: the same Debian root, made to answer the way a host of one Flatcar
//! release does (its facts from [`crate::flatcar_release`], the table lint's
//! `--target flatcar:…` reads too): that release's os-release (`ID=flatcar`,
//! `ID_LIKE=coreos`, `SYSEXT_LEVEL=1.0`), its `/usr/sbin` layout, baselayout's users and
//! groups (`core` in wheel and docker, group `docker` 233), its merge model
//! (`systemd-sysext.service` in the real root and `ensure-sysext.service`, as Stable has
//! it), and the partitions `bake_flatcar_image.sh` writes to, found by label
//! (`sysext-test bake` uses the same GPT code on it and on a real Flatcar image).
//!
//! Not Flatcar: USR-A and OEM are ext4 (Flatcar: btrfs), EFI-SYSTEM is left unformatted
//! and USR-B, ROOT-C, OEM-CONFIG are small placeholders (the guest boots with `-kernel`,
//! never updates its own `/usr`), and there is no dm-verity on `/usr`; the README's table
//! lists the rest.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::Arch;
use crate::errors::BuildError;
use crate::flatcar_release::{self, Channel, Facts, MergeModel};
use crate::gpt::{self, Planned, types};
use crate::{btrfs, verity};
use crate::{host_tool, userns};

use super::esp;

use super::READY_BEACON;

/// The Flatcar release a guest of `model` answers as: for the real-root merge Stable's
/// current release (systemd 257, the guest's own); for the initrd merge Beta's (which
/// runs systemd 260: the guest keeps Debian's 257, the one fact it cannot match).
pub fn release(model: MergeModel) -> Facts {
    let facts = match model {
        MergeModel::RealRoot => Channel::Stable.current(),
        MergeModel::Initrd => Channel::Beta.current(),
    };
    debug_assert_eq!(facts.merge, model);
    facts
}

/// The `BUILD_ID` the guest's os-release carries where Flatcar has its build's timestamp.
const BUILD_ID: &str = "sysext-test";

/// USR-A's GPT attributes: priority 1, no tries left, successful.
pub const USR_A_ATTRIBUTES: u64 = 0x0101_0000_0000_0000;

/// Flatcar's partition numbers and labels (flatcar/scripts `build_library/disk_layout.json`).
const LAYOUT: &[Planned] = &[
    Planned {
        number: 1,
        label: "EFI-SYSTEM",
        type_guid: types::EFI_SYSTEM,
        mib: 64,
        attributes: 0,
    },
    Planned {
        number: 2,
        label: "BIOS-BOOT",
        type_guid: types::BIOS_BOOT,
        mib: 1,
        attributes: 0,
    },
    Planned {
        number: 3,
        label: "USR-A",
        type_guid: types::COREOS_USR,
        mib: 1024,
        // The slot that boots: priority 1, marked successful (Flatcar's `prioritize`).
        attributes: USR_A_ATTRIBUTES,
    },
    Planned {
        number: 4,
        label: "USR-B",
        type_guid: types::COREOS_USR,
        // Flatcar's shape, empty until an update writes it (sparse here).
        mib: 1024,
        attributes: 0,
    },
    Planned {
        number: 5,
        label: "ROOT-C",
        type_guid: types::COREOS_RESERVED,
        mib: 1,
        attributes: 0,
    },
    Planned {
        number: 6,
        label: "OEM",
        type_guid: types::LINUX_DATA,
        mib: 128,
        attributes: 0,
    },
    Planned {
        number: 7,
        label: "OEM-CONFIG",
        type_guid: types::COREOS_RESERVED,
        mib: 1,
        attributes: 0,
    },
    Planned {
        number: 8,
        label: "coreos-reserved",
        type_guid: types::COREOS_RESERVED,
        mib: 1,
        attributes: 0,
    },
    Planned {
        number: 9,
        label: "ROOT",
        type_guid: types::COREOS_RESIZE,
        mib: 1024,
        attributes: 0,
    },
];

/// Files this profile writes over the Debian ones; part of the recipe hash.
pub fn customizations(arch: Arch, model: MergeModel) -> Vec<(&'static str, String)> {
    let mut files = vec![
        ("usr/lib/os-release", release(model).os_release(arch, BUILD_ID)),
        // The root; /usr and /oem are mounted by the initramfs, as Flatcar's initrd does.
        ("etc/fstab", "LABEL=ROOT / ext4 rw,relatime 0 1\n".into()),
        // Flatcar's logins: OpenSSH socket-activated (portage-stable net-misc/openssh
        // `sshd.socket`, `sshd_at.service.1`), each connection an `sshd -i` from the merged
        // /usr, so an image that hides /usr/sbin takes logins down here as it does there;
        // coreos-overlay's `50-flatcar-sshd.conf` (PAM on); baselayout's sudoers.
        (
            "etc/systemd/system/sshd.socket",
            "[Unit]\nDescription=OpenSSH Server Socket\nConflicts=sshd.service\n\n[Socket]\nListenStream=22\nAccept=yes\n\n[Install]\nWantedBy=sockets.target\n".into(),
        ),
        (
            "etc/systemd/system/sshd@.service",
            "[Unit]\nDescription=OpenSSH per-connection server daemon\nAfter=auditd.service\n\n[Service]\nExecStart=-/usr/sbin/sshd -i -e\nStandardInput=socket\nStandardError=journal\n".into(),
        ),
        (
            "etc/ssh/sshd_config.d/50-flatcar-sshd.conf",
            "Subsystem sftp internal-sftp\nClientAliveInterval 180\nUseDNS no\nUsePAM yes\nPrintLastLog no\nPrintMotd no\nHostkeyAlgorithms +ssh-rsa\nPubkeyAcceptedAlgorithms +ssh-rsa\n".into(),
        ),
        // Ignition writes `core`'s keys to `~/.ssh/authorized_keys.d/ignition`; Flatcar's
        // update-ssh-keys merges that directory into authorized_keys, sshd reads it here.
        (
            "etc/ssh/sshd_config.d/60-sysext-test-ignition-keys.conf",
            "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys.d/ignition\n".into(),
        ),
        ("etc/sudoers.d/baselayout", flatcar_release::SUDOERS.into()),
        // Debian's sshd PAM stack reads /etc/default/locale (pam_env), a link to this;
        // minbase has none, and its absence is an error line in every login's journal.
        ("etc/locale.conf", "LANG=C.UTF-8\n".into()),
        (
            "etc/systemd/system/sysext-test-ready.service",
            format!(
                "[Unit]\nDescription=Tell the sysext-test harness the guest is ready\nDefaultDependencies=no\nAfter=sshd.socket\nWants=sshd.socket\n\n[Service]\nType=oneshot\nExecStart=/bin/echo {READY_BEACON}\nStandardOutput=tty\nTTYPath=/dev/{}\n\n[Install]\nWantedBy=multi-user.target\n",
                match arch {
                    Arch::X86_64 => "ttyS0",
                    Arch::Arm64 => "ttyAMA0",
                }
            ),
        ),
        // What the initramfs logged (Ignition at first boot), into the real root's journal
        // under Ignition's name, where Flatcar's initrd journal puts it.
        (
            "etc/systemd/system/sysext-test-initrd-log.service",
            "[Unit]\nDescription=The initramfs's Ignition log, into the journal (Flatcar's initrd journal)\nDefaultDependencies=no\nConditionPathExists=/run/initramfs/ignition.log\nAfter=systemd-journald.socket\nBefore=sysinit.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nSyslogIdentifier=ignition\nExecStart=/bin/cat /run/initramfs/ignition.log\n".into(),
        ),
        ("oem/.keep", String::new()),
        // Ignition 2.14 relabels everything it wrote and fails without SELinux tools
        // (guest-lab.md); this guest runs without SELinux, so the relabel is a no-op.
        ("etc/selinux/config", "SELINUX=disabled\nSELINUXTYPE=targeted\n".into()),
        (
            "usr/bin/setfiles",
            "#!/bin/sh\n# sysext-test: SELinux is disabled here; Ignition relabels regardless.\nexit 0\n".into(),
        ),
    ];
    match model {
        MergeModel::RealRoot => {
            // The boot's merge says why it refused an image only at debug level. Flatcar
            // pairs the merge with ensure-sysext.service, below.
            files.push((
                "etc/systemd/system/systemd-sysext.service.d/10-sysext-test.conf",
                "[Unit]\nWants=ensure-sysext.service sysext-test-initrd-log.service\n\n[Service]\nEnvironment=SYSTEMD_LOG_LEVEL=debug\n".into(),
            ));
            // Flatcar's own (flatcar/init `systemd/system/ensure-sysext.service`, the
            // revision stable and lts pin, which enables it for sysinit.target): bound to
            // systemd-sysext.service, it reloads the unit files and re-evaluates
            // multi-user, sockets and timers, so an image's `.wants` links start at boot.
            files.push((
                "etc/systemd/system/ensure-sysext.service",
                "[Unit]\nBindsTo=systemd-sysext.service\nAfter=systemd-sysext.service\nDefaultDependencies=no\n# Keep in sync with systemd-sysext.service\nConditionDirectoryNotEmpty=|/etc/extensions\nConditionDirectoryNotEmpty=|/run/extensions\nConditionDirectoryNotEmpty=|/var/lib/extensions\nConditionDirectoryNotEmpty=|/usr/local/lib/extensions\nConditionDirectoryNotEmpty=|/usr/lib/extensions\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/bin/systemctl daemon-reload\nExecStart=/usr/bin/systemctl restart --no-block sockets.target timers.target multi-user.target\n[Install]\nWantedBy=sysinit.target\n".into(),
            ));
        }
        MergeModel::Initrd => {
            // The initramfs merged (sysext_test.merge=initrd): the real root's unit first
            // tells the journal what that merge said, then refreshes only when the
            // extension directories changed since (Flatcar carries a patch for that:
            // 0006-sysext-Skip-refresh-if-no-changes-are-found.patch). No ensure-sysext.
            files.push((
                "etc/systemd/system/systemd-sysext.service.d/10-sysext-test.conf",
                "[Unit]\nWants=sysext-test-initrd-log.service\n\n[Service]\nEnvironment=SYSTEMD_LOG_LEVEL=debug\nExecStart=\nExecStart=/bin/sh -c 'cat /run/initramfs/sysext.log 2>/dev/null; if [ -f /run/initramfs/sysext-extensions ] && [ \"$$(ls -lL --full-time /etc/extensions /run/extensions /var/lib/extensions 2>/dev/null)\" = \"$$(cat /run/initramfs/sysext-extensions)\" ]; then echo \"sysext-test: the extensions are those the initrd merged; no refresh\"; exit 0; fi; exec systemd-sysext refresh'\n".into(),
            ));
        }
    }
    files
}

/// Bump when [`shape`] or [`make_disk`] change in a way the recipe text does not capture.
const SHAPE_VERSION: u32 = 8;

/// Debian's Ignition (2.14): the binary from its dracut module, which the initramfs runs
/// on first boot against the real root (chroot), before the real root's PID 1 starts, with
/// the network the initramfs brought up.
pub fn install_ignition(arch: crate::Arch, root: &Path) -> Result<(), BuildError> {
    let pkg = crate::deb::unpacked("ignition", arch)?;
    let bin = pkg.join("usr/lib/dracut/modules.d/30ignition/ignition");
    let dest = root.join("usr/bin/ignition");
    std::fs::copy(&bin, &dest).map_err(|e| BuildError::io(&bin, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| BuildError::io(&dest, e))
}

/// Everything this profile adds to the recipe, for its hash.
pub fn recipe_text(arch: Arch, model: MergeModel) -> String {
    let mut t = format!(
        "shape v{SHAPE_VERSION}\n{}\n{LAYOUT:?}\n{:?}\n{:?}\n{:?}\n{}\n",
        grub_cfg(arch, model, "PARTUUID", "HASH"),
        oem_files(),
        flatcar_release::USERS,
        flatcar_release::GROUPS,
        verity::USR_DATA_BLOCKS,
    );
    for (path, content) in customizations(arch, model) {
        t.push_str(path);
        t.push_str(&content);
    }
    for (name, spec) in super::builtins::SPECS {
        t.push_str(name);
        t.push_str(spec);
    }
    t
}

/// Reshapes the root: `/usr/sbin` folded into `/usr/bin` and replaced by a symlink,
/// baselayout's accounts added, and the profile's files written.
pub fn shape(root: &Path, arch: Arch, model: MergeModel) -> Result<(), BuildError> {
    let io = |p: &Path, e| BuildError::io(p, e);
    install_dmsetup(root, arch)?;
    let sbin = root.join("usr/sbin");
    let bin = root.join("usr/bin");
    if release(model).sbin_merged && sbin.is_dir() && !sbin.is_symlink() {
        for entry in std::fs::read_dir(&sbin).map_err(|e| io(&sbin, e))? {
            let entry = entry.map_err(|e| io(&sbin, e))?;
            let dest = bin.join(entry.file_name());
            // A name in both is a compatibility link in one of them (Debian keeps a few);
            // the /usr/bin one stays, as Flatcar's merge keeps one program per name.
            if dest.symlink_metadata().is_ok() {
                std::fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
                continue;
            }
            std::fs::rename(entry.path(), &dest).map_err(|e| io(&dest, e))?;
        }
        std::fs::remove_dir(&sbin).map_err(|e| io(&sbin, e))?;
        symlink("bin", &sbin).map_err(|e| io(&sbin, e))?;
    }
    add_accounts(root)?;
    logins(root, &release(model))?;
    for (path, content) in customizations(arch, model) {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, content).map_err(|e| io(&p, e))?;
        let mode = if path.starts_with("usr/bin/") {
            Some(0o755)
        } else if path.starts_with("etc/sudoers.d/") {
            Some(0o440)
        } else {
            None
        };
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io(&p, e))?;
        }
    }
    let etc_release = root.join("etc/os-release");
    let _ = std::fs::remove_file(&etc_release);
    symlink("../usr/lib/os-release", &etc_release).map_err(|e| io(&etc_release, e))?;
    super::debian::mark_updated(root)
}

/// Flatcar's `/usr` has the device mapper's tools and udev rules (lvm2): with them udev
/// names the verity device `/dev/mapper/usr` in the real root, where systemd's `usr.mount`
/// looks for it.
fn install_dmsetup(root: &Path, arch: Arch) -> Result<(), BuildError> {
    let pkg = crate::deb::unpacked("dmsetup", arch)?;
    for rel in ["usr/sbin/dmsetup"].into_iter().map(String::from).chain(
        std::fs::read_dir(pkg.join("usr/lib/udev/rules.d"))
            .map_err(|e| BuildError::io(&pkg, e))?
            .filter_map(Result::ok)
            .map(|e| format!("usr/lib/udev/rules.d/{}", e.file_name().to_string_lossy())),
    ) {
        let dest = root.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
        }
        std::fs::copy(pkg.join(&rel), &dest).map_err(|e| BuildError::io(&dest, e))?;
    }
    Ok(())
}

/// Units Flatcar runs for its logins that the Debian guest masks (pam_systemd's session
/// needs logind and the bus).
const UNMASKED: &[&str] = &["systemd-logind.service", "dbus.service", "dbus.socket"];

/// Flatcar's way in: dropbear (the Debian guest's) off, `sshd.socket` and the key for
/// `core` on, logind and dbus unmasked; and `systemd-sysupdate.timer` on where the release
/// enables it (4515+).
fn logins(root: &Path, facts: &Facts) -> Result<(), BuildError> {
    let io = |p: &Path, e| BuildError::io(p, e);
    let units = root.join("etc/systemd/system");
    for u in UNMASKED {
        let p = units.join(u);
        if std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/dev/null")) {
            std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
        }
    }
    let dropbear = units.join("multi-user.target.wants/sysext-test-sshd.service");
    let _ = std::fs::remove_file(&dropbear);
    let mut enable = vec![("sockets.target.wants", "/etc/systemd/system/sshd.socket")];
    let timer = "/usr/lib/systemd/system/systemd-sysupdate.timer";
    if facts.sysupdate_timer && root.join(timer.trim_start_matches('/')).is_file() {
        enable.push(("timers.target.wants", timer));
    }
    for (target, unit) in enable {
        let dir = units.join(target);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let name = Path::new(unit).file_name().unwrap_or_default();
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        symlink(unit, &link).map_err(|e| io(&link, e))?;
    }
    Ok(())
}

/// Adds baselayout's users and groups that the Debian root lacks by name, with Flatcar's
/// ids where Debian has not taken them (units name accounts, not ids: what matters is that
/// `User=core` or `SocketGroup=docker` resolves here as it does on Flatcar), and puts the
/// members baselayout lists into their groups (`core` into wheel, docker, ...). `core`
/// gets its home and a locked password (`*`): Flatcar's logins use keys.
fn add_accounts(root: &Path) -> Result<(), BuildError> {
    let read = |rel: &str| {
        let p = root.join(rel);
        std::fs::read_to_string(&p).map_err(|e| BuildError::io(&p, e))
    };
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::write(&p, text).map_err(|e| BuildError::io(&p, e))
    };
    let (passwd, group, shadow) = (read("etc/passwd")?, read("etc/group")?, read("etc/shadow")?);
    let field = |line: &str, i: usize| line.split(':').nth(i).map(str::to_string);
    let names = |text: &str| -> Vec<String> { text.lines().filter_map(|l| field(l, 0)).collect() };
    let ids = |text: &str, i: usize| -> Vec<u32> {
        text.lines()
            .filter_map(|l| field(l, i)?.parse().ok())
            .collect()
    };
    // An id of its own: Flatcar's when free, else the highest free one under Debian's
    // dynamic system range (which counts down from 999).
    let pick = |wanted: u32, taken: &mut Vec<u32>| {
        let id = if taken.contains(&wanted) {
            (500..999)
                .rev()
                .find(|i| !taken.contains(i))
                .unwrap_or(wanted)
        } else {
            wanted
        };
        taken.push(id);
        id
    };

    let mut group_lines: Vec<String> = group.lines().map(str::to_string).collect();
    let mut gids = ids(&group, 2);
    let mut gid_of = std::collections::HashMap::new();
    for line in &group_lines {
        if let (Some(n), Some(Ok(g))) = (field(line, 0), field(line, 2).map(|g| g.parse::<u32>())) {
            gid_of.insert(n, g);
        }
    }
    let existing_groups = names(&group);
    for g in flatcar_release::GROUPS {
        if !existing_groups.iter().any(|n| n == g.name) {
            let gid = pick(g.gid, &mut gids);
            gid_of.insert(g.name.to_string(), gid);
            group_lines.push(format!("{}:x:{gid}:", g.name));
        }
    }
    let mut passwd_lines: Vec<String> = passwd.lines().map(str::to_string).collect();
    let mut shadow_lines: Vec<String> = shadow.lines().map(str::to_string).collect();
    let mut uids = ids(&passwd, 2);
    let existing_users = names(&passwd);
    for u in flatcar_release::USERS {
        if existing_users.iter().any(|n| n == u.name) {
            continue;
        }
        let uid = pick(u.uid, &mut uids);
        // The user's primary group by baselayout's gid, mapped to the name it has here.
        let primary = flatcar_release::GROUPS
            .iter()
            .find(|g| g.gid == u.gid)
            .and_then(|g| gid_of.get(g.name).copied())
            .unwrap_or(u.gid);
        passwd_lines.push(format!(
            "{}:x:{uid}:{primary}::{}:{}",
            u.name, u.home, u.shell
        ));
        shadow_lines.push(format!("{}:*:20000:0:99999:7:::", u.name));
        if u.home.starts_with("/home/") {
            let home = root.join(u.home.trim_start_matches('/'));
            std::fs::create_dir_all(&home).map_err(|e| BuildError::io(&home, e))?;
            userns::chown(&home, uid, primary)?;
        }
    }
    for g in flatcar_release::GROUPS {
        let Some(line) = group_lines
            .iter_mut()
            .find(|l| field(l, 0).as_deref() == Some(g.name))
        else {
            continue;
        };
        let mut members: Vec<String> = field(line, 3)
            .unwrap_or_default()
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
        for m in g.members.iter().filter(|m| **m != "root") {
            if !members.iter().any(|x| x == m) {
                members.push(m.to_string());
            }
        }
        let head: Vec<&str> = line.split(':').take(3).collect();
        *line = format!("{}:{}", head.join(":"), members.join(","));
    }
    let join = |lines: Vec<String>| lines.join("\n") + "\n";
    write("etc/group", &join(group_lines))?;
    write("etc/passwd", &join(passwd_lines))?;
    write("etc/shadow", &join(shadow_lines))
}

/// Where the disk's boot files come from: the kernel and initramfs the guest build made.
pub struct BootFiles<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
}

/// Writes the GPT disk in Flatcar's format: the ESP (vfat: GRUB, kernel, initramfs,
/// grub.cfg, the first-boot flag), USR-A (btrfs with its dm-verity tree behind it, the root
/// hash in grub.cfg), an empty USR-B, OEM (btrfs: `oem-release` and the OEM's grub.cfg) and
/// ROOT (ext4). Each filesystem is made in a file of its partition's size and copied into
/// the (sparse) disk: no loop device, no mount. `/usr` moves out of the root tree into
/// USR-A, leaving the empty mount point.
pub fn make_disk(
    root: &Path,
    arch: Arch,
    model: MergeModel,
    boot: &BootFiles,
    disk: &Path,
    seed: &str,
) -> Result<(), BuildError> {
    let parts = gpt::write(disk, LAYOUT, seed)?;
    let part = |label: &str| {
        parts
            .iter()
            .find(|p| p.label == label)
            .ok_or_else(|| BuildError::Spec(format!("the Flatcar layout has no {label}")))
    };
    let work = root.with_file_name("disk-work");
    let _ = userns::remove_tree(&work);
    std::fs::create_dir_all(&work).map_err(|e| BuildError::io(&work, e))?;
    let result = (|| {
        let staging = work.join("usr-a");
        std::fs::rename(root.join("usr"), &staging).map_err(|e| BuildError::io(&staging, e))?;
        std::fs::create_dir(root.join("usr")).map_err(|e| BuildError::io(root, e))?;

        let usr_a = part("USR-A")?;
        let usr_img = work.join("usr-a.img");
        btrfs::make(
            &staging,
            &btrfs::Filesystem {
                label: "USR-A",
                uuid: Some(&derived_uuid(seed, "usr-a")),
                bytes: verity::usr_hash_offset(),
            },
            &usr_img,
        )?;
        userns::remove_tree(&staging)?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&usr_img)
            .map_err(|e| BuildError::io(&usr_img, e))?;
        f.set_len(usr_a.size())
            .map_err(|e| BuildError::io(&usr_img, e))?;
        drop(f);
        let usr_hash = verity::format(
            &usr_img,
            verity::USR_DATA_BLOCKS,
            &derived_uuid(seed, "usr-a-verity"),
        )?;
        copy_into(disk, usr_a, &usr_img)?;

        let oem = part("OEM")?;
        let oem_tree = work.join("oem");
        for (name, text) in oem_files() {
            let p = oem_tree.join(name);
            std::fs::create_dir_all(&oem_tree).map_err(|e| BuildError::io(&oem_tree, e))?;
            std::fs::write(&p, text).map_err(|e| BuildError::io(&p, e))?;
        }
        let oem_img = work.join("oem.img");
        btrfs::make(
            &oem_tree,
            &btrfs::Filesystem {
                label: "OEM",
                uuid: Some(&derived_uuid(seed, "oem")),
                bytes: oem.size(),
            },
            &oem_img,
        )?;
        copy_into(disk, oem, &oem_img)?;

        let root_part = part("ROOT")?;
        host_tool::stdout(
            userns::command("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-L", "ROOT", "-E"])
                .arg(format!("offset={},root_owner=0:0", root_part.offset()))
                .arg("-d")
                .arg(root)
                .arg(disk)
                .arg(format!("{}k", root_part.size() / 1024)),
            "e2fsprogs",
        )?;

        let esp = part("EFI-SYSTEM")?;
        let esp_img = work.join("esp.img");
        esp::make(
            arch,
            &esp::Content {
                kernel: boot.kernel,
                initrd: boot.initrd,
                grub_cfg: &grub_cfg(arch, model, &usr_a.unique_guid, &usr_hash),
            },
            esp.size(),
            &esp_img,
        )?;
        copy_into(disk, esp, &esp_img)
    })();
    let _ = userns::remove_tree(&work);
    result
}

/// The OEM partition of Flatcar's QEMU image: what it is (`oem-release`) and the grub.cfg
/// Flatcar's GRUB sources from it (the OEM id on the kernel command line).
fn oem_files() -> [(&'static str, &'static str); 2] {
    [
        (
            "oem-release",
            "ID=qemu\nVERSION_ID=0.0.1\nNAME=\"QEMU\"\nHOME_URL=\"https://www.qemu.org/\"\n",
        ),
        ("grub.cfg", "# Flatcar's QEMU OEM\nset oem_id=\"qemu\"\n"),
    ]
}

/// GRUB's config on the ESP, in the shape of Flatcar's (flatcar/scripts
/// `build_library/grub.cfg`): the OEM partition's grub.cfg sourced, `flatcar.first_boot`
/// while the ESP has the flag, `/usr` from USR-A through dm-verity with the root hash, the
/// root by label. Debian's GRUB has no `gptprio` (Flatcar's patch that picks the USR slot
/// by the GPT priority attributes), so the config names USR-A, the slot the attributes
/// give priority. The rest are this guest's own arguments (the console, the journal's
/// errors on it, and the initrd merge for that model).
pub fn grub_cfg(arch: Arch, model: MergeModel, usr_partuuid: &str, usr_hash: &str) -> String {
    let console = match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Arm64 => "ttyAMA0",
    };
    format!(
        "set timeout=0\n\
         set linux_root=\"root=LABEL=ROOT\"\n\
         set linux_console=\"console={console}\"\n\
         set first_boot=\"\"\n\
         set oem_id=\"\"\n\
         set linux_append=\"\"\n\
         search --no-floppy --set oem --label OEM\n\
         if [ -n \"$oem\" -a -f \"($oem)/grub.cfg\" ]; then source \"($oem)/grub.cfg\"; fi\n\
         if [ -f \"($root)/{first_boot}\" ]; then set first_boot=\"flatcar.first_boot=detected\"; fi\n\
         set usr=\"mount.usr=/dev/mapper/usr verity.usr=PARTUUID={partuuid} verity.usrhash={usr_hash}\"\n\
         linux ($root)/{kernel} $linux_root $usr $first_boot flatcar.oem.id=$oem_id $linux_console {args} $linux_append\n\
         initrd ($root)/{initrd}\n\
         boot\n",
        first_boot = esp::FIRST_BOOT,
        partuuid = usr_partuuid.to_ascii_lowercase(),
        kernel = esp::KERNEL,
        initrd = esp::INITRD,
        args = kernel_args(arch, model),
    )
}

/// The guest's own kernel arguments (beside Flatcar's): quiet boots with the journal's
/// errors on the console (a boot that never gives a login still leaves systemd's words
/// where the harness reads them), and the initrd merge for that model.
pub fn kernel_args(arch: Arch, model: MergeModel) -> String {
    let mut args = String::from(
        "panic=-1 quiet loglevel=3 systemd.show_status=0 net.ifnames=0 systemd.journald.forward_to_console=1 systemd.journald.max_level_console=err",
    );
    // Keeps x86-64 guests clear of a multi-threaded TCG bug (harness `qemu.rs`); a no-op
    // under KVM.
    if arch == Arch::X86_64 {
        args.push_str(" tsc=unstable");
    }
    if model == MergeModel::Initrd {
        args.push_str(" sysext_test.merge=initrd");
    }
    args
}

/// A version-4-shaped UUID from the recipe's seed: rebuilding gives the same filesystems.
fn derived_uuid(seed: &str, what: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut g = [0u8; 16];
    g.copy_from_slice(&Sha256::digest(format!("{seed}\0{what}").as_bytes())[..16]);
    g[6] = (g[6] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    gpt::uuid_text(&g)
}

/// Copies a partition image into the fresh (sparse, zero) disk.
fn copy_into(disk: &Path, part: &gpt::Partition, image: &Path) -> Result<(), BuildError> {
    crate::partition_image::write(disk, part, image, crate::partition_image::Underneath::Zeros)
        .map_err(|e| BuildError::io(image, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flatcar_release::Systemd;

    #[test]
    fn the_guest_runs_the_systemd_and_merge_model_of_the_release_it_answers_as() {
        let r = release(MergeModel::RealRoot);
        assert_eq!(
            r.systemd,
            Systemd::Major(super::super::SYSTEMD_MAJOR),
            "{}",
            r.describe()
        );
        for model in [MergeModel::RealRoot, MergeModel::Initrd] {
            assert_eq!(release(model).merge, model);
        }
    }

    #[test]
    fn profiles_name_their_model_and_the_old_name_still_parses() {
        use super::super::Profile;
        assert_eq!("flatcar-shaped".parse::<Profile>(), Ok(Profile::Flatcar));
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
            if let Some(model) = p.merge_model() {
                assert_eq!(Profile::flatcar(model), p);
            }
        }
        assert!("flatcar-beta".parse::<Profile>().is_err());
    }

    #[test]
    fn only_the_real_root_model_has_ensure_sysext() {
        let has = |model| {
            customizations(Arch::X86_64, model)
                .iter()
                .any(|(p, _)| p.ends_with("ensure-sysext.service"))
        };
        assert!(has(MergeModel::RealRoot));
        assert!(!has(MergeModel::Initrd));
    }

    #[test]
    fn the_guest_writes_the_release_tables_os_release() {
        for arch in Arch::ALL {
            for model in [MergeModel::RealRoot, MergeModel::Initrd] {
                let files = customizations(arch, model);
                let (_, text) = files
                    .iter()
                    .find(|(p, _)| *p == "usr/lib/os-release")
                    .expect("the profile writes an os-release");
                assert_eq!(text, &release(model).os_release(arch, BUILD_ID));
                assert!(text.contains("coreos"), "{text}");
            }
        }
    }
}
