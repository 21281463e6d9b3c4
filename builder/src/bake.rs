//! `sysext-test bake`: a copy of an OS disk image with extensions inside, laid out the way
//! their sysupdate config expects, made as an ordinary user: partitions are found by GPT
//! label ([`crate::gpt`]) and written with `debugfs -w` at the partition's offset in the
//! copy (no root, no loop device, no mount), then every file is read back and compared.
//! A btrfs OEM partition (Flatcar's) is read back into a tree (`btrfs restore`), the files
//! added, and made again with `mkfs.btrfs --rootdir` under the same label and UUID. USR-A
//! and USR-B are never written.
//!
//! Layout, per extension `NAME` (from the image's release file and bakery file name):
//! - the image at `/opt/extensions/NAME/NAME-VERSION-ARCH.raw` on ROOT (`--install-to
//!   root`) or at `/oem/extensions/NAME/...` on OEM (`--install-to oem`), where sysupdate's
//!   `Target Path=/opt/extensions/NAME` finds it as the installed version (the bakery's
//!   own script puts it flat in `/opt/extensions/`, where sysupdate never looks);
//! - the symlink `/etc/extensions/NAME.raw` (and `/dev/null` masks of the Flatcar built-ins
//!   the image replaces, as the bakery's docs write them) and, when there is one, the sysupdate config
//!   `/etc/sysupdate.NAME.d/NAME.conf` on ROOT, as `bake_flatcar_image.sh` writes them.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::errors::BakeError;
use crate::gpt::{self, Partition};
use crate::host_tool;
use crate::image::{Image, facts};
use crate::naming;

/// Where the extension images go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallTo {
    Root,
    Oem,
}

impl std::str::FromStr for InstallTo {
    type Err = String;
    fn from_str(s: &str) -> Result<InstallTo, String> {
        match s {
            "root" => Ok(InstallTo::Root),
            "oem" => Ok(InstallTo::Oem),
            _ => Err(format!("unknown install location {s:?}: use root or oem")),
        }
    }
}

/// One extension to bake in.
#[derive(Debug, Clone)]
pub struct Extension {
    pub name: String,
    pub image: PathBuf,
    pub file_name: String,
    /// The sysupdate config to install as `/etc/sysupdate.NAME.d/NAME.conf`.
    pub conf: Option<PathBuf>,
}

/// A file the bake wrote, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    /// The partition label (ROOT or OEM).
    pub partition: String,
    /// The path as the booted system sees it.
    pub path: String,
    /// What it is: an image, a symlink (with its target) or a config.
    pub what: String,
}

/// Reads each image's extension name the way systemd-sysext and the bakery agree on it
/// (release file name, bakery file name) and checks its arch; `confs` are given configs,
/// else `NAME.conf` beside the image is used when present.
pub fn extensions(
    images: &[PathBuf],
    arch: Arch,
    confs: &[PathBuf],
) -> Result<Vec<Extension>, BakeError> {
    let mut out: Vec<Extension> = Vec::new();
    for path in images {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let image = Image::open(path).map_err(|e| BakeError::Input {
            path: path.clone(),
            problem: e.to_string(),
            fix: "give an extension image (.raw) that `sysext-test lint` can read".into(),
        })?;
        let names = facts::release_names(&image);
        let triple = naming::triple(&file_name, &names).ok_or_else(|| BakeError::Input {
            path: path.clone(),
            problem: "not named NAME-VERSION-ARCH.raw".into(),
            fix: "rename it the bakery way, e.g. docker-28.0.4-x86-64.raw".into(),
        })?;
        if triple.arch != arch {
            return Err(BakeError::Input {
                path: path.clone(),
                problem: format!("is for {} but the disk is {arch}", triple.arch),
                fix: format!("give the {arch} image, or --arch {}", triple.arch),
            });
        }
        if out.iter().any(|e| e.name == triple.name) {
            return Err(BakeError::Input {
                path: path.clone(),
                problem: format!("a second image of extension {}", triple.name),
                fix: "give one version per extension: /etc/extensions/NAME.raw points at one"
                    .into(),
            });
        }
        let conf_name = format!("{}.conf", triple.name);
        let conf = confs
            .iter()
            .find(|c| {
                c.file_name()
                    .is_some_and(|n| n.to_string_lossy() == conf_name)
            })
            .cloned()
            .or_else(|| {
                let beside = path.with_file_name(&conf_name);
                beside.is_file().then_some(beside)
            });
        out.push(Extension {
            name: triple.name,
            image: path.clone(),
            file_name,
            conf,
        });
    }
    for c in confs {
        let stem = c
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !out.iter().any(|e| e.name == stem) {
            return Err(BakeError::Input {
                path: c.clone(),
                problem: "matches no image being baked".into(),
                fix: "name it NAME.conf after the extension it configures".into(),
            });
        }
    }
    Ok(out)
}

/// Copies `base` to `output` (through a temp name) with `exts` inside. `base` is never
/// written; `output` appears only when every file read back as written.
pub fn bake(
    base: &Path,
    exts: &[Extension],
    install_to: InstallTo,
    output: &Path,
    progress: &dyn Fn(&str),
) -> Result<Vec<Written>, BakeError> {
    if !base.is_file() {
        return Err(BakeError::Input {
            path: base.to_path_buf(),
            problem: "no such disk image".into(),
            fix: "give --base a whole-disk image (GPT), or omit it to use the cached guest".into(),
        });
    }
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".bake-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| BakeError::io(dir, e))?
        .into_temp_path();
    progress(&format!("copying {} (sparse)", base.display()));
    copy_disk(base, &tmp)?;
    let root = ext4_partition(&tmp, base, "ROOT")?;
    let (oem, oem_btrfs) = match install_to {
        InstallTo::Oem => match btrfs_partition(&tmp, base, "OEM")? {
            Some((part, identity)) => (Some(part), Some(identity)),
            None => (Some(ext4_partition(&tmp, base, "OEM")?), None),
        },
        InstallTo::Root => (None, None),
    };
    let mut written = Vec::new();
    let mut root_script = Script::default();
    let mut oem_script = Script::default();
    for e in exts {
        let (script, label, inside, seen) = match install_to {
            InstallTo::Root => (
                &mut root_script,
                "ROOT",
                format!("/opt/extensions/{}/{}", e.name, e.file_name),
                format!("/opt/extensions/{}/{}", e.name, e.file_name),
            ),
            InstallTo::Oem => (
                &mut oem_script,
                "OEM",
                format!("/extensions/{}/{}", e.name, e.file_name),
                format!("/oem/extensions/{}/{}", e.name, e.file_name),
            ),
        };
        script.file(&e.image, &inside, 0o644);
        written.push(Written {
            partition: label.into(),
            path: seen.clone(),
            what: "image".into(),
        });
        let link = format!("/etc/extensions/{}.raw", e.name);
        root_script.symlink(&link, &seen);
        written.push(Written {
            partition: "ROOT".into(),
            path: link,
            what: format!("symlink to {seen}"),
        });
        // The bakery's docs mask the Flatcar built-ins an image replaces.
        let masks = crate::guest::builtins::replaced_by_image(&e.image).map_err(|err| {
            BakeError::Input {
                path: e.image.clone(),
                problem: err.to_string(),
                fix: "give a squashfs or erofs extension image".into(),
            }
        })?;
        for b in masks {
            let mask = format!("/etc/extensions/{b}.raw");
            root_script.symlink(&mask, "/dev/null");
            written.push(Written {
                partition: "ROOT".into(),
                path: mask,
                what: format!("mask of the built-in {b} (symlink to /dev/null)"),
            });
        }
        if let Some(conf) = &e.conf {
            let at = format!("/etc/sysupdate.{n}.d/{n}.conf", n = e.name);
            root_script.file(conf, &at, 0o644);
            written.push(Written {
                partition: "ROOT".into(),
                path: at,
                what: format!("sysupdate config from {}", conf.display()),
            });
        }
    }
    if let (Some(part), Some((label, uuid))) = (&oem, &oem_btrfs) {
        progress(&format!(
            "remaking partition {} ({}, btrfs) with {} file(s) added",
            part.number,
            part.label,
            oem_script.checks.len()
        ));
        rewrite_btrfs(&tmp, part, label, uuid, &oem_script)?;
        oem_script = Script::default();
    }
    for (part, script) in [(Some(&root), &root_script), (oem.as_ref(), &oem_script)] {
        let Some(part) = part else { continue };
        if script.lines.is_empty() {
            continue;
        }
        progress(&format!(
            "writing {} file(s) into partition {} ({})",
            script.checks.len(),
            part.number,
            part.label
        ));
        run_debugfs(&tmp, part, script)?;
        verify(&tmp, part, script)?;
    }
    // A disk image as any other output (the temporary file was made 0600).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(crate::atomic::PUBLIC))
            .map_err(|e| BakeError::io(output, e))?;
    }
    tmp.persist(output)
        .map_err(|e| BakeError::io(output, e.error))?;
    Ok(written)
}

/// debugfs commands for one partition, and what to read back afterwards.
#[derive(Default)]
struct Script {
    lines: Vec<String>,
    dirs: Vec<String>,
    /// (path inside the partition, expected content: file digest or symlink target).
    checks: Vec<(String, Expect)>,
}

enum Expect {
    File(PathBuf),
    Link(String),
}

impl Script {
    fn parents(&mut self, path: &str) {
        let mut at = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            at.push('/');
            at.push_str(p);
            if !self.dirs.contains(&at) {
                self.dirs.push(at.clone());
                // Fails harmlessly when the directory exists; the read-back decides.
                self.lines.push(format!("mkdir {}", quoted(&at)));
                self.lines.push(format!("sif {} mode 040755", quoted(&at)));
            }
        }
    }

    fn file(&mut self, host: &Path, path: &str, mode: u32) {
        self.parents(path);
        self.lines.push(format!("rm {}", quoted(path)));
        self.lines.push(format!(
            "write {} {}",
            quoted(&host.display().to_string()),
            quoted(path)
        ));
        // debugfs gives the new inode the invoking user's ids.
        for field in ["uid 0", "gid 0"] {
            self.lines.push(format!("sif {} {field}", quoted(path)));
        }
        self.lines
            .push(format!("sif {} mode 0100{mode:o}", quoted(path)));
        self.checks
            .push((path.to_string(), Expect::File(host.to_path_buf())));
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.lines.push(format!("rm {}", quoted(path)));
        self.lines
            .push(format!("symlink {} {}", quoted(path), quoted(target)));
        self.checks
            .push((path.to_string(), Expect::Link(target.to_string())));
    }
}

/// debugfs's command parser splits on blanks and honours double quotes.
fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// `debugfs` addresses a filesystem inside a disk as `FILE?offset=BYTES`.
fn device(disk: &Path, part: &Partition) -> String {
    format!("{}?offset={}", disk.display(), part.offset())
}

fn run_debugfs(disk: &Path, part: &Partition, script: &Script) -> Result<(), BakeError> {
    let mut cmd_file =
        tempfile::NamedTempFile::new().map_err(|e| BakeError::io(Path::new("/tmp"), e))?;
    std::io::Write::write_all(&mut cmd_file, (script.lines.join("\n") + "\n").as_bytes())
        .map_err(|e| BakeError::io(cmd_file.path(), e))?;
    host_tool::output(
        Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(cmd_file.path())
            .arg(device(disk, part)),
        "e2fsprogs",
    )?;
    Ok(())
}

/// Reads every written path back out of the partition: a file must hash like its source,
/// a symlink must point where it should. debugfs keeps going past errors, so this, not its
/// exit status, says whether the bake worked.
fn verify(disk: &Path, part: &Partition, script: &Script) -> Result<(), BakeError> {
    let scratch = tempfile::tempdir().map_err(|e| BakeError::io(Path::new("/tmp"), e))?;
    for (i, (path, expect)) in script.checks.iter().enumerate() {
        match expect {
            Expect::File(host) => {
                let out = scratch.path().join(i.to_string());
                let r = host_tool::output_any_status(
                    Command::new("debugfs")
                        .arg("-R")
                        .arg(format!(
                            "dump {} {}",
                            quoted(path),
                            quoted(&out.display().to_string())
                        ))
                        .arg(device(disk, part)),
                    "e2fsprogs",
                )?;
                let same = out.is_file() && digest(&out)? == digest(host)?;
                if !same {
                    return Err(BakeError::Write {
                        partition: part.label.clone(),
                        path: path.clone(),
                        detail: last_lines(&r.stderr),
                    });
                }
            }
            Expect::Link(target) => {
                let r = host_tool::output_any_status(
                    Command::new("debugfs")
                        .arg("-R")
                        .arg(format!("stat {}", quoted(path)))
                        .arg(device(disk, part)),
                    "e2fsprogs",
                )?;
                let stat = String::from_utf8_lossy(&r.stdout).into_owned();
                // A target under 60 bytes lives in the inode ("Fast link dest"); a longer
                // one in a data block, which `cat` of the link's own inode prints.
                let linked = if stat.contains(&format!("Fast link dest: \"{target}\"")) {
                    true
                } else {
                    let c = host_tool::output_any_status(
                        Command::new("debugfs")
                            .arg("-R")
                            .arg(format!("cat {}", quoted(path)))
                            .arg(device(disk, part)),
                        "e2fsprogs",
                    )?;
                    c.stdout == target.as_bytes()
                };
                if !stat.contains("Type: symlink") || !linked {
                    return Err(BakeError::Write {
                        partition: part.label.clone(),
                        path: path.clone(),
                        detail: format!(
                            "expected a symlink to {target}; {}",
                            last_lines(&r.stderr)
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

fn digest(path: &Path) -> Result<[u8; 32], BakeError> {
    let mut f = std::fs::File::open(path).map_err(|e| BakeError::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| BakeError::io(path, e))?;
    Ok(h.finalize().into())
}

/// A raw copy of `base` at `dest`, holes kept; a qcow2 base is converted to raw.
fn copy_disk(base: &Path, dest: &Path) -> Result<(), BakeError> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(base).map_err(|e| BakeError::io(base, e))?;
    let _ = f.read(&mut magic).map_err(|e| BakeError::io(base, e))?;
    let mut cmd = if &magic == b"QFI\xfb" {
        let mut c = Command::new("qemu-img");
        c.args(["convert", "-O", "raw"]).arg(base).arg(dest);
        (c, "qemu-utils")
    } else {
        let mut c = Command::new("cp");
        c.arg("--sparse=always").arg(base).arg(dest);
        (c, "coreutils")
    };
    host_tool::output(&mut cmd.0, cmd.1)?;
    Ok(())
}

/// A btrfs filesystem's label and UUID.
type BtrfsIdentity = (String, String);

/// The partition labelled `label` with its btrfs label and UUID, when it holds btrfs.
fn btrfs_partition(
    disk: &Path,
    shown_as: &Path,
    label: &str,
) -> Result<Option<(Partition, BtrfsIdentity)>, BakeError> {
    let part = gpt::find(disk, label).map_err(|e| BakeError::Input {
        path: shown_as.to_path_buf(),
        problem: e.to_string().split_once(": ").map(|(_, p)| p.to_string()).unwrap_or_default(),
        fix: "give a Flatcar disk image (flatcar_production_image.bin, the qemu_uefi image) or the Flatcar guest's disk".into(),
    })?;
    let f = std::fs::File::open(disk).map_err(|e| BakeError::io(disk, e))?;
    let identity = crate::btrfs::identity(&f, part.offset()).map_err(|e| BakeError::io(disk, e))?;
    Ok(identity.map(|id| (part, id)))
}

/// Puts `script`'s files and links into the btrfs in `part`: its content read back into a
/// tree, the files added, the filesystem made again from the tree with the same label and
/// UUID (what mounts it by either still finds it), written over the partition, and read
/// back once more to compare every file.
fn rewrite_btrfs(
    disk: &Path,
    part: &Partition,
    label: &str,
    uuid: &str,
    script: &Script,
) -> Result<(), BakeError> {
    let work = tempfile::Builder::new()
        .prefix(".bake-btrfs-")
        .tempdir_in(
            disk.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .map_err(|e| BakeError::io(disk, e))?;
    let work_dir = work.path();
    let result = (|| -> Result<(), BakeError> {
        let work = work_dir;
        let old = work.join("old.img");
        crate::partition_image::extract(disk, part, &old).map_err(|e| BakeError::io(disk, e))?;
        let tree = work.join("tree");
        crate::btrfs::read_back(&old, &tree).map_err(|e| built(e, disk))?;
        std::fs::remove_file(&old).map_err(|e| BakeError::io(&old, e))?;
        let inside = |path: &str| tree.join(path.trim_start_matches('/'));
        for (path, expect) in &script.checks {
            let dest = inside(path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| BakeError::io(parent, e))?;
            }
            let _ = std::fs::remove_file(&dest);
            match expect {
                Expect::File(host) => {
                    std::fs::copy(host, &dest).map_err(|e| BakeError::io(&dest, e))?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644))
                        .map_err(|e| BakeError::io(&dest, e))?;
                }
                Expect::Link(target) => std::os::unix::fs::symlink(target, &dest)
                    .map_err(|e| BakeError::io(&dest, e))?,
            }
        }
        let new = work.join("new.img");
        crate::btrfs::make(
            &tree,
            &crate::btrfs::Filesystem {
                label,
                uuid: Some(uuid),
                bytes: part.size(),
            },
            &new,
        )
        .map_err(|e| built(e, disk))?;
        crate::partition_image::write(disk, part, &new, crate::partition_image::Underneath::Data)
            .map_err(|e| BakeError::io(disk, e))?;
        let check = work.join("check");
        let again = work.join("again.img");
        crate::partition_image::extract(disk, part, &again).map_err(|e| BakeError::io(disk, e))?;
        crate::btrfs::read_back(&again, &check).map_err(|e| built(e, disk))?;
        for (path, expect) in &script.checks {
            let got = check.join(path.trim_start_matches('/'));
            let ok = match expect {
                Expect::File(host) => digest(&got).ok() == Some(digest(host)?),
                Expect::Link(target) => {
                    std::fs::read_link(&got).ok().as_deref() == Some(Path::new(target))
                }
            };
            if !ok {
                return Err(BakeError::Write {
                    partition: format!("partition {} ({})", part.number, part.label),
                    path: path.clone(),
                    detail: "btrfs restore gave other bytes".into(),
                });
            }
        }
        Ok(())
    })();
    // What `btrfs restore` read back may be a subordinate id's (crate::userns), which the
    // temporary directory's own cleanup cannot remove.
    let _ = crate::userns::remove_tree(work.path());
    result
}

/// A btrfs tool's failure as bake's: the tool's own words, or the file it could not use.
fn built(e: crate::errors::BuildError, disk: &Path) -> BakeError {
    match e {
        crate::errors::BuildError::Tool(t) => BakeError::Tool(t),
        crate::errors::BuildError::Io { path, source } => BakeError::Io { path, source },
        other => BakeError::io(disk, std::io::Error::other(other.to_string())),
    }
}

/// The partition labelled `label`, which must hold ext4 (what debugfs writes).
fn ext4_partition(disk: &Path, shown_as: &Path, label: &str) -> Result<Partition, BakeError> {
    let part = gpt::find(disk, label).map_err(|e| BakeError::Input {
        path: shown_as.to_path_buf(),
        problem: e.to_string().split_once(": ").map(|(_, p)| p.to_string()).unwrap_or_default(),
        fix: "give a Flatcar disk image (flatcar_production_image.bin, the qemu_uefi image) or the Flatcar guest's disk".into(),
    })?;
    let mut f = std::fs::File::open(disk).map_err(|e| BakeError::io(disk, e))?;
    let mut probe = [0u8; 8];
    let mut at = |off: u64, buf: &mut [u8]| -> std::io::Result<()> {
        f.seek(SeekFrom::Start(part.offset() + off))?;
        f.read_exact(buf)
    };
    at(0x10040, &mut probe).map_err(|e| BakeError::io(disk, e))?;
    if &probe == b"_BHRfS_M" {
        return Err(BakeError::Input {
            path: shown_as.to_path_buf(),
            problem: format!(
                "partition {} ({label}) is btrfs; bake writes btrfs only to OEM",
                part.number
            ),
            fix: "use --install-to root (ROOT is ext4) or --install-to oem".into(),
        });
    }
    let mut magic = [0u8; 2];
    at(1024 + 56, &mut magic).map_err(|e| BakeError::io(disk, e))?;
    if magic != [0x53, 0xEF] {
        return Err(BakeError::Input {
            path: shown_as.to_path_buf(),
            problem: format!(
                "partition {} ({label}) holds no ext4 filesystem",
                part.number
            ),
            fix: "give a disk whose ROOT (and OEM, for --install-to oem) partition is ext4".into(),
        });
    }
    Ok(part)
}
