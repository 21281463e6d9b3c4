//! The guest kernel (Debian's cloud flavour, unpacked from its .deb rather than installed,
//! which skips initramfs-tools) and a tiny busybox initramfs that loads virtio_blk, mounts
//! the root and switches to it: 2 MB instead of 10, about 2 s less per cold boot.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Recipe;
use super::cpio::Cpio;
use crate::arch::Arch;
use crate::errors::BuildError;
use crate::host_tool;

/// Modules the initramfs loads: the root disk, and the NIC so its address is configured
/// before systemd starts (ext4 and virtio_pci are built in).
const INITRAMFS_MODULES: &[&str] = &["virtio_blk", "virtio_net"];

/// What the Flatcar-format disk adds: the btrfs `/usr` and OEM, dm-verity, and the vfat
/// ESP whose first-boot flag the first boot removes.
const FLATCAR_DISK_MODULES: &[&str] = &[
    "btrfs",
    "dm_verity",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "qemu_fw_cfg",
];

/// The programs the Flatcar-format initramfs runs besides busybox, with the libraries they
/// link, taken from the guest's own root: `dmsetup` opens `/usr` with dm-verity.
const FLATCAR_DISK_PROGRAMS: &[(&str, &str)] = &[("dmsetup", "usr/sbin/dmsetup")];

pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules.order); do
  insmod "/lib/modules/$m" || echo "initramfs: insmod $m failed"
done
# QEMU user-net's fixed addresses, set here so the link is up before systemd starts: no
# networkd, no interface rename, and no SSH connection held by user-net waiting for a link
# (measured: 3-4 s of every cold boot; see guest-lab.md).
ip link set lo up
if ip link set eth0 up; then
  ip addr add 10.0.2.15/24 dev eth0
  ip route add default via 10.0.2.2
  echo "SYSEXT-TEST-NETWORK-UP"
else
  echo "initramfs: no eth0"
fi
# The harness's hold (fw_cfg opt/sysext-test/initrd reads "hold"): the machine is saved
# here, after the firmware, GRUB and the kernel, before anything has read a filesystem
# (the kernel has read the partition table, which a bake keeps), and restored with another
# disk beneath it (a baked copy) and "run!" in that entry. The module goes again after,
# so Ignition reads the restored machine's fw_cfg, not the saved one's.
hold=/sys/firmware/qemu_fw_cfg/by_name/opt/sysext-test/initrd/raw
if [ -f "$hold" ] && [ "$(cat "$hold")" = hold ]; then
  echo "SYSEXT-TEST-INITRD-HOLDING"
  while [ "$(cat "$hold")" = hold ]; do sleep 0.05; done
fi
rmmod qemu_fw_cfg 2>/dev/null
# root= is the root filesystem (a device, or LABEL= as Flatcar's GRUB gives it);
# mount.usr= (Flatcar's own argument) a separate, read-only /usr: /dev/mapper/usr is the
# partition verity.usr= names (PARTUUID=), opened with dm-verity against verity.usrhash=;
# flatcar.oem.id= says there is an OEM partition (label OEM), which Flatcar mounts on /oem;
# flatcar.first_boot runs Ignition.
root=/dev/vda
usr=
verity_usr=
usrhash=
oem=
ignition=
merge=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root="${arg#root=}" ;;
    mount.usr=*) usr="${arg#mount.usr=}" ;;
    verity.usr=*) verity_usr="${arg#verity.usr=}" ;;
    verity.usrhash=*) usrhash="${arg#verity.usrhash=}" ;;
    flatcar.oem.id=?*) oem=LABEL=OEM ;;
    flatcar.first_boot|flatcar.first_boot=*) ignition=1 ;;
    sysext_test.merge=initrd) merge=initrd ;;
  esac
done
# A device by name, LABEL= or PARTUUID= (read from the GPT entry itself: busybox has no
# blkid that knows partition GUIDs), waiting up to 10 s for it to appear.
device() {
  i=0
  while [ "$i" -lt 200 ]; do
    case "$1" in
      LABEL=*) d=$(findfs "$1" 2>/dev/null) && [ -b "$d" ] && { echo "$d"; return 0; } ;;
      PARTUUID=*)
        want=$(echo "${1#PARTUUID=}" | tr 'A-F' 'a-f')
        for n in /sys/class/block/*/partition; do
          [ -f "$n" ] || continue
          part=${n%/partition}
          disk=$(basename "$(readlink -f "$part/..")")
          h=$(dd if="/dev/$disk" bs=1 skip=$((1024 + ($(cat "$n") - 1) * 128 + 16)) count=16 2>/dev/null | od -An -v -tx1 | tr -d ' \n')
          g="${h:6:2}${h:4:2}${h:2:2}${h:0:2}-${h:10:2}${h:8:2}-${h:14:2}${h:12:2}-${h:16:4}-${h:20:12}"
          [ "$g" = "$want" ] && { echo "/dev/${part##*/}"; return 0; }
        done ;;
      *) [ -b "$1" ] && { echo "$1"; return 0; } ;;
    esac
    sleep 0.05
    i=$((i + 1))
  done
  return 1
}
if ! root=$(device "$root"); then
  echo "initramfs: no root device $root"
  exit 1
fi
if ! mount -o rw "$root" /newroot; then
  echo "initramfs: cannot mount the root filesystem $root"
  exit 1
fi
if [ "$usr" = /dev/mapper/usr ]; then
  # Flatcar's USR partition: the filesystem's 260094 blocks of 4 KiB, then the verity
  # superblock and the hash tree (flatcar/scripts disk_layout.json). Every block /usr
  # reads is checked against the root hash; a changed one is an I/O error and the kernel's
  # "device-mapper: verity: ... data block N is corrupted".
  if ! dev=$(device "$verity_usr") || [ -z "$usrhash" ]; then
    echo "initramfs: verity: no USR partition $verity_usr or no verity.usrhash"
    exit 1
  fi
  blocks=260094
  if ! LD_LIBRARY_PATH=/lib dmsetup create usr --readonly --noudevsync --table "0 $((blocks * 8)) verity 1 $dev $dev 4096 4096 $blocks $((blocks + 1)) sha256 $usrhash -"; then
    echo "initramfs: verity: cannot open $dev as /dev/mapper/usr"
    exit 1
  fi
  LD_LIBRARY_PATH=/lib dmsetup mknodes usr
fi
if [ -n "$usr" ] && ! mount -o ro "$usr" /newroot/usr; then
  echo "initramfs: cannot mount /usr from $usr"
  dmesg | grep -e 'verity' -e 'BTRFS' | tail -n 5
  echo "initramfs: /usr failed: no boot (Flatcar's initrd stops there too)"
  while :; do sleep 3600; done
fi
if [ -n "$oem" ] && { ! oem=$(device "$oem") || ! mount -o rw "$oem" /newroot/oem; }; then
  echo "initramfs: cannot mount /oem from $oem"
fi
# What Flatcar's initrd does before the real root's PID 1 loads a unit, run from here
# against the real root (chroot: its own Ignition, systemd-sysext and libraries). /run is
# the initrd's tmpfs, carried into the real root as systemd's initrd carries it.
if [ -n "$ignition$merge" ]; then
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run
  mkdir -p /newroot/run/initramfs
  mount -t proc proc /newroot/proc
  mount -t sysfs sysfs /newroot/sys
  mount --bind /dev /newroot/dev
fi
# Ignition on first boot: its stages write into the real root; a failed stage ends the
# boot in emergency mode, with no login, as Flatcar's initrd does. Its log goes to the
# real root's journal (sysext-test-initrd-log.service); its verdicts to the console.
if [ -n "$ignition" ]; then
  log=/newroot/run/initramfs/ignition.log
  ok=1
  chroot /newroot /usr/bin/modprobe qemu_fw_cfg >> "$log" 2>&1
  for stage in fetch files; do
    if ! chroot /newroot /usr/bin/ignition --root=/ --platform=qemu --stage="$stage" --log-to-stdout >> "$log" 2>&1; then
      ok=
      break
    fi
  done
  grep -e 'CRITICAL' -e 'Ignition finished' "$log"
  if [ -z "$ok" ]; then
    echo "initramfs: a stage of Ignition failed: emergency mode, no login (Flatcar's initrd stops there too)"
    while :; do sleep 3600; done
  fi
  # The first boot is done: the flag GRUB looks for on the ESP goes, as Flatcar's
  # initrd removes it once Ignition has run.
  if esp=$(device LABEL=EFI-SYSTEM) && mkdir -p /esp && mount -t vfat "$esp" /esp; then
    rm -f /esp/flatcar/first_boot
    umount /esp
  fi
  # First boot: the presets Ignition wrote are applied before PID 1 loads the units.
  chroot /newroot /bin/sh -c 'p=/etc/systemd/system-preset/20-ignition.preset; [ -f "$p" ] || exit 0; units=$(sed -n "s/^enable //p" "$p"); [ -z "$units" ] || systemctl preset $units' >> "$log" 2>&1
fi
# Flatcar from 4628 merges extensions in the initrd, into the real root, so PID 1 finds
# their units (and .wants links) when it starts. What the extension directories held is
# kept: the real root's systemd-sysext.service skips its refresh when they are unchanged.
if [ "$merge" = initrd ]; then
  # The loop device and the formats a merge mounts (guest::PRELOAD_MODULES).
  chroot /newroot /usr/bin/modprobe -a loop squashfs erofs overlay
  # systemd-sysext merges in a mount namespace of its own and relies on the propagation
  # systemd gives / (shared) for its /usr to reach ours; here nothing did yet.
  mount --make-rshared /newroot
  chroot /newroot /usr/bin/env SYSTEMD_LOG_LEVEL=debug /usr/bin/systemd-sysext merge --no-reload > /newroot/run/initramfs/sysext.log 2>&1
  echo "initramfs: systemd-sysext merge exited $?" >> /newroot/run/initramfs/sysext.log
  mount --make-rprivate /newroot
  chroot /newroot /bin/sh -c 'ls -lL --full-time /etc/extensions /run/extensions /var/lib/extensions 2>/dev/null' > /newroot/run/initramfs/sysext-extensions
fi
if [ -n "$ignition$merge" ]; then
  umount /newroot/proc /newroot/sys /newroot/dev
fi
umount /proc /sys
mount --move /dev /newroot/dev || umount /dev
exec switch_root /newroot /sbin/init
"#;

pub struct Kernel {
    pub version: String,
    /// The unpacked package: `boot/vmlinuz-*` and `usr/lib/modules/VERSION`.
    pub dir: PathBuf,
    pub arch: Arch,
}

pub fn fetch(recipe: &Recipe) -> Result<Kernel, BuildError> {
    let pkg = crate::deb::resolve_dependency(&recipe.kernel_package, recipe.arch, "linux-image-")?;
    let dir = crate::deb::unpacked(&pkg, recipe.arch)?;
    let modules = dir.join("usr/lib/modules");
    let version = std::fs::read_dir(&modules)
        .map_err(|e| BuildError::io(&modules, e))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or_else(|| BuildError::Fetch(format!("{pkg} has no modules directory")))?;
    Ok(Kernel {
        version,
        dir,
        arch: recipe.arch,
    })
}

/// Puts the modules into the root, writes `vmlinuz`, `initrd.cpio` and `kernel-version`
/// into `out`. `flatcar_disk`: the initramfs opens Flatcar's disk (verity, btrfs, vfat).
pub fn install(k: &Kernel, root: &Path, out: &Path, flatcar_disk: bool) -> Result<(), BuildError> {
    let src = k.dir.join("usr/lib/modules").join(&k.version);
    let dest_parent = root.join("usr/lib/modules");
    std::fs::create_dir_all(&dest_parent).map_err(|e| BuildError::io(&dest_parent, e))?;
    host_tool::stdout(
        Command::new("cp").arg("-a").arg(&src).arg(&dest_parent),
        "coreutils",
    )?;
    host_tool::stdout(
        Command::new("depmod").arg("-b").arg(root).arg(&k.version),
        "kmod",
    )?;
    let vmlinuz = k.dir.join("boot").join(format!("vmlinuz-{}", k.version));
    std::fs::copy(&vmlinuz, out.join("vmlinuz")).map_err(|e| BuildError::io(&vmlinuz, e))?;
    std::fs::write(out.join("kernel-version"), format!("{}\n", k.version))
        .map_err(|e| BuildError::io(out, e))?;
    let extras = flatcar_disk.then_some(root);
    let initrd = initramfs(k, &dest_parent.join(&k.version), extras)?;
    std::fs::write(out.join("initrd.cpio"), initrd).map_err(|e| BuildError::io(out, e))
}

/// Module paths (relative to the modules dir) for `wanted` and their dependencies, in an
/// order insmod accepts (dependencies first).
fn with_dependencies(modules_dep: &str, wanted: &[&str]) -> Vec<String> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in modules_dep.lines() {
        if let Some((m, rest)) = line.split_once(':') {
            deps.insert(
                m.to_string(),
                rest.split_whitespace().map(str::to_string).collect(),
            );
        }
    }
    let name_of = |p: &str| {
        p.rsplit('/')
            .next()
            .unwrap_or(p)
            .split('.')
            .next()
            .unwrap_or("")
            .replace('-', "_")
    };
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    fn visit(
        m: &str,
        deps: &BTreeMap<String, Vec<String>>,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(m.to_string()) {
            return;
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, seen, order);
        }
        order.push(m.to_string());
    }
    for w in wanted {
        if let Some(path) = deps.keys().find(|p| name_of(p) == *w).cloned() {
            visit(&path, &deps, &mut seen, &mut order);
        }
    }
    order
}

/// The initramfs; with `flatcar_root` (the guest's root tree) it also carries what opens
/// Flatcar's disk.
fn initramfs(
    k: &Kernel,
    modules_dir: &Path,
    flatcar_root: Option<&Path>,
) -> Result<Vec<u8>, BuildError> {
    let dep_file = modules_dir.join("modules.dep");
    let dep = std::fs::read_to_string(&dep_file).map_err(|e| BuildError::io(&dep_file, e))?;
    let mut wanted = INITRAMFS_MODULES.to_vec();
    if flatcar_root.is_some() {
        wanted.extend_from_slice(FLATCAR_DISK_MODULES);
    }
    let modules = with_dependencies(&dep, &wanted);
    let busybox = crate::deb::unpacked("busybox-static", k.arch)?.join("usr/bin/busybox");
    let busybox_bytes = std::fs::read(&busybox).map_err(|e| BuildError::io(&busybox, e))?;
    let cpio_err = |e| BuildError::io(Path::new("initramfs"), e);
    let mut c = Cpio::new(Vec::new());
    for d in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "newroot",
        "proc",
        "sys",
    ] {
        c.dir(d).map_err(cpio_err)?;
    }
    c.file("bin/busybox", 0o755, &busybox_bytes)
        .map_err(cpio_err)?;
    c.file("init", 0o755, INIT_SCRIPT.as_bytes())
        .map_err(cpio_err)?;
    let mut order = String::new();
    for m in &modules {
        let src = modules_dir.join(m);
        let bytes = if m.ends_with(".xz") {
            host_tool::output(Command::new("xz").arg("-dc").arg(&src), "xz-utils")?.stdout
        } else if m.ends_with(".zst") {
            host_tool::output(Command::new("zstd").arg("-dc").arg(&src), "zstd")?.stdout
        } else {
            std::fs::read(&src).map_err(|e| BuildError::io(&src, e))?
        };
        let name = format!(
            "{}.ko",
            m.rsplit('/')
                .next()
                .unwrap_or(m)
                .split(".ko")
                .next()
                .unwrap_or(m)
        );
        c.file(&format!("lib/modules/{name}"), 0o644, &bytes)
            .map_err(cpio_err)?;
        order.push_str(&name);
        order.push('\n');
    }
    c.file("etc/modules.order", 0o644, order.as_bytes())
        .map_err(cpio_err)?;
    if let Some(root) = flatcar_root {
        add_programs(&mut c, root, k.arch)?;
    }
    c.finish().map_err(cpio_err)
}

/// Puts [`FLATCAR_DISK_PROGRAMS`] into `bin/`, the libraries they need (`DT_NEEDED`, found
/// in the guest's own root) into `lib/`, and the dynamic loader at the path their
/// `PT_INTERP` names; the init script runs them with `LD_LIBRARY_PATH=/lib`.
fn add_programs(c: &mut Cpio<Vec<u8>>, root: &Path, arch: Arch) -> Result<(), BuildError> {
    let cpio_err = |e| BuildError::io(Path::new("initramfs"), e);
    let triplet = match arch {
        Arch::X86_64 => "x86_64-linux-gnu",
        Arch::Arm64 => "aarch64-linux-gnu",
    };
    let lib_dirs = [format!("usr/lib/{triplet}"), format!("lib/{triplet}")];
    let mut queue: Vec<(String, Vec<u8>)> = Vec::new();
    for (package, path) in FLATCAR_DISK_PROGRAMS {
        let src = crate::deb::unpacked(package, arch)?.join(path);
        let bytes = std::fs::read(&src).map_err(|e| BuildError::io(&src, e))?;
        let name = path.rsplit('/').next().unwrap_or(path);
        queue.push((format!("bin/{name}"), bytes));
    }
    let mut done: HashSet<String> = HashSet::new();
    let mut dirs: HashSet<String> = ["bin", "lib"].iter().map(|s| s.to_string()).collect();
    while let Some((dest, bytes)) = queue.pop() {
        if !done.insert(dest.clone()) {
            continue;
        }
        let info = crate::elf::inspect(&bytes).map_err(|e| {
            BuildError::Spec(format!("initramfs: {dest} is not a readable ELF file: {e}"))
        })?;
        let mut wants: Vec<(String, String)> = info
            .needed
            .iter()
            .map(|n| (format!("lib/{n}"), n.clone()))
            .collect();
        if let Some(interp) = &info.interpreter {
            wants.push((interp.trim_start_matches('/').to_string(), interp.clone()));
        }
        for (to, name) in wants {
            if done.contains(&to) {
                continue;
            }
            let found = if name.starts_with('/') {
                resolve_in(root, &name)
            } else {
                lib_dirs
                    .iter()
                    .find_map(|d| resolve_in(root, &format!("/{d}/{name}")))
            };
            let Some(found) = found else {
                return Err(BuildError::Spec(format!(
                    "initramfs: {dest} needs {name}, which the guest's root does not have"
                )));
            };
            let bytes = std::fs::read(&found).map_err(|e| BuildError::io(&found, e))?;
            queue.push((to, bytes));
        }
        if let Some((parent, _)) = dest.rsplit_once('/')
            && dirs.insert(parent.to_string())
        {
            c.dir(parent).map_err(cpio_err)?;
        }
        c.file(&dest, 0o755, &bytes).map_err(cpio_err)?;
    }
    Ok(())
}

/// `path` (absolute, as the guest sees it) inside `root`, following symlinks as the guest
/// would: an absolute link target is the guest's, not the host's.
fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut current = path.to_string();
    for _ in 0..16 {
        let host = root.join(current.trim_start_matches('/'));
        match std::fs::read_link(&host) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                current = if target.starts_with('/') {
                    target
                } else {
                    let parent = current.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    format!("{parent}/{target}")
                };
            }
            Err(_) => return host.is_file().then_some(host),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initrd_merge_loads_every_module_a_merge_needs() {
        let line = INIT_SCRIPT
            .lines()
            .find(|l| l.contains("modprobe -a"))
            .expect("the initrd merge loads its modules");
        for m in super::super::PRELOAD_MODULES {
            assert!(line.split_whitespace().any(|w| w == *m), "{m}: {line}");
        }
    }

    #[test]
    fn the_init_script_prints_the_network_beacon() {
        assert!(INIT_SCRIPT.contains(&format!("echo \"{}\"", super::super::NETWORK_BEACON)));
    }

    #[test]
    fn the_init_script_holds_where_the_harness_looks() {
        assert!(INIT_SCRIPT.contains(&format!("echo \"{}\"", super::super::HOLD_BEACON)));
        let hold = INIT_SCRIPT.find("HOLDING").expect("holds");
        let root = INIT_SCRIPT
            .find("if ! root=$(device")
            .expect("finds the root");
        assert!(hold < root, "the hold comes before any filesystem is read");
    }

    #[test]
    fn dependencies_come_first() {
        let dep = "kernel/a.ko.xz: kernel/b.ko.xz\nkernel/b.ko.xz: kernel/c.ko.xz\nkernel/c.ko.xz:\nkernel/virtio-blk.ko.xz: kernel/a.ko.xz\n";
        let order = with_dependencies(dep, &["virtio_blk"]);
        assert_eq!(
            order,
            [
                "kernel/c.ko.xz",
                "kernel/b.ko.xz",
                "kernel/a.ko.xz",
                "kernel/virtio-blk.ko.xz"
            ]
        );
    }
}
