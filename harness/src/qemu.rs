//! The QEMU process: machine profiles per arch, the command line, and a child that cannot
//! outlive the test (killed on drop, SIGKILLed if our process dies, in our process group so
//! nextest's SIGTERM reaches it).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sysext_builder::Arch;
use sysext_builder::guest::{Boot, Guest};

use crate::accel::Accel;
use crate::errors::{HarnessError, Result};

/// Per-arch machine settings (measured in guest-lab: `qemu64` boots faster than `max` on
/// x86-64; arm64 `max` needs `pauth=off` or it crawls under TCG).
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub binary: &'static str,
    pub machine: &'static str,
    pub tcg_cpu: &'static str,
    pub console: &'static str,
    /// The Debian package that provides `binary`.
    pub package: &'static str,
}

impl Profile {
    pub fn for_arch(arch: Arch) -> Profile {
        match arch {
            Arch::X86_64 => Profile {
                binary: "qemu-system-x86_64",
                machine: "q35",
                tcg_cpu: "qemu64",
                console: "ttyS0",
                package: "qemu-system-x86",
            },
            Arch::Arm64 => Profile {
                binary: "qemu-system-aarch64",
                machine: "virt,gic-version=3",
                tcg_cpu: "max,pauth=off",
                console: "ttyAMA0",
                package: "qemu-system-arm",
            },
        }
    }
}

/// Everything that makes one QEMU invocation; restoring a snapshot needs the exact same
/// devices, so this is kept and reused.
#[derive(Debug, Clone)]
pub struct Launch {
    pub arch: Arch,
    pub accel: Accel,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub disk: PathBuf,
    pub ssh_port: u16,
    pub qmp_socket: PathBuf,
    pub console_log: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    /// `-incoming` URI when restoring a saved state.
    pub incoming: Option<String>,
    /// `-fw_cfg name=NAME,file=FILE` items (Ignition configs), for cold boots.
    pub fw_cfg: Vec<(String, PathBuf)>,
    /// The payload disk ([`crate::payload`]) of guests that are saved and restored.
    pub payload: Option<PathBuf>,
    /// Who the harness logs in as (the guest profile's user; not root goes through sudo).
    pub user: &'static str,
    /// A guest that boots from its disk through UEFI: its own copy of the firmware's
    /// variable store (the code is the arch's, read-only). No `-kernel` then.
    pub firmware_vars: Option<PathBuf>,
}

/// Where Ignition's config goes in fw_cfg: upstream Ignition reads `opt/com.coreos/config`,
/// Flatcar's `opt/org.flatcar-linux/config`; both carry the same file.
pub const IGNITION_FW_CFG: [&str; 2] = ["opt/com.coreos/config", "opt/org.flatcar-linux/config"];

/// The fw_cfg entry the Flatcar-format initramfs holds on (`hold`) or runs past (`run!`):
/// the same size either way, so a restored guest reads the new machine's word.
pub const HOLD_FW_CFG: &str = "opt/sysext-test/initrd";
pub const HOLD_FILE: &str = "initrd-hold";

/// The file a firmware guest's Ignition config is written to, in its run (or saved) dir.
pub const IGNITION_FILE: &str = "ignition.json";
/// The firmware guest's variable store, in its run (or saved) dir.
pub const VARS_FILE: &str = "vars.fd";

/// Kernel arguments that keep an x86-64 guest clear of a multi-threaded TCG bug.
///
/// Under MTTCG, a vCPU can run a stale translation of code the other vCPU just patched
/// with `text_poke_bp`, and the kernel dies with "Oops: int3" (seen in CI, in
/// `sched_clock_cpu`, when `sched_clock: Marking stable` flips its static key while both
/// CPUs are in the scheduler). `tsc=unstable` keeps that key from ever flipping; boot time
/// measured the same (19-21 s to the beacon either way, 2 vCPUs). KVM has no such bug.
fn tcg_workaround(arch: Arch, accel: Accel) -> &'static str {
    match (arch, accel) {
        (Arch::X86_64, Accel::Tcg) => " tsc=unstable",
        _ => "",
    }
}

impl Launch {
    pub fn new(
        guest: &Guest,
        accel: Accel,
        run_dir: &Path,
        disk: PathBuf,
        ssh_port: u16,
        extra_cmdline: &str,
    ) -> Launch {
        let p = Profile::for_arch(guest.arch);
        let workaround = tcg_workaround(guest.arch, accel);
        let firmware = guest.boot() == Boot::Firmware;
        Launch {
            arch: guest.arch,
            accel,
            kernel: guest.kernel.clone(),
            initrd: guest.initrd.clone(),
            cmdline: format!(
                "console={} {} panic=-1 quiet loglevel=3 systemd.show_status=0 net.ifnames=0{workaround} {extra_cmdline}",
                p.console,
                guest.boot_args()
            ),
            disk,
            ssh_port,
            qmp_socket: run_dir.join("qmp.sock"),
            console_log: run_dir.join("console.log"),
            memory_mib: 1024,
            cpus: 2,
            incoming: None,
            // A firmware guest's way in is Ignition (the harness's key for `core`), as on
            // Flatcar: the kernel command line is the disk's own.
            fw_cfg: if firmware {
                IGNITION_FW_CFG
                    .iter()
                    .map(|n| (n.to_string(), run_dir.join(IGNITION_FILE)))
                    .chain([(HOLD_FW_CFG.to_string(), run_dir.join(HOLD_FILE))])
                    .collect()
            } else {
                Vec::new()
            },
            payload: None,
            user: guest.profile.login_user(),
            firmware_vars: firmware.then(|| run_dir.join(VARS_FILE)),
        }
    }

    pub fn args(&self) -> Vec<String> {
        let p = Profile::for_arch(self.arch);
        let cpu = match self.accel {
            Accel::Kvm => "host",
            Accel::Tcg => p.tcg_cpu,
        };
        let mut a: Vec<String> = vec![
            "-accel".into(),
            self.accel.name().into(),
            "-machine".into(),
            p.machine.into(),
            "-cpu".into(),
            cpu.into(),
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
        ];
        match &self.firmware_vars {
            None => a.extend([
                "-kernel".into(),
                self.kernel.display().to_string(),
                "-initrd".into(),
                self.initrd.display().to_string(),
                "-append".into(),
                self.cmdline.clone(),
            ]),
            Some(vars) => {
                let code = crate::firmware::code(self.arch)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("MISSING-FIRMWARE({e})"));
                a.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"),
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
                ]);
            }
        }
        a.extend([
            "-drive".into(),
            format!(
                "file={},if=none,id=root,format=qcow2,cache=unsafe",
                self.disk.display()
            ),
            "-device".into(),
            // The firmware boots the disk before trying the network.
            if self.firmware_vars.is_some() {
                "virtio-blk-pci,drive=root,bootindex=0".into()
            } else {
                "virtio-blk-pci,drive=root".into()
            },
            "-netdev".into(),
            format!("user,id=net0,hostfwd=tcp:127.0.0.1:{}-:22", self.ssh_port),
            "-device".into(),
            // No option ROM (iPXE): nothing boots from the network, and the firmware would
            // load and start it on every cold boot (0.6-0.8 s under TCG with OVMF).
            "virtio-net-pci,netdev=net0,romfile=".into(),
            "-device".into(),
            "virtio-rng-pci".into(),
            "-serial".into(),
            format!("file:{}", self.console_log.display()),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", self.qmp_socket.display()),
        ]);
        if let Some(payload) = &self.payload {
            a.push("-drive".into());
            a.push(format!(
                "file={},if=none,id=payload,format=qcow2,readonly=on",
                payload.display()
            ));
            a.push("-device".into());
            a.push(format!(
                "virtio-blk-pci,drive=payload,serial={}",
                crate::payload::SERIAL
            ));
        }
        for (name, file) in &self.fw_cfg {
            a.push("-fw_cfg".into());
            a.push(format!("name={name},file={}", file.display()));
        }
        if let Some(uri) = &self.incoming {
            a.push("-incoming".into());
            a.push(uri.clone());
        }
        a
    }

    /// The command line with what differs per VM (disk, sockets, logs, port, incoming state)
    /// left out: two launches with the same signature can load each other's saved state.
    pub fn machine_signature(&self) -> String {
        let mut l = self.clone();
        l.disk = PathBuf::from("DISK");
        l.qmp_socket = PathBuf::from("QMP");
        l.console_log = PathBuf::from("CONSOLE");
        l.ssh_port = 0;
        l.incoming = None;
        if l.payload.is_some() {
            l.payload = Some(PathBuf::from("PAYLOAD"));
        }
        if l.firmware_vars.is_some() {
            l.firmware_vars = Some(PathBuf::from("VARS"));
        }
        for (_, file) in &mut l.fw_cfg {
            *file = PathBuf::from("FWCFG");
        }
        let mut args = vec![Profile::for_arch(self.arch).binary.to_string()];
        args.extend(l.args());
        args.join(" ")
    }

    /// Starts QEMU. Its stderr goes to `stderr_log` (a pipe would need draining).
    pub fn spawn(&self, stderr_log: &Path) -> Result<tokio::process::Child> {
        let p = Profile::for_arch(self.arch);
        let stderr =
            std::fs::File::create(stderr_log).map_err(|e| HarnessError::io(stderr_log, e))?;
        let mut cmd = tokio::process::Command::new(p.binary);
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL QEMU when the
        // thread that spawned it (our test) dies, so no QEMU outlives a killed test.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                sysext_builder::host_tool::start_error(e, p.binary, p.package).into()
            }
            _ => HarnessError::Spawn(e),
        })
    }
}

/// A free TCP port on 127.0.0.1, chosen by the OS. (Between this and QEMU binding it another
/// process could take it; QEMU then fails to start, which the caller reports.)
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError::io("127.0.0.1:0", e))?;
    let port = l
        .local_addr()
        .map_err(|e| HarnessError::io("127.0.0.1:0", e))?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysext_builder::guest::Profile as GuestProfile;

    fn guest(profile: GuestProfile, arch: Arch) -> Guest {
        Guest {
            arch,
            dir: PathBuf::from("/g"),
            kernel: PathBuf::from("/g/vmlinuz"),
            initrd: PathBuf::from("/g/initrd.cpio"),
            disk: PathBuf::from("/g/root.img"),
            kernel_version: "6.12".into(),
            profile,
            holds_in_initrd: true,
        }
    }

    #[test]
    fn a_flatcar_guest_boots_from_uefi_firmware_and_its_own_disk_not_from_kernel() {
        for arch in Arch::ALL {
            let l = Launch::new(
                &guest(GuestProfile::Flatcar, arch),
                Accel::Tcg,
                Path::new("/run"),
                PathBuf::from("/run/disk.qcow2"),
                2222,
                "",
            );
            let args = l.args().join(" ");
            assert!(!args.contains("-kernel"), "{args}");
            assert!(!args.contains("-append"), "{args}");
            assert!(
                args.contains("if=pflash,format=raw,unit=0,readonly=on"),
                "{args}"
            );
            assert!(args.contains("file=/run/vars.fd"), "{args}");
            assert!(args.contains("bootindex=0"), "{args}");
            assert!(
                args.contains("name=opt/org.flatcar-linux/config,file=/run/ignition.json"),
                "{args}"
            );
        }
    }

    #[test]
    fn the_debian_guest_still_boots_its_kernel_directly() {
        let l = Launch::new(
            &guest(GuestProfile::Debian, Arch::X86_64),
            Accel::Tcg,
            Path::new("/run"),
            PathBuf::from("/run/disk.qcow2"),
            2222,
            "",
        );
        let args = l.args().join(" ");
        assert!(args.contains("-kernel /g/vmlinuz"), "{args}");
        assert!(!args.contains("pflash"), "{args}");
    }

    #[test]
    fn per_vm_paths_do_not_change_the_machine_signature() {
        let at = |dir: &str| {
            let mut l = Launch::new(
                &guest(GuestProfile::Flatcar, Arch::Arm64),
                Accel::Tcg,
                Path::new(dir),
                PathBuf::from(format!("{dir}/disk.qcow2")),
                1,
                "",
            );
            l.console_log = PathBuf::from(format!("{dir}/console.log"));
            l.machine_signature()
        };
        assert_eq!(at("/a"), at("/b"));
    }
}
