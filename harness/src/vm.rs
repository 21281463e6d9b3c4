//! `Vm`: a running guest, and everything a case does with it. Modelled on the NixOS test
//! driver's vocabulary (`succeed`, `fail`, `wait_until_succeeds`, `wait_for_unit`), with every
//! wait bounded and scaled by how slow the accelerator is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use sysext_builder::Arch;
use sysext_builder::guest::Guest;

use crate::accel::{self, Accel};
use crate::errors::{HarnessError, Result};
use crate::qemu::{self, Launch};
use crate::qemu_img::{self, Backing};
use crate::qmp::Qmp;
use crate::ssh::{Output, Ssh};

pub use sysext_builder::guest::{NETWORK_BEACON, READY_BEACON};

pub struct Vm {
    rt: tokio::runtime::Runtime,
    child: Option<tokio::process::Child>,
    qmp: Option<Qmp>,
    ssh: Option<Ssh>,
    launch: Launch,
    run_dir: tempfile::TempDir,
    key_pem: String,
    pub arch: Arch,
    pub accel: Accel,
    /// How long the cold boot or the restore took, to SSH login.
    pub startup: Duration,
    /// Cold boots: QEMU start to the network beacon (the initramfs has configured eth0);
    /// the rest of `startup` is systemd starting the SSH server, and the login.
    pub beacon: Option<Duration>,
    /// Console text that ends the wait for a login at once ([`Vm::boot_watching`]).
    give_up_on: Vec<String>,
    /// The file the payload disk carries ([`Vm::restore_carrying`]).
    carried: Option<crate::payload::Carried>,
    /// How many times this guest has booted (or been restored) in this Vm: 1, then one
    /// more per [`Vm::reboot`].
    pub boots: u32,
}

/// What a cold boot adds to the guest's own command line.
#[derive(Debug, Clone, Default)]
pub struct BootOptions<'a> {
    /// Console text that ends the wait for a login at once ([`HarnessError::GaveUp`]).
    pub give_up_on: &'a [&'a str],
    /// `-fw_cfg` items: (name, host file), e.g. an Ignition config.
    pub fw_cfg: Vec<(String, PathBuf)>,
    /// Extra kernel arguments.
    pub kernel_args: String,
    /// Attach the empty payload disk ([`crate::payload`]): guests booted to be saved.
    pub payload_disk: bool,
    /// Boot only until the Flatcar-format initramfs holds (before it reads a filesystem),
    /// to save that state ([`crate::snapshot::initrd_held`]); no login.
    pub hold_in_initrd: bool,
}

/// How a QEMU start reaches its guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Boots the disk: wait for the network beacon, then a login.
    Cold,
    /// Loads a state saved with the guest up: a login at once.
    Restore,
    /// Loads a state saved in the initramfs's hold: the rest of a boot, then a login.
    Resume,
    /// Boots until the initramfs holds; no login.
    UntilHeld,
}

/// A guest's saved state: boot once, restore per case on its own overlay.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub launch: Launch,
    pub key_pem: String,
}

fn stage_trace(stage: &str, start: Instant) {
    if std::env::var_os("SYSEXT_TEST_TRACE").is_some() {
        eprintln!("trace: {:>6.3}s {stage}", start.elapsed().as_secs_f64());
    }
}

fn trace(cmd: &str, start: Instant, out: &Result<Output>) {
    if std::env::var_os("SYSEXT_TEST_TRACE").is_some() {
        let status = match out {
            Ok(o) => format!("exit {}", o.status),
            Err(e) => format!("error: {e}"),
        };
        let first = cmd
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        eprintln!(
            "trace: {:>6.3}s {status:<8} {}{}",
            start.elapsed().as_secs_f64(),
            first.chars().take(100).collect::<String>(),
            if cmd.lines().count() > 1 { " …" } else { "" }
        );
    }
}

/// The kernel argument that hands root's authorized key to the guest's sshd (systemd's
/// `ssh.authorized_keys.root` credential).
pub fn key_credential(public: &str) -> String {
    let cred = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
    format!("systemd.set_credential_binary=ssh.authorized_keys.root:{cred}")
}

/// The initramfs-held state `guest`'s disk can resume from, if any: a firmware guest, not
/// being booted to be saved, whose disk has the same partition table as the built guest's
/// own disk (a baked copy does: `bake` writes inside partitions).
fn held_state_for(guest: &Guest, options: &BootOptions) -> Option<Snapshot> {
    if guest.boot() != sysext_builder::guest::Boot::Firmware
        || !guest.holds_in_initrd
        || options.hold_in_initrd
        || options.payload_disk
        || std::env::var("SYSEXT_TEST_COLD_BOOT").as_deref() == Ok("1")
    {
        return None;
    }
    let mut built = guest.clone();
    built.disk = guest.dir.join("root.img");
    if built.disk != guest.disk && !same_partition_table(&built.disk, &guest.disk) {
        return None;
    }
    let base = crate::place::Place::from_env().snapshots();
    match crate::snapshot::initrd_held(&built, &base, &|l| eprintln!("{l}")) {
        Ok(snap) => Some(snap),
        Err(e) => {
            eprintln!(
                "note: no state held in the {} guest's initramfs ({e}); booting from the firmware",
                guest.arch
            );
            None
        }
    }
}

/// Whether two disks have the same GPT (both copies): the first and last 34 sectors.
fn same_partition_table(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let ends = |p: &Path| -> std::io::Result<Vec<u8>> {
        let f = std::fs::File::open(p)?;
        let len = f.metadata()?.len();
        let span = 34 * 512;
        if len < 2 * span {
            return Err(std::io::Error::other("too small"));
        }
        let mut buf = vec![0u8; 2 * span as usize];
        f.read_exact_at(&mut buf[..span as usize], 0)?;
        f.read_exact_at(&mut buf[span as usize..], len - span)?;
        Ok(buf)
    };
    matches!((ends(a), ends(b)), (Ok(x), Ok(y)) if x == y)
}

/// A firmware guest's own files in its run dir: a fresh variable store, and the Ignition
/// config (the case's, from `fw_cfg`, or none) with the harness's key for `core` under
/// both of Ignition's fw_cfg names. Other fw_cfg items pass through.
fn firmware_guest_files(
    launch: &mut Launch,
    fw_cfg: &[(String, PathBuf)],
    public: &str,
    hold: bool,
) -> Result<()> {
    if let Some(vars) = &launch.firmware_vars
        && !vars.exists()
    {
        crate::firmware::fresh_vars(launch.arch, vars)?;
    }
    if let Some((_, file)) = launch
        .fw_cfg
        .iter()
        .find(|(name, _)| name == crate::qemu::HOLD_FW_CFG)
    {
        let word: &[u8] = if hold { b"hold" } else { b"run!" };
        std::fs::write(file, word).map_err(|e| HarnessError::io(file, e))?;
    }
    let case_config = fw_cfg
        .iter()
        .find(|(name, _)| crate::qemu::IGNITION_FW_CFG.contains(&name.as_str()))
        .map(|(_, file)| std::fs::read(file).map_err(|e| HarnessError::io(file, e)))
        .transpose()?;
    let config = crate::login_config::with_core_key(case_config.as_deref(), public);
    if let Some((_, file)) = launch
        .fw_cfg
        .iter()
        .find(|(name, _)| crate::qemu::IGNITION_FW_CFG.contains(&name.as_str()))
    {
        sysext_builder::atomic::write_bytes(file, &config)
            .map_err(|e| HarnessError::io(file, e))?;
    }
    launch.fw_cfg.extend(
        fw_cfg
            .iter()
            .filter(|(name, _)| !crate::qemu::IGNITION_FW_CFG.contains(&name.as_str()))
            .cloned(),
    );
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| HarnessError::io("tokio runtime", e))
}

fn run_dir() -> Result<tempfile::TempDir> {
    crate::cleanup::install();
    // Under /tmp: the QMP socket path must stay below 108 bytes.
    let dir = tempfile::Builder::new()
        .prefix("sxt-")
        .tempdir_in("/tmp")
        .map_err(|e| HarnessError::io("/tmp", e))?;
    crate::cleanup::register_dir(dir.path());
    Ok(dir)
}

impl Vm {
    /// Boots `guest` cold on a fresh overlay, with a new ephemeral SSH key handed to the
    /// guest as a systemd credential.
    pub fn boot(guest: &Guest) -> Result<Vm> {
        let (key_pem, public) = crate::ssh::ephemeral_key()?;
        Vm::boot_with_key(guest, &key_pem, &public)
    }

    /// Boots `guest` cold like [`Vm::boot`], but stops waiting for a login as soon as a
    /// console line contains one of `give_up_on` ([`HarnessError::GaveUp`]): a boot the
    /// guest itself reports broken fails in seconds instead of after the login timeout.
    pub fn boot_watching(guest: &Guest, give_up_on: &[&str]) -> Result<Vm> {
        Vm::boot_with(
            guest,
            &BootOptions {
                give_up_on,
                ..Default::default()
            },
        )
    }

    /// A cold boot with `options` (fw_cfg items, kernel arguments, give-up lines).
    ///
    /// A guest that boots from firmware resumes from its state held in the initramfs
    /// ([`crate::snapshot::initrd_held`]) with its disk beneath, when that disk has the
    /// partition table the state was held on: the same boot from the initramfs on, seconds
    /// sooner. `SYSEXT_TEST_COLD_BOOT=1` boots every time from the firmware.
    pub fn boot_with(guest: &Guest, options: &BootOptions) -> Result<Vm> {
        if let Some(snap) = held_state_for(guest, options) {
            return Vm::resume_held(&snap, &guest.disk, options);
        }
        let (key_pem, public) = crate::ssh::ephemeral_key()?;
        Vm::boot_inner(guest, &key_pem, &public, options)
    }

    /// Boots `guest` cold, trusting `public` (OpenSSH format) for root's login, with the
    /// (empty) payload disk a saved state needs for [`Vm::restore_carrying`].
    pub fn boot_with_key(guest: &Guest, key_pem: &str, public: &str) -> Result<Vm> {
        Vm::boot_inner(
            guest,
            key_pem,
            public,
            &BootOptions {
                payload_disk: true,
                ..Default::default()
            },
        )
    }

    /// [`Vm::boot_with_key`] with `options`.
    pub fn boot_with_key_and(
        guest: &Guest,
        key_pem: &str,
        public: &str,
        options: &BootOptions,
    ) -> Result<Vm> {
        Vm::boot_inner(guest, key_pem, public, options)
    }

    fn boot_inner(guest: &Guest, key_pem: &str, public: &str, options: &BootOptions) -> Result<Vm> {
        let key_pem = key_pem.to_string();
        let accel = accel::choose(guest.arch, &guest.kernel);
        let dir = run_dir()?;
        let disk = dir.path().join("disk.qcow2");
        qemu_img::create_overlay(&disk, Some(Backing::Raw(&guest.disk)), None)?;
        let mut launch = Launch::new(
            guest,
            accel,
            dir.path(),
            disk,
            qemu::free_port()?,
            &format!("{} {}", key_credential(public), options.kernel_args),
        );
        if launch.firmware_vars.is_some() {
            firmware_guest_files(&mut launch, &options.fw_cfg, public, options.hold_in_initrd)?;
        } else {
            launch.fw_cfg = options.fw_cfg.clone();
        }
        if options.payload_disk {
            let payload = dir.path().join("payload.qcow2");
            crate::payload::create(&payload, None)?;
            launch.payload = Some(payload);
        }
        let mode = if options.hold_in_initrd {
            Start::UntilHeld
        } else {
            Start::Cold
        };
        Vm::start(launch, dir, key_pem, mode, options.give_up_on, None)
    }

    /// Boots `disk` (a raw disk with the same partition table as the one `snap` was held
    /// on, e.g. a baked copy) from the state `snap` saved in the initramfs: the firmware,
    /// GRUB and the kernel are skipped, the rest of the boot (Ignition with `options`'
    /// config, systemd, the merge) runs on `disk` as a cold boot would.
    pub fn resume_held(snap: &Snapshot, disk: &Path, options: &BootOptions) -> Result<Vm> {
        let dir = run_dir()?;
        let overlay = dir.path().join("disk.qcow2");
        qemu_img::create_overlay(&overlay, Some(Backing::Raw(disk)), None)?;
        let mut launch = snap.launch.clone();
        launch.disk = overlay;
        launch.qmp_socket = dir.path().join("qmp.sock");
        launch.console_log = dir.path().join("console.log");
        launch.ssh_port = qemu::free_port()?;
        launch.incoming = Some(format!("exec:cat {}", snap.dir.join("state").display()));
        if let Some(saved) = &launch.firmware_vars {
            let vars = dir.path().join(crate::qemu::VARS_FILE);
            crate::firmware::copy_vars(saved, &vars)?;
            launch.firmware_vars = Some(vars);
        }
        for (_, file) in &mut launch.fw_cfg {
            *file = dir.path().join(file.file_name().unwrap_or_default());
        }
        let public = crate::ssh::public_of(&snap.key_pem)?;
        firmware_guest_files(&mut launch, &options.fw_cfg, &public, false)?;
        Vm::start(
            launch,
            dir,
            snap.key_pem.clone(),
            Start::Resume,
            options.give_up_on,
            None,
        )
    }

    /// Starts a guest from `snap` on its own overlay: about 1 s instead of a cold boot.
    pub fn restore(snap: &Snapshot) -> Result<Vm> {
        Vm::restore_carrying(snap, None)
    }

    /// Like [`Vm::restore`], with `file` on the payload disk: [`Vm::upload_and_batch`] of
    /// that file then copies it from the disk instead of sending it through SSH.
    pub fn restore_carrying(snap: &Snapshot, file: Option<&Path>) -> Result<Vm> {
        let dir = run_dir()?;
        let disk = dir.path().join("disk.qcow2");
        let saved = snap.dir.join("disk.qcow2");
        qemu_img::create_overlay(&disk, Some(Backing::Qcow2(&saved)), None)?;
        let mut launch = snap.launch.clone();
        let mut carried = None;
        if launch.payload.is_some() {
            let payload = dir.path().join("payload.qcow2");
            carried = crate::payload::create(&payload, file)?;
            launch.payload = Some(payload);
        }
        launch.disk = disk;
        if let Some(saved) = &launch.firmware_vars {
            let vars = dir.path().join(crate::qemu::VARS_FILE);
            crate::firmware::copy_vars(saved, &vars)?;
            launch.firmware_vars = Some(vars);
        }
        launch.qmp_socket = dir.path().join("qmp.sock");
        launch.console_log = dir.path().join("console.log");
        launch.ssh_port = qemu::free_port()?;
        launch.incoming = Some(format!("exec:cat {}", snap.dir.join("state").display()));
        Vm::start(
            launch,
            dir,
            snap.key_pem.clone(),
            Start::Restore,
            &[],
            carried,
        )
    }

    fn start(
        launch: Launch,
        run_dir: tempfile::TempDir,
        key_pem: String,
        mode: Start,
        give_up_on: &[&str],
        carried: Option<crate::payload::Carried>,
    ) -> Result<Vm> {
        let mut vm = Vm {
            rt: runtime()?,
            child: None,
            qmp: None,
            ssh: None,
            arch: launch.arch,
            accel: launch.accel,
            launch,
            run_dir,
            key_pem,
            startup: Duration::ZERO,
            beacon: None,
            give_up_on: give_up_on.iter().map(|s| s.to_string()).collect(),
            carried,
            boots: 1,
        };
        vm.spawn_and_log_in(mode)?;
        Ok(vm)
    }

    /// Starts QEMU with `self.launch` and waits for a login (or, for [`Start::UntilHeld`],
    /// for the initramfs to hold).
    fn spawn_and_log_in(&mut self, mode: Start) -> Result<()> {
        let restoring = matches!(mode, Start::Restore | Start::Resume);
        let start = Instant::now();
        let stderr_log = self
            .run_dir
            .path()
            .join(format!("qemu.stderr{}", self.boot_suffix()));
        let child = {
            let _guard = self.rt.enter();
            self.launch.spawn(&stderr_log)?
        };
        if let Some(pid) = child.id() {
            crate::cleanup::register_pid(pid);
        }
        self.child = Some(child);
        let slow = self.accel.slowdown(self.arch);
        let qmp_deadline = Instant::now() + Duration::from_secs(10 * u64::from(slow));
        let socket = self.launch.qmp_socket.clone();
        let qmp = {
            let child = &mut self.child;
            let alive = || {
                child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_none())
            };
            self.rt.block_on(Qmp::connect(&socket, qmp_deadline, alive))
        };
        let qmp = match qmp {
            Ok(q) => q,
            Err(e) => return Err(self.exited_or("QMP connect", e)),
        };
        stage_trace("QMP connected", start);
        if restoring {
            let deadline = Instant::now() + Duration::from_secs(15 * u64::from(slow));
            loop {
                let status = self.rt.block_on(qmp.status())?;
                if status != "inmigrate" {
                    break;
                }
                if let Some(e) = self.check_exit("restore") {
                    return Err(e);
                }
                if Instant::now() > deadline {
                    return Err(HarnessError::Timeout {
                        stage: "restore",
                        timeout: deadline - start,
                        console: self.console_tail(20),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            stage_trace("state loaded", start);
            self.rt.block_on(qmp.cont())?;
        }
        self.qmp = Some(qmp);
        let login_timeout = if mode == Start::UntilHeld {
            self.wait_for_console(
                sysext_builder::guest::HOLD_BEACON,
                Duration::from_secs(45 * u64::from(slow)),
                "boot to the initramfs hold",
            )?;
            stage_trace("held in the initramfs", start);
            self.startup = start.elapsed();
            return Ok(());
        } else if mode == Start::Resume {
            // The network came up before the hold; the rest of the boot is still to come.
            Duration::from_secs(45 * u64::from(slow))
        } else if restoring {
            Duration::from_secs(15 * u64::from(slow))
        } else {
            // Logins are tried as soon as the guest's NIC has its address (a refused
            // connection comes back at once), not after the ready line: the SSH server
            // starts early, and the first login is what counts.
            self.wait_for_console(
                NETWORK_BEACON,
                Duration::from_secs(30 * u64::from(slow)),
                "boot",
            )?;
            stage_trace("network up", start);
            self.beacon = Some(start.elapsed());
            Duration::from_secs(45 * u64::from(slow))
        };
        self.ssh = Some(self.connect_ssh(login_timeout, start)?);
        stage_trace("SSH login", start);
        self.startup = start.elapsed();
        Ok(())
    }

    /// `""` for the first boot of this Vm, `-2`, `-3` ... after reboots: the names of the
    /// console log and QEMU's stderr for each boot, so a reboot keeps the earlier ones.
    fn boot_suffix(&self) -> String {
        if self.boots <= 1 {
            String::new()
        } else {
            format!("-{}", self.boots)
        }
    }

    /// Reboots the guest for real: its own `systemctl reboot` (every unit stopped, the
    /// file systems synced and unmounted), then the machine reset, which QEMU's
    /// `-no-reboot` turns into its exit; the same disks boot again cold, as a reset boots
    /// them (RAM, `/run` and the kernel start over; the disk keeps what the guest wrote).
    /// Returns how long it took from the request to the new login.
    pub fn reboot(&mut self) -> Result<Duration> {
        let start = Instant::now();
        let slow = u64::from(self.accel.slowdown(self.arch));
        // `--no-block`: the command returns before the session is torn down.
        let asked = self.execute_for(
            "systemctl reboot --no-block",
            Duration::from_secs(10 * slow),
        );
        if let Err(e) = &asked {
            stage_trace(
                &format!("reboot request: {e} (the session may already be gone)"),
                start,
            );
        }
        self.ssh = None;
        self.qmp = None;
        let deadline = Instant::now() + Duration::from_secs(60 * slow);
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                if !status.success() {
                    return Err(self.check_exit("reboot").unwrap_or_else(|| {
                        HarnessError::Ssh(format!("QEMU exited {status} on the guest's reboot"))
                    }));
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout {
                    stage: "reboot (guest shutdown)",
                    timeout: deadline - start,
                    console: self.console_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stage_trace("guest reset (QEMU exited)", start);
        self.child = None;
        self.boots += 1;
        let suffix = self.boot_suffix();
        let dir = self.run_dir.path().to_path_buf();
        self.launch.incoming = None;
        self.launch.console_log = dir.join(format!("console{suffix}.log"));
        self.launch.qmp_socket = dir.join(format!("qmp{suffix}.sock"));
        self.launch.ssh_port = qemu::free_port()?;
        self.spawn_and_log_in(Start::Cold)?;
        Ok(start.elapsed())
    }

    /// Tries logins until one works.
    fn connect_ssh(&mut self, timeout: Duration, start: Instant) -> Result<Ssh> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.launch.ssh_port));
        let deadline = Instant::now() + timeout;
        // One attempt may wait this long for a banner; a busy TCG guest answers in < 2 s.
        let attempt = Duration::from_secs(2 * u64::from(self.accel.slowdown(self.arch)));
        loop {
            let result = Ssh::connect(addr, self.launch.user, &self.key_pem, attempt);
            match result {
                Ok(s) => return Ok(s),
                Err(e) => {
                    stage_trace(&format!("login attempt failed: {e}"), start);
                    if let Some(exit) = self.check_exit("SSH login") {
                        return Err(exit);
                    }
                    // An oops need not end in a panic: the kernel may limp on without the
                    // process it killed, and the login never comes.
                    if let Some(died) = self.kernel_died("SSH login") {
                        return Err(died);
                    }
                    if let Some(line) = self.console_line_with(&self.give_up_on) {
                        return Err(HarnessError::GaveUp {
                            stage: "SSH login",
                            line,
                            console: self.console_tail(40),
                        });
                    }
                    if Instant::now() > deadline {
                        return Err(HarnessError::Timeout {
                            stage: "SSH login",
                            timeout,
                            console: format!("{e}\n{}", self.console_tail(20)),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The first finished console line containing any of `patterns`.
    fn console_line_with(&self, patterns: &[String]) -> Option<String> {
        finished_line_with(&self.console(), patterns)
    }

    /// The error for a guest whose kernel crashed, if the console shows it did.
    fn kernel_died(&self, stage: &'static str) -> Option<HarnessError> {
        let console = self.console();
        let line = crate::kernel_death::line(&console)?;
        Some(HarnessError::KernelDied {
            stage,
            line: line.to_string(),
            console: self.console_tail(30),
        })
    }

    /// If QEMU has exited, the error that says so (with console and stderr); a kernel that
    /// crashed (a panic ends QEMU: `panic=-1` and `-no-reboot`) is named as that.
    fn check_exit(&mut self, stage: &'static str) -> Option<HarnessError> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        if let Some(died) = self.kernel_died(stage) {
            return Some(died);
        }
        Some(HarnessError::QemuExited {
            stage,
            status: status.to_string(),
            console: self.console_tail(30),
            stderr: std::fs::read_to_string(
                self.run_dir
                    .path()
                    .join(format!("qemu.stderr{}", self.boot_suffix())),
            )
            .unwrap_or_default(),
        })
    }

    fn exited_or(&mut self, stage: &'static str, e: HarnessError) -> HarnessError {
        std::thread::sleep(Duration::from_millis(100));
        self.check_exit(stage).unwrap_or(e)
    }

    /// Waits until the serial console shows `pattern`, failing early if QEMU exits.
    pub fn wait_for_console(
        &mut self,
        pattern: &str,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.console_contains(pattern) {
                return Ok(());
            }
            if let Some(e) = self.check_exit(stage) {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout {
                    stage,
                    timeout,
                    console: self.console_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn console(&self) -> String {
        std::fs::read(&self.launch.console_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn console_contains(&self, pattern: &str) -> bool {
        self.console().contains(pattern)
    }

    fn console_tail(&self, n: usize) -> String {
        let c = self.console();
        let lines: Vec<&str> = c.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The default per-command timeout: 60 s of KVM time, scaled.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(15 * u64::from(self.accel.slowdown(self.arch)))
    }

    fn ssh(&self) -> Result<&Ssh> {
        self.ssh
            .as_ref()
            .ok_or_else(|| HarnessError::Ssh("not connected".into()))
    }

    /// Runs `cmd` in the guest and returns what it did, whatever its exit status.
    /// `SYSEXT_TEST_TRACE=1` prints each command with its time and exit status.
    pub fn execute(&self, cmd: &str) -> Result<Output> {
        let start = Instant::now();
        let out = self.ssh()?.exec(cmd, self.command_timeout());
        trace(cmd, start, &out);
        out
    }

    /// Like [`Vm::execute`], for the few commands that legitimately run longer than the
    /// default (a download that must hit the client's own timeout); `timeout` is scaled.
    pub fn execute_for(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        let start = Instant::now();
        let out = self
            .ssh()?
            .exec(cmd, timeout * self.accel.slowdown(self.arch));
        trace(cmd, start, &out);
        out
    }

    /// Runs several independent commands in one round trip (each SSH exec costs a TCG
    /// guest tens of milliseconds) and returns each one's output, in order.
    pub fn batch(&self, cmds: &[&str]) -> Result<Vec<Output>> {
        let out = self.execute(&crate::frame::script(BATCH_MARK, cmds, 0))?;
        crate::frame::parse(BATCH_MARK, &out.stdout, &out.stderr, 0, cmds.len()).ok_or_else(|| {
            HarnessError::Command {
                cmd: format!("batch of {} commands", cmds.len()),
                what: format!("printed no complete result (exit {})", out.status),
                output: out.combined(),
            }
        })
    }

    /// Uploads `local` as `remote` (mode 0644) and then runs `cmds` as [`Vm::batch`] does,
    /// in one round trip: the upload's own exec would cost a TCG guest ~0.3 s more. The
    /// file the payload disk carries is copied from there instead of sent through SSH.
    pub fn upload_and_batch(
        &self,
        local: &Path,
        remote: &str,
        cmds: &[&str],
    ) -> Result<Vec<Output>> {
        let carried = self.carried.as_ref().filter(|c| {
            local.canonicalize().is_ok_and(|l| l == c.file)
                && std::fs::metadata(local).is_ok_and(|m| m.len() == c.len)
        });
        let (copy, data) = match carried {
            Some(c) => (crate::payload::copy_command(remote, c.len, 0o644), None),
            None => (
                crate::ssh::write_command(remote, 0o644),
                Some(std::fs::read(local).map_err(|e| HarnessError::io(local, e))?),
            ),
        };
        let script = format!(
            "{copy} || {{ echo 'sysext-test: upload to {remote} failed' >&2; exit 97; }}\n{}",
            crate::frame::script(BATCH_MARK, cmds, 0)
        );
        let start = Instant::now();
        let out = self
            .ssh()?
            .exec_with_input(&script, data.as_deref(), self.command_timeout());
        trace(
            &format!(
                "{} {} -> {remote}, then {} commands",
                if carried.is_some() {
                    "copy from the payload disk"
                } else {
                    "upload"
                },
                local.display(),
                cmds.len()
            ),
            start,
            &out,
        );
        let out = out?;
        if out.status == 97 && !out.stdout.contains(BATCH_MARK) {
            return Err(HarnessError::Command {
                cmd: format!("upload to {remote}"),
                what: "failed".into(),
                output: out.combined(),
            });
        }
        crate::frame::parse(BATCH_MARK, &out.stdout, &out.stderr, 0, cmds.len()).ok_or_else(|| {
            HarnessError::Command {
                cmd: format!("batch of {} commands", cmds.len()),
                what: format!("printed no complete result (exit {})", out.status),
                output: out.combined(),
            }
        })
    }

    /// Runs `cmd`; non-zero exit is an error carrying the output. Returns stdout.
    pub fn succeed(&self, cmd: &str) -> Result<String> {
        let out = self.execute(cmd)?;
        if out.status != 0 {
            return Err(HarnessError::Command {
                cmd: cmd.into(),
                what: format!("exited {}", out.status),
                output: out.combined(),
            });
        }
        Ok(out.stdout)
    }

    /// Runs `cmd`, which must fail. Returns its combined output (the error message).
    pub fn fail(&self, cmd: &str) -> Result<String> {
        let out = self.execute(cmd)?;
        if out.status == 0 {
            return Err(HarnessError::Command {
                cmd: cmd.into(),
                what: "succeeded but was expected to fail".into(),
                output: out.combined(),
            });
        }
        Ok(out.combined())
    }

    /// Retries `cmd` once a second until it succeeds or `timeout` (scaled) passes.
    pub fn wait_until_succeeds(&self, cmd: &str, timeout: Duration) -> Result<String> {
        let timeout = timeout * self.accel.slowdown(self.arch);
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.execute(cmd)?;
            if out.status == 0 {
                return Ok(out.stdout);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Command {
                    cmd: cmd.into(),
                    what: format!("kept failing for {timeout:?}"),
                    output: out.combined(),
                });
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Waits until `unit` is active; fails at once when it is `failed`, and as soon as it is
    /// inactive with no job queued and nothing that would start it (or, when something
    /// pulls it in, after three seconds of that).
    pub fn wait_for_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        let timeout = timeout * self.accel.slowdown(self.arch);
        let deadline = Instant::now() + timeout;
        // One systemctl (each costs ~0.5 s under TCG): the state, the queued job if any,
        // and what would start the unit.
        let q = format!(
            "systemctl show -p ActiveState -p Job -p UpheldBy -p WantedBy -p RequiredBy -p TriggeredBy -- {unit}"
        );
        let mut idle_since: Option<Instant> = None;
        loop {
            let out = self.succeed(&q)?;
            let prop = |k: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            let state = prop("ActiveState");
            let queued = !prop("Job").is_empty();
            let pulled = ["UpheldBy", "WantedBy", "RequiredBy", "TriggeredBy"]
                .iter()
                .any(|k| !prop(k).is_empty());
            match state.as_str() {
                "active" => return Ok(()),
                "failed" => {
                    let status = self.execute(&format!("systemctl status --no-pager -l {unit}; journalctl -b --no-pager -n 30 -u {unit}"))?;
                    return Err(HarnessError::Command {
                        cmd: format!("wait_for_unit {unit}"),
                        what: "unit failed".into(),
                        output: status.combined(),
                    });
                }
                "inactive" if !queued => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if !pulled || since.elapsed() > Duration::from_secs(3) {
                        return Err(HarnessError::Command {
                            cmd: format!("wait_for_unit {unit}"),
                            what: "unit is inactive and nothing is starting it".into(),
                            output: self
                                .execute(&format!("systemctl status --no-pager {unit}"))?
                                .combined(),
                        });
                    }
                }
                _ => idle_since = None,
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Command {
                    cmd: format!("wait_for_unit {unit}"),
                    what: format!("still {state} after {timeout:?}"),
                    output: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn upload(&self, local: &Path, remote: &str) -> Result<()> {
        let start = Instant::now();
        let r = self.ssh()?.upload(local, remote, 0o644);
        trace(
            &format!("upload {} -> {remote}", local.display()),
            start,
            &r.as_ref()
                .map(|_| Output {
                    status: 0,
                    stdout: String::new(),
                    stderr: String::new(),
                })
                .map_err(|e| HarnessError::Ssh(e.to_string())),
        );
        r
    }

    /// Writes `text` to a guest file (mode 0644): config files, drop-ins.
    pub fn write_file(&self, remote: &str, text: &str) -> Result<()> {
        self.ssh()?.write_file(remote, text.as_bytes(), 0o644)
    }

    /// `journalctl -b` of the current boot.
    pub fn journal(&self) -> Result<String> {
        Ok(self
            .execute("journalctl -b --no-pager -o short-monotonic")?
            .combined())
    }

    /// Writes console, QEMU stderr, journal, sysext status and failed units into `dir`.
    /// Best effort: a dead guest still leaves its console and stderr.
    pub fn save_artifacts(&self, dir: &Path) -> PathBuf {
        let _ = std::fs::create_dir_all(dir);
        // Through temp files, like every file we leave behind: a run killed half way leaves
        // no truncated log that looks like the whole story.
        // Every boot's console and stderr: after a reboot the earlier boots are evidence
        // too (`console.log` is always the current boot's).
        let mut logs = vec![
            (self.launch.console_log.clone(), "console.log".to_string()),
            (
                self.run_dir.path().join("qemu.stderr"),
                "qemu-stderr.log".to_string(),
            ),
        ];
        for boot in 2..=self.boots {
            logs.push((
                self.run_dir.path().join(format!("qemu.stderr-{boot}")),
                format!("qemu-stderr-{boot}.log"),
            ));
        }
        if self.boots > 1 {
            logs.push((
                self.run_dir.path().join("console.log"),
                "console-1.log".to_string(),
            ));
        }
        for (src, name) in logs {
            let _ = sysext_builder::atomic::write_with(&dir.join(name), |f| {
                std::io::copy(&mut std::fs::File::open(&src)?, f)
            });
        }
        // How QEMU ran this guest (firmware or `-kernel`, devices, fw_cfg): the last start's
        // command line; a resumed or restored guest's also has `-incoming`.
        let mut cmdline = vec![
            crate::qemu::Profile::for_arch(self.launch.arch)
                .binary
                .to_string(),
        ];
        cmdline.extend(self.launch.args());
        let _ = sysext_builder::atomic::write_bytes(
            &dir.join("qemu-cmdline.txt"),
            format!("{}\n", cmdline.join(" ")).as_bytes(),
        );
        for (file, cmd) in [
            ("journal.log", "journalctl -b --no-pager -o short-monotonic"),
            (
                "sysext-status.json",
                "systemd-sysext status --json=pretty; systemd-sysext list --json=pretty",
            ),
            (
                "systemctl-failed.txt",
                "systemctl --failed --no-pager --all",
            ),
        ] {
            let ssh = self.ssh.as_ref().filter(|_| self.qemu_alive());
            let text = match ssh.map(|s| s.exec(cmd, Duration::from_secs(60))) {
                Some(Ok(o)) => o.combined(),
                Some(Err(e)) => format!("could not collect: {e}\n"),
                None => "no guest to ask (QEMU exited, or SSH never connected)\n".into(),
            };
            let _ = sysext_builder::atomic::write_bytes(&dir.join(file), text.as_bytes());
        }
        dir.to_path_buf()
    }

    /// Saves the running guest into `dir` (state + frozen disk) and stops it. The key stays
    /// with the caller: it is the guest's (`snapshot::GuestKey`) or dies with the process.
    pub fn save(mut self, dir: &Path) -> Result<Snapshot> {
        std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(dir, e))?;
        // Save an idle guest: no boot job still running that every restore would replay, and
        // no udev event in flight (coldplug loads modules after the boot is "running"; a
        // state saved with udev workers busy restored, now and then, with them hung for a
        // minute and the first loop device, so the first merge, waiting on them).
        let _ = self.execute(
            "systemctl is-system-running --wait >/dev/null 2>&1; udevadm settle --timeout=60",
        );
        self.ssh = None;
        // Let sshd finish closing the session before the clock stops.
        std::thread::sleep(Duration::from_millis(200));
        let state = dir.join("state");
        let qmp = self
            .qmp
            .take()
            .ok_or_else(|| HarnessError::Qmp("not connected".into()))?;
        self.rt.block_on(qmp.stop())?;
        self.rt.block_on(qmp.hmp(
            &format!("migrate \"exec:cat > {}\"", state.display()),
            Duration::from_secs(10),
        ))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let info = self
                .rt
                .block_on(qmp.hmp("info migrate", Duration::from_secs(10)))?;
            if info.contains("Migration status: completed") {
                break;
            }
            if info.contains("Migration status: failed") || Instant::now() > deadline {
                return Err(HarnessError::Qmp(format!(
                    "saving the guest state failed: {info}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.rt.block_on(qmp.quit());
        if let Some(mut child) = self.child.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), child.wait()).await
            });
        }
        let disk = dir.join("disk.qcow2");
        std::fs::rename(&self.launch.disk, &disk)
            .or_else(|_| std::fs::copy(&self.launch.disk, &disk).map(|_| ()))
            .map_err(|e| HarnessError::io(&disk, e))?;
        let mut launch = self.launch.clone();
        launch.disk = disk;
        // What a firmware guest's restore needs besides the disk: its variable store and
        // the Ignition config in fw_cfg (the devices must be the same).
        if let Some(vars) = &launch.firmware_vars {
            let saved = dir.join(crate::qemu::VARS_FILE);
            crate::firmware::copy_vars(vars, &saved)?;
            launch.firmware_vars = Some(saved);
        }
        for (_, file) in &mut launch.fw_cfg {
            let saved = dir.join(file.file_name().unwrap_or_default());
            if *file != saved {
                std::fs::copy(&*file, &saved).map_err(|e| HarnessError::io(&saved, e))?;
                *file = saved;
            }
        }
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            launch,
            key_pem: self.key_pem.clone(),
        })
    }
}

const BATCH_MARK: &str = "\u{1e}sysext-test-batch";

impl Vm {
    /// QEMU's process id while it runs.
    pub fn qemu_pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// The host port forwarded to the guest's SSH port.
    pub fn ssh_port(&self) -> u16 {
        self.launch.ssh_port
    }

    /// Whether QEMU still runs (a dead child is a zombie until waited for).
    pub fn qemu_alive(&self) -> bool {
        self.qemu_pid().is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .is_some_and(|state| state != "Z")
                })
                .unwrap_or(false)
        })
    }

    /// The per-VM temp directory (overlay disk, console log, QMP socket).
    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.ssh = None;
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let _ = child.start_kill();
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), child.wait()).await
            });
            if let Some(pid) = pid {
                crate::cleanup::unregister_pid(pid);
            }
        }
        crate::cleanup::unregister_dir(self.run_dir.path());
    }
}

/// The first line of `console` that contains any of `patterns` and has its newline. A line
/// still being written is not read: the serial console delivers a long line in pieces, and
/// a give-up on its first piece would keep a failure's words without their reason
/// (Ignition's `CRITICAL : Ignition failed: ... error creating /opt/extensions/hel`, the
/// `hash verification failed` a negative case pins still on its way).
fn finished_line_with(console: &str, patterns: &[String]) -> Option<String> {
    if patterns.is_empty() {
        return None;
    }
    let finished = console.rfind('\n').map_or("", |end| &console[..end]);
    finished
        .lines()
        .find(|l| patterns.iter().any(|p| l.contains(p.as_str())))
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::finished_line_with;

    #[test]
    fn a_give_up_word_counts_only_once_its_line_is_finished() {
        let words = vec!["Ignition failed".to_string()];
        let partial = "boot\n[ 3.1] CRITICAL : Ignition failed: error creating /opt/extensions/hel";
        assert_eq!(finished_line_with(partial, &words), None);
        let whole = format!("{partial}lo.raw: hash verification failed\nmore");
        assert_eq!(
            finished_line_with(&whole, &words).as_deref(),
            Some(
                "[ 3.1] CRITICAL : Ignition failed: error creating /opt/extensions/hello.raw: hash verification failed"
            )
        );
        assert_eq!(finished_line_with(&whole, &[]), None);
    }
}
