//! The Debian root: mmdebstrap, then our changes written straight into the tree (no chroot),
//! then an ext4 image made with `mke2fs -d` (no loop mount).

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use super::Recipe;
use crate::arch::Arch;
use crate::errors::BuildError;
use crate::{host_tool, userns};

use super::READY_BEACON;

/// Bump when [`bootstrap`]'s options change: the cached Debian root is keyed by it.
pub const BOOTSTRAP_VERSION: u32 = 1;

/// Units that only cost boot time in a throwaway VM (measured in guest-lab).
pub const MASKED: &[&str] = &[
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "serial-getty@ttyAMA0.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "systemd-pstore.service",
    "systemd-hibernate-clear.service",
    "proc-sys-fs-binfmt_misc.automount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "sys-fs-fuse-connections.mount",
    "sys-kernel-config.mount",
    "modprobe@drm.service",
    "modprobe@configfs.service",
    "modprobe@fuse.service",
    "modprobe@efi_pstore.service",
    "systemd-network-generator.service",
    "systemd-networkd-wait-online.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-random-seed.service",
    "systemd-journal-flush.service",
    "systemd-tpm2-setup-early.service",
    "systemd-tpm2-setup.service",
    "systemd-pcrmachine.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-binfmt.service",
    // The initramfs configures eth0 (kernel.rs): no network daemon, no rename.
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-varlink.socket",
    "systemd-networkd-persistent-storage.service",
    // Logins are dropbear's, without PAM, so no login sessions: logind and the bus it
    // needs go (measured 2.0 s and 0.9 s of a TCG boot; systemctl talks to PID 1 directly
    // as root).
    "systemd-logind.service",
    "dbus.service",
    "dbus.socket",
    "tmp.mount",
    "run-lock.mount",
    "systemd-udev-load-credentials.service",
    "systemd-modules-load.service",
    // The initramfs mounted the root read-write with the options fstab gives; nothing
    // here sets sysctls. 2.3 s each of a TCG boot, on the same two vCPUs as the rest.
    "systemd-remount-fs.service",
    "systemd-sysctl.service",
    // Debian's OpenSSH units (the Flatcar guests run Flatcar's sshd.socket instead).
    "ssh.service",
    "ssh.socket",
];

pub const MASKED_GENERATORS: &[&str] = &[
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-import-generator",
    "systemd-rc-local-generator",
    "systemd-run-generator",
    "systemd-ssh-generator",
    "systemd-system-update-generator",
    "systemd-sysv-generator",
    "systemd-tpm2-generator",
    "systemd-getty-generator",
];

/// Files written into the root, as `(path, content)`; part of the recipe hash.
pub fn customizations(arch: Arch) -> Vec<(&'static str, String)> {
    let console = match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Arm64 => "ttyAMA0",
    };
    vec![
        ("etc/hostname", "sysext-guest\n".into()),
        ("etc/hosts", "127.0.0.1 localhost\n127.0.1.1 sysext-guest\n".into()),
        ("etc/fstab", "/dev/vda / ext4 rw,relatime 0 1\n".into()),
        // A fixed machine id skips first-boot setup on every boot.
        ("etc/machine-id", "5a7c9e2d0f3b4c1a8e6d2b9f0a1c3e5d\n".into()),
        ("etc/resolv.conf", "nameserver 10.0.2.3\n".into()),
        (
            // Dropbear instead of OpenSSH: OpenSSH 10 execs sshd-session and sshd-auth (each
            // loading libcrypto) per login, 1.2-1.4 s under TCG even without PAM; dropbear
            // forks, and a login takes 0.3-0.45 s (measured on a restored x86-64 guest).
            // It starts as early as it can (the initramfs brought the network up): it
            // reads root's key straight from the `ssh.authorized_keys.root` credential
            // (-D), so it waits for neither tmpfiles nor udev; its one host key is made at
            // build time (no key generation in the boot). Cases still start from a guest
            // whose boot has finished: the save waits for that.
            "etc/systemd/system/sysext-test-sshd.service",
            "[Unit]\nDescription=SSH server for the sysext-test harness (dropbear)\nDefaultDependencies=no\nConflicts=shutdown.target\nBefore=shutdown.target\n\n[Service]\nLoadCredential=authorized_keys:ssh.authorized_keys.root\nExecStart=/usr/sbin/dropbear -F -E -s -p 22 -r /etc/dropbear/dropbear_ed25519_host_key -D ${CREDENTIALS_DIRECTORY}\nKillMode=process\n\n[Install]\nWantedBy=multi-user.target\n".into(),
        ),
        (
            "etc/systemd/system/sysext-test-ready.service",
            format!(
                "[Unit]\nDescription=Tell the sysext-test harness the guest is ready\nDefaultDependencies=no\nAfter=sysext-test-sshd.service\nWants=sysext-test-sshd.service\n\n[Service]\nType=oneshot\nExecStart=/bin/echo {READY_BEACON}\nStandardOutput=tty\nTTYPath=/dev/{console}\n\n[Install]\nWantedBy=multi-user.target\n"
            ),
        ),
        ("etc/systemd/journald.conf.d/10-sysext-test.conf", "[Journal]\nStorage=volatile\n".into()),
        ("etc/extensions/.keep", String::new()),
        ("opt/extensions/.keep", String::new()),
    ]
}

/// Registers qemu-user for `arch` with binfmt_misc when the host cannot run it natively.
fn ensure_binfmt(arch: Arch) -> Result<(), BuildError> {
    if Arch::host() == Some(arch) {
        return Ok(());
    }
    let qemu = match arch {
        Arch::Arm64 => "qemu-aarch64",
        Arch::X86_64 => "qemu-x86_64",
    };
    let misc = Path::new("/proc/sys/fs/binfmt_misc");
    if !userns::is_root() && !misc.join(qemu).exists() {
        return Err(BuildError::Spec(format!(
            "building the {arch} guest runs its programs through {qemu}, which is not registered \
             with binfmt_misc, and only root can register it: apt-get install qemu-user-static \
             binfmt-support (or run .ci/setup as root), or build this guest once as root"
        )));
    }
    if !misc.join("register").exists() {
        host_tool::stdout(
            Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc"])
                .arg(misc),
            "util-linux",
        )?;
    }
    if misc.join(qemu).exists() {
        return Ok(());
    }
    let conf = Path::new("/usr/lib/binfmt.d").join(format!("{qemu}.conf"));
    let rule = std::fs::read_to_string(&conf).map_err(|_| {
        BuildError::from(host_tool::ToolError::Missing {
            tool: format!("{qemu} binfmt rule ({})", conf.display()),
            package: "qemu-user-static".into(),
        })
    })?;
    std::fs::write(misc.join("register"), rule.trim())
        .map_err(|e| BuildError::io(&misc.join("register"), e))
}

/// How long mmdebstrap may take: minutes for arm64 under qemu-user on a loaded machine,
/// never forever.
const BOOTSTRAP_LIMIT: std::time::Duration = std::time::Duration::from_secs(45 * 60);

/// Runs mmdebstrap for `recipe` into the tarball `out` (the cached Debian root); each of
/// its stage lines ("I: downloading packages with apt...") goes to `progress` as it comes.
pub fn bootstrap(recipe: &Recipe, out: &Path, progress: &dyn Fn(&str)) -> Result<(), BuildError> {
    ensure_binfmt(recipe.arch)?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase"])
        .arg(format!("--architectures={}", recipe.arch.debian_name()))
        .arg(format!("--include={}", recipe.packages.join(",")));
    for ex in [
        "/usr/share/man/*",
        "/usr/share/locale/*",
        "/usr/share/doc/*",
        "/usr/share/info/*",
    ] {
        cmd.arg(format!("--dpkgopt=path-exclude={ex}"));
    }
    // No fsync per unpacked file: the root is thrown into an image right after, and under
    // qemu-user (arm64) every syscall is slower.
    cmd.arg("--dpkgopt=force-unsafe-io")
        .arg("--dpkgopt=path-include=/usr/share/locale/locale.alias")
        .arg(recipe.suite)
        .arg(out)
        .arg(crate::deb::mirror());
    let arch = recipe.arch;
    host_tool::streaming(&mut cmd, "mmdebstrap", BOOTSTRAP_LIMIT, &|line| {
        // Its informational lines are the stages; warnings and errors are worth seeing too.
        if let Some(stage) = line.strip_prefix("I: ") {
            progress(&format!("guest {arch}: mmdebstrap: {stage}"));
        } else if line.starts_with("W: ") || line.starts_with("E: ") {
            progress(&format!("guest {arch}: mmdebstrap: {line}"));
        }
    })?;
    Ok(())
}

/// Unpacks the cached Debian root into `root`, owners, modes and xattrs as mmdebstrap made
/// them. In a user's namespace ([`userns`]) its device nodes stay out: no namespace may
/// make one, programs run in the tree see the host's `/dev` ([`userns::chroot`]), and the
/// booted guest's `/dev` is a devtmpfs over them anyway.
pub fn unpack(tarball: &Path, root: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(root).map_err(|e| BuildError::io(root, e))?;
    let mut tar = userns::command("tar");
    tar.arg("-C")
        .arg(root)
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*"]);
    if !userns::is_root() {
        let listing = host_tool::stdout(Command::new("tar").arg("-tvf").arg(tarball), "tar")?;
        for node in device_nodes(&listing) {
            tar.arg(format!("--exclude={node}"));
        }
    }
    host_tool::stdout(tar.arg("-xpf").arg(tarball), "tar")?;
    Ok(())
}

/// The character and block devices of a `tar -tv` listing, by name.
fn device_nodes(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter(|l| l.starts_with('c') || l.starts_with('b'))
        .filter_map(|l| l.split_whitespace().last())
        .collect()
}

pub fn customize(arch: Arch, root: &Path) -> Result<(), BuildError> {
    let io = |p: &Path, e| BuildError::io(p, e);
    for (path, content) in customizations(arch) {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, content).map_err(|e| io(&p, e))?;
    }
    let systemctl = |args: &[&str]| {
        let mut c = Command::new("systemctl");
        c.arg(format!("--root={}", root.display())).args(args);
        host_tool::stdout(&mut c, "systemd")
    };
    systemctl(&[
        "enable",
        "sysext-test-sshd.service",
        "systemd-sysext.service",
        "sysext-test-ready.service",
    ])?;
    let mut mask = vec!["mask"];
    mask.extend_from_slice(MASKED);
    systemctl(&mask)?;
    let gens = root.join("etc/systemd/system-generators");
    std::fs::create_dir_all(&gens).map_err(|e| io(&gens, e))?;
    for g in MASKED_GENERATORS {
        let _ = std::fs::remove_file(gens.join(g));
        symlink("/dev/null", gens.join(g)).map_err(|e| io(&gens, e))?;
    }
    // The SSH server's host key, made now (in the guest's own arch, through qemu-user for
    // arm64) so no boot spends TCG time on it. A throwaway test guest needs no secret one.
    let keys = root.join("etc/dropbear");
    std::fs::create_dir_all(&keys).map_err(|e| io(&keys, e))?;
    let _ = std::fs::remove_file(keys.join("dropbear_ed25519_host_key"));
    host_tool::stdout(
        userns::chroot(root).args([
            "/usr/bin/dropbearkey",
            "-t",
            "ed25519",
            "-f",
            "/etc/dropbear/dropbear_ed25519_host_key",
        ]),
        "coreutils",
    )?;
    login_shell_dash(root)?;
    mark_updated(root)
}

/// Skips ConditionNeedsUpdate= units (ldconfig, sysusers, hwdb, the journal catalog) on
/// every boot: they run while `/usr` is newer than these stamps, so whatever changes `/usr`
/// last must call this again (measured: 5 s of a TCG boot when they ran).
pub fn mark_updated(root: &Path) -> Result<(), BuildError> {
    for d in ["etc/.updated", "var/.updated"] {
        std::fs::write(root.join(d), b"").map_err(|e| BuildError::io(root, e))?;
        host_tool::stdout(
            Command::new("touch")
                .arg("-r")
                .arg(root.join("usr"))
                .arg(root.join(d)),
            "coreutils",
        )?;
    }
    Ok(())
}

/// Root logs in with dash: every command the harness runs starts root's login shell, and
/// under TCG bash with Debian's .bashrc takes 0.3 s to start where dash takes 0.1 s
/// (measured with `sysext-test guest exec`). What a manifest says to run still runs in
/// bash (the binaries case wraps it), as a Flatcar user's shell would.
fn login_shell_dash(root: &Path) -> Result<(), BuildError> {
    let passwd = root.join("etc/passwd");
    let text = std::fs::read_to_string(&passwd).map_err(|e| BuildError::io(&passwd, e))?;
    let out: String = text
        .lines()
        .map(|l| match l.strip_prefix("root:") {
            Some(rest) => {
                let mut fields: Vec<&str> = rest.split(':').collect();
                if let Some(shell) = fields.last_mut() {
                    *shell = "/bin/sh";
                }
                format!("root:{}\n", fields.join(":"))
            }
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&passwd, out).map_err(|e| BuildError::io(&passwd, e))
}

pub fn make_disk(root: &Path, image: &Path, mib: u64) -> Result<(), BuildError> {
    host_tool::stdout(
        userns::command("mke2fs")
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "root",
                "-E",
                "root_owner=0:0",
                "-d",
            ])
            .arg(root)
            .arg(image)
            .arg(format!("{mib}M")),
        "e2fsprogs",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::device_nodes;

    #[test]
    fn device_nodes_are_the_char_and_block_entries_of_a_listing() {
        let listing = "drwxr-xr-x 0/0 0 2026-12-06 07:59 ./dev/\n\
crw-rw-rw- 0/0 1,3 2026-12-06 07:59 ./dev/null\n\
lrwxrwxrwx 0/0 0 2026-12-06 07:59 ./dev/fd -> /proc/self/fd\n\
brw-rw---- 0/6 7,0 2026-12-06 07:59 ./dev/loop0\n\
-rw-r--r-- 0/0 12 2026-12-06 07:59 ./etc/hostname\n";
        assert_eq!(device_nodes(listing), vec!["./dev/null", "./dev/loop0"]);
    }
}
