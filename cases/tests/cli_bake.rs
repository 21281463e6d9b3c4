//! `sysext-test bake` as an extension author runs it: as an ordinary user (uid 65534 through
//! `setpriv`), on a GPT disk it may not modify, with no root, loop device or mount. The
//! result is read back with debugfs (an independent reader) and the base is compared byte
//! for byte; bad input is one line naming the file and the fix, exit 2, and no output.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use sysext_builder::gpt::{self, Planned, types};

const NOBODY: &str = "65534";

/// A scratch directory nobody can write, with a copy of the binary it can run (the build's
/// target directory may sit under root's home).
struct Scratch {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let bin = dir.path().join("sysext-test");
        std::fs::copy(env!("CARGO_BIN_EXE_sysext-test"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { dir, bin }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes `path` readable (and, for directories, writable) by nobody.
    fn share(&self, path: &Path) {
        let mode = if path.is_dir() { 0o777 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `sysext-test ARGS` as uid/gid 65534, with a home and cache of its own.
    fn bake_as_nobody(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
            .arg(&self.bin)
            .arg("bake")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", self.dir.path())
            .env("SYSEXT_TEST_CACHE", self.path("cache"))
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// A tiny Flatcar-like disk: GPT with an empty OEM and an ext4 ROOT holding /etc.
    fn disk(&self) -> PathBuf {
        let disk = self.path("base.img");
        let tree = self.path("root-tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), "base\n").unwrap();
        let plan = [
            Planned {
                number: 1,
                label: "EFI-SYSTEM",
                type_guid: types::EFI_SYSTEM,
                mib: 1,
                attributes: 0,
            },
            Planned {
                number: 6,
                label: "OEM",
                type_guid: types::LINUX_DATA,
                mib: 8,
                attributes: 0,
            },
            Planned {
                number: 9,
                label: "ROOT",
                type_guid: types::COREOS_RESIZE,
                mib: 16,
                attributes: 0,
            },
        ];
        let parts = gpt::write(&disk, &plan, "cli-bake").unwrap();
        for p in parts.iter().filter(|p| p.number != 1) {
            let mut c = Command::new("mke2fs");
            c.args(["-q", "-F", "-t", "ext4", "-L", &p.label, "-E"])
                .arg(format!("offset={},root_owner=0:0", p.offset()));
            if p.label == "ROOT" {
                c.arg("-d").arg(&tree);
            }
            let ok = c
                .arg(&disk)
                .arg(format!("{}k", p.size() / 1024))
                .status()
                .unwrap();
            assert!(ok.success());
        }
        self.share(&disk);
        disk
    }

    fn disk_flatcar(&self) -> PathBuf {
        flatcar_format_disk(self)
    }

    /// A bakery-named extension image with its sysupdate config beside it.
    fn extension(&self, arch: &str) -> PathBuf {
        let spec = self.path("hello.toml");
        std::fs::write(
            &spec,
            "name = \"hello\"\nversion = \"1.2.3\"\n[[file]]\npath = \"/usr/share/hello/data\"\ntext = \"hi\"\n",
        )
        .unwrap();
        let out = self.path("release");
        let built = Command::new(&self.bin)
            .args(["build", "--arch", arch, "-o"])
            .arg(&out)
            .arg(&spec)
            .output()
            .unwrap();
        assert!(built.status.success(), "{built:?}");
        for e in std::fs::read_dir(&out).unwrap() {
            self.share(&e.unwrap().path());
        }
        self.share(&out);
        out.join(format!("hello-1.2.3-{arch}.raw"))
    }
}

fn digest(p: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

/// debugfs's view of `path` inside the partition labelled `label` of `disk`, as text.
fn debugfs(disk: &Path, label: &str, request: &str) -> String {
    String::from_utf8_lossy(&debugfs_bytes(disk, label, request)).into_owned()
}

/// A symlink's target as debugfs shows it: in the inode ("Fast link dest") when short, else
/// the link's data block.
fn link_target(disk: &Path, label: &str, path: &str) -> String {
    let stat = debugfs(disk, label, &format!("stat {path}"));
    assert!(stat.contains("Type: symlink"), "{path}: {stat}");
    match stat.split_once("Fast link dest: \"") {
        Some((_, rest)) => rest.split('"').next().unwrap_or_default().to_string(),
        None => debugfs(disk, label, &format!("cat {path}")),
    }
}

fn debugfs_bytes(disk: &Path, label: &str, request: &str) -> Vec<u8> {
    let part = gpt::find(disk, label).unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(format!("{}?offset={}", disk.display(), part.offset()))
        .output()
        .unwrap();
    out.stdout
}

#[test]
fn nobody_bakes_the_sysupdate_layout_into_root_and_the_base_is_untouched() {
    let s = Scratch::new();
    let disk = s.disk();
    let before = digest(&disk);
    let image = s.extension("x86-64");
    let out = s.path("baked.img");
    let r = s.bake_as_nobody(&[
        "--base",
        disk.to_str().unwrap(),
        "--format",
        "json",
        "-o",
        out.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["written"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(digest(&disk), before, "the base disk was modified");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o644,
            "the baked disk is {mode:o}, not readable as an output"
        );
    }

    let installed = "/opt/extensions/hello/hello-1.2.3-x86-64.raw";
    assert_eq!(
        debugfs_bytes(&out, "ROOT", &format!("cat {installed}")),
        std::fs::read(&image).unwrap(),
        "the image inside ROOT differs from the one baked"
    );
    let stat = debugfs(&out, "ROOT", &format!("stat {installed}"));
    assert!(
        stat.contains("User:     0") && stat.contains("Group:     0"),
        "{stat}"
    );
    assert_eq!(
        link_target(&out, "ROOT", "/etc/extensions/hello.raw"),
        installed,
        "the symlink names the installed image"
    );
    let conf = debugfs(&out, "ROOT", "cat /etc/sysupdate.hello.d/hello.conf");
    assert!(conf.contains("[Transfer]"), "{conf}");
    assert_eq!(
        debugfs(&out, "ROOT", "cat /etc/hostname"),
        "base\n",
        "the base's own files survive"
    );
    let fsck = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dd if={} bs=1M skip={} count=16 status=none of={}/root.part && e2fsck -fn {}/root.part",
            out.display(),
            gpt::find(&out, "ROOT").unwrap().offset() / (1024 * 1024),
            s.dir.path().display(),
            s.dir.path().display()
        ))
        .output()
        .unwrap();
    assert!(fsck.status.success(), "e2fsck: {fsck:?}");
}

#[test]
fn install_to_oem_puts_the_image_on_oem_and_the_link_on_root() {
    let s = Scratch::new();
    let disk = s.disk();
    let image = s.extension("x86-64");
    let out = s.path("baked.img");
    let r = s.bake_as_nobody(&[
        "--base",
        disk.to_str().unwrap(),
        "--install-to",
        "oem",
        "-o",
        out.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        debugfs_bytes(&out, "OEM", "cat /extensions/hello/hello-1.2.3-x86-64.raw"),
        std::fs::read(&image).unwrap()
    );
    assert_eq!(
        link_target(&out, "ROOT", "/etc/extensions/hello.raw"),
        "/oem/extensions/hello/hello-1.2.3-x86-64.raw"
    );
}

/// The bytes of partition `label` of `disk`, hashed.
fn partition_digest(disk: &Path, label: &str) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let part = gpt::find(disk, label).unwrap();
    let mut buf = vec![0u8; part.size() as usize];
    std::fs::File::open(disk)
        .unwrap()
        .read_exact_at(&mut buf, part.offset())
        .unwrap();
    Sha256::digest(&buf).to_vec()
}

/// Flatcar's shape of the same: USR-A (filled with bytes that must never change), OEM
/// btrfs with Flatcar's `oem-release`, ROOT ext4.
fn flatcar_format_disk(s: &Scratch) -> PathBuf {
    let disk = s.path("flatcar.img");
    let plan = [
        Planned {
            number: 3,
            label: "USR-A",
            type_guid: types::COREOS_USR,
            mib: 4,
            attributes: sysext_builder::guest::USR_A_ATTRIBUTES,
        },
        Planned {
            number: 6,
            label: "OEM",
            type_guid: types::LINUX_DATA,
            mib: 128,
            attributes: 0,
        },
        Planned {
            number: 9,
            label: "ROOT",
            type_guid: types::COREOS_RESIZE,
            mib: 16,
            attributes: 0,
        },
    ];
    let parts = gpt::write(&disk, &plan, "cli-bake-btrfs").unwrap();
    let usr = parts.iter().find(|p| p.label == "USR-A").unwrap();
    let noise: Vec<u8> = (0..usr.size()).map(|i| (i * 7 % 251) as u8).collect();
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .write_all_at(&noise, usr.offset())
        .unwrap();
    let oem_tree = s.path("oem-tree");
    std::fs::create_dir_all(&oem_tree).unwrap();
    std::fs::write(oem_tree.join("oem-release"), "ID=qemu\n").unwrap();
    let oem = parts.iter().find(|p| p.label == "OEM").unwrap();
    let oem_img = s.path("oem.img");
    sysext_builder::btrfs::make(
        &oem_tree,
        &sysext_builder::btrfs::Filesystem {
            label: "OEM",
            uuid: Some("0b7e8f1c-1d2e-4f3a-8b4c-5d6e7f809a1b"),
            bytes: oem.size(),
        },
        &oem_img,
    )
    .unwrap();
    sysext_builder::partition_image::write(
        &disk,
        oem,
        &oem_img,
        sysext_builder::partition_image::Underneath::Zeros,
    )
    .unwrap();
    let root = parts.iter().find(|p| p.label == "ROOT").unwrap();
    let tree = s.path("root-tree-flatcar");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    let ok = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "ROOT", "-E"])
        .arg(format!("offset={},root_owner=0:0", root.offset()))
        .arg("-d")
        .arg(&tree)
        .arg(&disk)
        .arg(format!("{}k", root.size() / 1024))
        .status()
        .unwrap();
    assert!(ok.success());
    s.share(&disk);
    disk
}

/// The files of the btrfs in partition `label` of `disk`, read back with `btrfs restore`.
fn btrfs_tree(disk: &Path, label: &str, into: &Path) -> (String, String) {
    let part = gpt::find(disk, label).unwrap();
    let img = into.with_extension("img");
    sysext_builder::partition_image::extract(disk, &part, &img).unwrap();
    sysext_builder::btrfs::read_back(&img, into).unwrap();
    let f = std::fs::File::open(&img).unwrap();
    sysext_builder::btrfs::identity(&f, 0)
        .unwrap()
        .expect("still btrfs")
}

#[test]
fn nobody_bakes_into_a_btrfs_oem_which_keeps_its_label_uuid_and_files_and_usr_is_untouched() {
    let s = Scratch::new();
    let disk = s.disk_flatcar();
    let usr_before = partition_digest(&disk, "USR-A");
    let image = s.extension("x86-64");
    let out = s.path("baked.img");
    let r = s.bake_as_nobody(&[
        "--base",
        disk.to_str().unwrap(),
        "--install-to",
        "oem",
        "-o",
        out.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(partition_digest(&out, "USR-A"), usr_before, "USR-A changed");
    let tree = s.path("oem-after");
    let (label, uuid) = btrfs_tree(&out, "OEM", &tree);
    assert_eq!(label, "OEM");
    assert_eq!(uuid, "0b7e8f1c-1d2e-4f3a-8b4c-5d6e7f809a1b");
    assert_eq!(
        std::fs::read(tree.join("extensions/hello/hello-1.2.3-x86-64.raw")).unwrap(),
        std::fs::read(&image).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("oem-release")).unwrap(),
        "ID=qemu\n",
        "what the OEM partition had is kept"
    );
    assert_eq!(
        link_target(&out, "ROOT", "/etc/extensions/hello.raw"),
        "/oem/extensions/hello/hello-1.2.3-x86-64.raw"
    );
    assert_eq!(
        partition_digest(&disk, "USR-A"),
        usr_before,
        "the base changed"
    );
}

#[test]
fn an_image_for_the_other_arch_is_refused_in_one_line_and_nothing_is_written() {
    let s = Scratch::new();
    let disk = s.disk();
    let image = s.extension("arm64");
    let out = s.path("baked.img");
    let r = s.bake_as_nobody(&[
        "--arch",
        "x86-64",
        "--base",
        disk.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("hello-1.2.3-arm64.raw") && err.contains("--arch arm64"),
        "{err}"
    );
    assert!(!out.exists());
}

/// Every name in the scratch folder: a bake that fails must leave it as it found it.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_disk_without_a_root_partition_names_its_labels() {
    let s = Scratch::new();
    let image = s.extension("x86-64");
    let disk = s.path("plain.img");
    gpt::write(
        &disk,
        &[Planned {
            number: 1,
            label: "DATA",
            type_guid: types::LINUX_DATA,
            mib: 1,
            attributes: 0,
        }],
        "x",
    )
    .unwrap();
    s.share(&disk);
    let out = s.path("baked.img");
    let before = listing(s.dir.path());
    let r = s.bake_as_nobody(&[
        "--base",
        disk.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    // This refusal comes after the temp copy of the disk exists (the partition table is
    // read from the copy): nothing of it may stay.
    assert_eq!(
        listing(s.dir.path()),
        before,
        "a failed bake left files behind"
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("plain.img")
            && err.contains("no partition labelled ROOT")
            && err.contains("1=DATA"),
        "{err}"
    );
    assert!(!out.exists());
}

/// The whole path as a user takes it: bake as nobody into a copy of the flatcar
/// guest's disk, then boot what came out and find the extension merged.
mod vm {
    use super::*;
    use sysext_builder::Arch;
    use sysext_builder::guest::{self, Guest, Profile};

    /// The flatcar guest's disk copied where nobody can read it, `hello` baked into it as
    /// nobody with `extra` arguments (USR-A must come out as it went in): the guest to boot.
    fn baked_guest(s: &Scratch, extra: &[&str]) -> Guest {
        let recipe = guest::Recipe::new(Profile::Flatcar, Arch::X86_64);
        let base = guest::build_or_reuse(&recipe, &|l| eprintln!("{l}")).unwrap();
        let disk = s.path("guest.img");
        let cp = Command::new("cp")
            .arg("--sparse=always")
            .arg(&base.disk)
            .arg(&disk)
            .status()
            .unwrap();
        assert!(cp.success());
        s.share(&disk);
        let usr_before = partition_digest(&disk, "USR-A");
        let image = s.extension("x86-64");
        let out = s.path("baked.img");
        let mut args = vec![
            "--base",
            disk.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(image.to_str().unwrap());
        let r = s.bake_as_nobody(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_eq!(partition_digest(&out, "USR-A"), usr_before, "USR-A changed");
        Guest { disk: out, ..base }
    }

    #[test]
    fn baked_by_nobody_boots_with_the_extension_merged() {
        let s = Scratch::new();
        let baked = baked_guest(&s, &[]);
        let vm = sysext_harness::Vm::boot(&baked).unwrap();
        let outs = vm
            .batch(&[
                "systemd-sysext status --json=short",
                "cat /usr/share/hello/data",
                "readlink /etc/extensions/hello.raw",
            ])
            .unwrap();
        assert!(
            outs[0].stdout.contains("\"hello\""),
            "not merged at boot: {}",
            outs[0].stdout
        );
        assert_eq!(outs[1].stdout, "hi");
        assert_eq!(
            outs[2].stdout.trim(),
            "/opt/extensions/hello/hello-1.2.3-x86-64.raw"
        );
    }

    #[test]
    fn baked_into_the_btrfs_oem_boots_with_the_extension_merged_and_usr_a_unchanged() {
        let s = Scratch::new();
        let baked = baked_guest(&s, &["--install-to", "oem"]);
        let vm = sysext_harness::Vm::boot_with(&baked, &Default::default()).unwrap();
        let outs = vm
            .batch(&[
                "systemd-sysext status --json=short",
                "cat /usr/share/hello/data",
                "findmnt -n -o FSTYPE,SOURCE /oem",
                "findmnt -n -o SOURCE /usr",
            ])
            .unwrap();
        assert!(
            outs[0].stdout.contains("\"hello\""),
            "not merged at boot: {}",
            outs[0].stdout
        );
        assert_eq!(outs[1].stdout, "hi");
        assert!(outs[2].stdout.starts_with("btrfs "), "{}", outs[2].stdout);
        assert!(
            outs[3]
                .stdout
                .lines()
                .any(|l| l.trim() == "/dev/mapper/usr"),
            "/usr is not the verity device: {}",
            outs[3].stdout
        );
    }
}
