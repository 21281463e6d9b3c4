//! One good and one bad image per rule, as rstest tables.
//!
//! Images are real: squashfs written by the builder and read back through backhand, or
//! directory trees where a case needs what our squashfs writer cannot make (xattrs, device
//! nodes, foreign owners).

use crate::lint::TargetSpec;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rstest::rstest;
use sysext_builder::Arch;
use sysext_builder::layout::{Content, Layout, Node};
use sysext_builder::spec::Compression;

use super::{Finding, Linter, Options, Severity, TargetKind};

/// An image to lint, described by what is in it.
#[derive(Clone)]
struct Fx {
    file: String,
    /// Written as a directory image instead of squashfs.
    dir: bool,
    release: Option<(String, String)>,
    items: Vec<Item>,
    opts: Options,
}

#[derive(Clone)]
enum Item {
    File(&'static str, Vec<u8>, u16),
    Link(&'static str, &'static str),
    Fifo(&'static str),
    Whiteout(&'static str),
    Xattr(&'static str, &'static str),
    Owner(&'static str, u32),
}

const ANY: &str = "ID=_any\nARCHITECTURE=x86-64\n";

impl Fx {
    /// A squashfs image file with a matching release file and one payload file.
    fn raw(file: &str) -> Fx {
        let name = super::rules::naming::triple(file, &[])
            .map(|t| t.name)
            .unwrap_or_else(|| super::rules::naming::image_name(file, false));
        Fx {
            file: file.into(),
            dir: false,
            release: Some((name, ANY.into())),
            items: vec![Item::File(
                "usr/share/fx/data",
                b"payload\n".to_vec(),
                0o644,
            )],
            opts: Options::default(),
        }
    }
    fn dir(name: &str) -> Fx {
        Fx {
            dir: true,
            ..Fx::raw(&format!("{name}.raw"))
        }
        .named(name)
    }
    fn named(mut self, file: &str) -> Fx {
        self.file = file.into();
        self
    }
    fn release(mut self, text: &str) -> Fx {
        let name = self
            .release
            .as_ref()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        self.release = Some((name, text.into()));
        self
    }
    fn release_name(mut self, name: &str) -> Fx {
        let text = self
            .release
            .as_ref()
            .map(|r| r.1.clone())
            .unwrap_or_else(|| ANY.into());
        self.release = Some((name.into(), text));
        self
    }
    fn no_release(mut self) -> Fx {
        self.release = None;
        self
    }
    fn with(mut self, item: Item) -> Fx {
        self.items.push(item);
        self
    }
    fn file(self, path: &'static str, text: &str) -> Fx {
        self.with(Item::File(path, text.as_bytes().to_vec(), 0o644))
    }
    fn target(mut self, t: TargetKind) -> Fx {
        self.opts.target = TargetSpec {
            kind: t,
            version: None,
        };
        self
    }
    /// A target named as a user names it: `flatcar:3815.2.0`, `generic`.
    fn target_spec(mut self, spec: &str) -> Fx {
        self.opts.target = spec.parse().expect("a valid target spec");
        self
    }
    fn systemd(mut self, major: u32) -> Fx {
        self.opts.systemd = Some(major);
        self
    }
    fn arch(mut self, a: Arch) -> Fx {
        self.opts.arch = Some(a);
        self
    }
    fn no_payload(mut self) -> Fx {
        self.items
            .retain(|i| !matches!(i, Item::File("usr/share/fx/data", _, _)));
        self
    }

    /// Writes the image under `dir` and returns its path.
    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(&self.file);
        let release_path = |n: &str| format!("usr/lib/extension-release.d/extension-release.{n}");
        if self.dir {
            std::fs::create_dir_all(&path).unwrap();
            let put = |rel: &str, bytes: &[u8], mode: u16| {
                let p = path.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode.into())).unwrap();
            };
            if let Some((n, text)) = &self.release {
                put(&release_path(n), text.as_bytes(), 0o644);
            }
            for item in &self.items {
                match item {
                    Item::File(p, b, m) => put(p, b, *m),
                    Item::Link(p, t) => {
                        let p = path.join(p);
                        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                        std::os::unix::fs::symlink(t, p).unwrap();
                    }
                    Item::Fifo(p) => run("mkfifo", &[path.join(p).to_str().unwrap()]),
                    Item::Whiteout(p) => {
                        run("mknod", &[path.join(p).to_str().unwrap(), "c", "0", "0"])
                    }
                    Item::Xattr(name, value) => {
                        let (n, _) = self.release.as_ref().unwrap();
                        xattr::set(path.join(release_path(n)), name, value.as_bytes()).unwrap();
                    }
                    Item::Owner(p, uid) => {
                        std::os::unix::fs::lchown(path.join(p), Some(*uid), Some(*uid)).unwrap()
                    }
                }
            }
        } else {
            let mut l = Layout::default();
            if let Some((n, text)) = &self.release {
                l.insert(
                    &release_path(n),
                    Node::File {
                        content: Content::Inline(text.as_bytes().to_vec()),
                        mode: 0o644,
                    },
                )
                .unwrap();
            }
            for item in &self.items {
                match item {
                    Item::File(p, b, m) => l
                        .insert(
                            p,
                            Node::File {
                                content: Content::Inline(b.clone()),
                                mode: *m,
                            },
                        )
                        .unwrap(),
                    Item::Link(p, t) => l
                        .insert(
                            p,
                            Node::Symlink {
                                target: t.to_string(),
                            },
                        )
                        .unwrap(),
                    _ => panic!("squashfs fixtures cannot hold this item; use Fx::dir"),
                }
            }
            sysext_builder::write_squashfs::write(&l, Compression::Gzip, 0, &path).unwrap();
        }
        path
    }

    fn lint(&self) -> Vec<Finding> {
        let tmp = tempfile::tempdir().unwrap();
        let path = self.write(tmp.path());
        let linter = Linter::new(self.opts.clone());
        let reports = linter.lint_path(&path).unwrap();
        reports.into_iter().flat_map(|r| r.findings).collect()
    }
}

fn run(cmd: &str, args: &[&str]) {
    let st = std::process::Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}");
}

/// `/bin/true` from the host, patched: the bytes of one string replaced by another of the
/// same length, to make a real ELF with a broken loader or library reference.
fn host_true(from: &str, to: &str) -> Vec<u8> {
    let mut b = std::fs::read("/bin/true").expect("/bin/true");
    assert_eq!(from.len(), to.len());
    if from.is_empty() {
        return b;
    }
    let mut i = 0;
    while let Some(pos) = b[i..]
        .windows(from.len())
        .position(|w| w == from.as_bytes())
    {
        b[i + pos..i + pos + from.len()].copy_from_slice(to.as_bytes());
        i += pos + from.len();
    }
    b
}

fn unit(flag: bool) -> &'static str {
    if flag {
        "ID=_any\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n"
    } else {
        ANY
    }
}

fn svc(exec: &str) -> String {
    format!("[Unit]\nDescription=t\n\n[Service]\nExecStart={exec}\n")
}

#[rstest]
// naming
#[case::naming_not_raw("naming/not-raw", Fx::raw("x.img"), Fx::raw("x.raw"))]
#[case::naming_invalid_image_name(
    "naming/invalid-image-name",
    Fx::raw(".#x.raw"),
    Fx::raw("x.raw")
)]
#[case::naming_not_bakery_style(
    "naming/not-bakery-style",
    Fx::raw("x.raw"),
    Fx::raw("x-1-x86-64.raw")
)]
#[case::naming_install_via_symlink(
    "naming/install-via-symlink",
    Fx::raw("x-1-x86-64.raw"),
    Fx::raw("x.raw")
)]
#[case::naming_arch_mismatch(
    "naming/arch-mismatch",
    Fx::raw("x-1-arm64.raw"),
    Fx::raw("x-1-x86-64.raw")
)]
#[case::naming_version_invisible_to_sysupdate(
    "naming/version-invisible-to-sysupdate",
    Fx::raw("x-2.0~rc1-x86-64.raw"),
    Fx::raw("x-2.0.rc1-x86-64.raw")
)]
#[case::naming_version_has_dash("naming/version-has-dash", Fx::raw("x-1.0-rc1-x86-64.raw").release_name("x"), Fx::raw("x-1.0.rc1-x86-64.raw"))]
#[case::naming_version_order_disagrees("naming/version-order-disagrees", Fx::raw("x-1.0.0-rc1-x86-64.raw").release_name("x"), Fx::raw("x-1.0.0-x86-64.raw"))]
// version-gated: ID=_any and ARCHITECTURE= on a systemd that predates them
#[case::match_keys_need_systemd_252("match/keys-need-systemd-252", Fx::raw("x.raw").target_spec("generic").systemd(251), Fx::raw("x.raw").target_spec("generic").systemd(252))]
// release file
#[case::release_missing("release/missing", Fx::raw("x.raw").no_release(), Fx::raw("x.raw"))]
#[case::release_confext_only("release/confext-only", Fx::raw("x.raw").no_release().file("etc/extension-release.d/extension-release.x", "ID=_any\n"), Fx::raw("x.raw"))]
#[case::release_name_mismatch("release/name-mismatch", Fx::raw("x.raw").release_name("y"), Fx::raw("x.raw"))]
#[case::release_ambiguous("release/ambiguous", Fx::dir("a_1").release_name("b").with(Item::Xattr("user.extension-release.strict", "0")).file("usr/lib/extension-release.d/extension-release.a", ANY), Fx::dir("a_1").release_name("a"))]
#[case::release_prefix_fallback("release/prefix-fallback", Fx::raw("a_1.raw").release_name("a"), Fx::raw("a.raw"))]
#[case::release_strict_xattr_fallback("release/strict-xattr-fallback", Fx::dir("renamed").release_name("other").with(Item::Xattr("user.extension-release.strict", "0")), Fx::dir("other"))]
#[case::release_strict_xattr_value("release/strict-xattr-value", Fx::dir("renamed").release_name("other").with(Item::Xattr("user.extension-release.strict", "false")), Fx::dir("renamed").release_name("other").with(Item::Xattr("user.extension-release.strict", "0")))]
#[case::release_not_regular_file("release/not-regular-file", Fx::raw("x.raw").no_release().with(Item::Link("usr/lib/extension-release.d/extension-release.x", "nowhere")), Fx::raw("x.raw"))]
#[case::release_syntax("release/syntax", Fx::raw("x.raw").release("ID=_any\nthis is not an assignment\n"), Fx::raw("x.raw"))]
#[case::release_field_format("release/field-format", Fx::raw("x.raw").release("ID=Flatcar\nSYSEXT_LEVEL=1.0\n"), Fx::raw("x.raw").release("ID=flatcar\nSYSEXT_LEVEL=1.0\n"))]
#[case::release_image_id("release/image-id", Fx::raw("x.raw").release("ID=_any\nIMAGE_ID=x\n"), Fx::raw("x.raw").release("ID=_any\nSYSEXT_IMAGE_ID=x\n"))]
#[case::release_reload_manager_value("release/reload-manager-value", Fx::raw("x.raw").release("ID=_any\nEXTENSION_RELOAD_MANAGER=maybe\n"), Fx::raw("x.raw").release("ID=_any\nEXTENSION_RELOAD_MANAGER=1\n"))]
// matching
#[case::match_no_release_data("match/no-release-data", Fx::raw("x.raw").release(""), Fx::raw("x.raw"))]
#[case::match_scope("match/scope", Fx::raw("x.raw").release("ID=_any\nSYSEXT_SCOPE=initrd\n"), Fx::raw("x.raw").release("ID=_any\nSYSEXT_SCOPE=initrd system\n"))]
#[case::match_scope_invalid("match/scope-invalid", Fx::raw("x.raw").release("ID=_any\nSYSEXT_SCOPE=system host\n"), Fx::raw("x.raw").release("ID=_any\nSYSEXT_SCOPE=system portable\n"))]
#[case::match_arch_invalid("match/arch-invalid", Fx::raw("x.raw").release("ID=_any\nARCHITECTURE=x86_64\n"), Fx::raw("x.raw"))]
#[case::match_arch_invalid_2("match/arch-invalid", Fx::raw("x.raw").release("ID=_any\nARCHITECTURE=any\n"), Fx::raw("x.raw").release("ID=_any\nARCHITECTURE=_any\n"))]
#[case::match_arch_empty_is_no_constraint("match/arch-invalid", Fx::raw("x.raw").release("ID=_any\nARCHITECTURE=aarch64\n"), Fx::raw("x.raw").release("ID=_any\nARCHITECTURE=\n"))]
#[case::match_arch_mismatch("match/arch-mismatch", Fx::raw("x.raw").release("ID=_any\nARCHITECTURE=arm64\n").arch(Arch::X86_64), Fx::raw("x.raw").arch(Arch::X86_64))]
#[case::match_no_id("match/no-id", Fx::raw("x.raw").release("ARCHITECTURE=x86-64\n"), Fx::raw("x.raw"))]
#[case::match_id_mismatch("match/id-mismatch", Fx::raw("x.raw").release("ID=fedora\nSYSEXT_LEVEL=1.0\n"), Fx::raw("x.raw").release("ID=flatcar\nSYSEXT_LEVEL=1.0\n"))]
#[case::match_id_mismatch_2("match/id-mismatch", Fx::raw("x.raw").release("ID=debian\nSYSEXT_LEVEL=1.0\n"), Fx::raw("x.raw").release("ID=coreos\nSYSEXT_LEVEL=1.0\n"))]
#[case::match_level_mismatch("match/level-mismatch", Fx::raw("x.raw").release("ID=flatcar\nSYSEXT_LEVEL=2.0\n"), Fx::raw("x.raw").release("ID=flatcar\nSYSEXT_LEVEL=1.0\n"))]
#[case::match_version_mismatch("match/version-mismatch", Fx::raw("x.raw").release("ID=flatcar\n"), Fx::raw("x.raw").release("ID=flatcar\nSYSEXT_LEVEL=1.0\n"))]
#[case::match_pinned_to_os_version("match/pinned-to-os-version", Fx::raw("x.raw").release("ID=flatcar\nVERSION_ID=4593.2.5\n"), Fx::raw("x.raw").release("ID=flatcar\nSYSEXT_LEVEL=1.0\n"))]
// content
#[case::content_top_level("content/top-level", Fx::raw("x.raw").file("etc/x.conf", "x"), Fx::raw("x.raw").file("usr/share/x.conf", "x"))]
#[case::content_os_release("content/os-release", Fx::raw("x.raw").file("usr/lib/os-release", "ID=x\n"), Fx::raw("x.raw"))]
#[case::content_usr_sbin("content/usr-sbin", Fx::raw("x.raw").file("usr/sbin/tool", "x"), Fx::raw("x.raw").file("usr/bin/tool", "x"))]
#[case::content_whiteout("content/whiteout", Fx::dir("x").with(Item::Whiteout("usr/share/hidden")), Fx::dir("x"))]
#[case::content_special_file("content/special-file", Fx::dir("x").with(Item::Fifo("usr/share/fifo")), Fx::dir("x"))]
#[case::content_setuid("content/setuid", Fx::raw("x.raw").with(Item::File("usr/bin/su2", b"#!/bin/sh\n".to_vec(), 0o4755)), Fx::raw("x.raw").with(Item::File("usr/bin/su2", b"#!/bin/sh\n".to_vec(), 0o755)))]
#[case::content_world_writable("content/world-writable", Fx::raw("x.raw").with(Item::File("usr/share/w", b"x".to_vec(), 0o666)), Fx::raw("x.raw"))]
#[case::content_symlink_leaves_image("content/symlink-leaves-image", Fx::raw("x.raw").with(Item::Link("usr/share/cfg", "/etc/x/cfg")), Fx::raw("x.raw").with(Item::Link("usr/share/cfg", "/usr/share/fx/data")))]
#[case::content_symlink_leaves_image_2("content/symlink-leaves-image", Fx::raw("x.raw").with(Item::Link("usr/share/cfg", "../../../etc/x")), Fx::raw("x.raw").with(Item::Link("usr/share/cfg", "fx/data")))]
#[case::content_not_root_owned("content/not-root-owned", Fx::dir("x").with(Item::Owner("usr/share/fx/data", 1000)), Fx::dir("x"))]
#[case::content_no_payload("content/no-payload", Fx::raw("x.raw").no_payload(), Fx::raw("x.raw"))]
#[case::content_early_boot("content/early-boot", Fx::raw("x.raw").file("usr/lib/sysusers.d/x.conf", "u x - -\n"), Fx::raw("x.raw").file("usr/lib/tmpfiles.d/x.conf", "d /var/lib/x\n"))]
// binaries
#[case::binary_arch_mismatch("binary/arch-mismatch", Fx::raw("x.raw").release("ID=_any\nARCHITECTURE=arm64\n").with(Item::File("usr/bin/t", host_true("", ""), 0o755)), Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("", ""), 0o755)))]
#[case::binary_missing_interpreter("binary/missing-interpreter", Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("ld-linux-x86-64.so.2", "ld-linux-x86-64.so.9"), 0o755)), Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("", ""), 0o755)))]
#[case::binary_missing_library("binary/missing-library", Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("libc.so.6", "libq.so.6"), 0o755)), Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("", ""), 0o755)))]
#[case::binary_missing_library_2("binary/missing-library", Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("libc.so.6", "libq.so.6"), 0o755)).file("usr/share/fx/lib/other.txt", "x"), Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("libc.so.6", "libq.so.6"), 0o755)).file("usr/lib64/libq.so.6", "not really a library"))]
#[case::binary_corrupt_elf("binary/corrupt-elf", Fx::raw("x.raw").with(Item::File("usr/bin/t", [b"\x7fELF".as_slice(), &[0xff; 60]].concat(), 0o755)), Fx::raw("x.raw").with(Item::File("usr/bin/t", vec![b'#'; 64], 0o755)))]
#[case::binary_not_executable("binary/not-executable", Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("", ""), 0o644)), Fx::raw("x.raw").with(Item::File("usr/bin/t", host_true("", ""), 0o755)))]
// units
#[case::unit_syntax("unit/syntax", Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Service]\nExecStart=/usr/bin/env\ngarbage\n"), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Service]\nExecStart=/usr/bin/env\n"))]
#[case::unit_exec_missing("unit/exec-missing", Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/nope")), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/env true")))]
#[case::unit_exec_missing_2("unit/exec-missing", Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", &svc("nope")), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", &svc("-sleep 1")))]
#[case::unit_exec_via_sbin_merge("unit/exec-via-sbin-merge", Fx::raw("x.raw").release(unit(true)).file("usr/bin/d", "#!/bin/sh\n").file("usr/lib/systemd/system/t.service", &svc("/usr/sbin/d")), Fx::raw("x.raw").release(unit(true)).file("usr/bin/d", "#!/bin/sh\n").file("usr/lib/systemd/system/t.service", &svc("/usr/bin/d")))]
#[case::unit_dropin_suffix("unit/dropin-suffix", Fx::raw("x.raw").file("usr/lib/systemd/system/multi-user.target.d/t.service", "[Unit]\n"), Fx::raw("x.raw").file("usr/lib/systemd/system/multi-user.target.d/t.conf", "[Unit]\n"))]
#[case::unit_dangling_enablement("unit/dangling-enablement", Fx::raw("x.raw").release(unit(true)).with(Item::Link("usr/lib/systemd/system/multi-user.target.wants/nope.service", "../nope.service")), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/env")).with(Item::Link("usr/lib/systemd/system/multi-user.target.wants/t.service", "../t.service")))]
#[case::unit_missing_dependency("unit/missing-dependency", Fx::raw("x.raw").file("usr/lib/systemd/system/multi-user.target.d/10-t.conf", "[Unit]\nUpholds=nope.service\n"), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/env")).file("usr/lib/systemd/system/multi-user.target.d/10-t.conf", "[Unit]\nUpholds=t.service\n"))]
#[case::unit_reload_manager_missing("unit/reload-manager-missing", Fx::raw("x.raw").release(unit(false)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/env")), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/env")))]
#[case::unit_default_dependencies_no("unit/default-dependencies-no", Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/usr/bin/env\n"), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/env")))]
#[case::unit_exec_not_executable("unit/exec-not-executable", Fx::raw("x.raw").release(unit(true)).with(Item::File("usr/bin/t", b"#!/bin/sh\n".to_vec(), 0o644)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/t")), Fx::raw("x.raw").release(unit(true)).with(Item::File("usr/bin/t", b"#!/bin/sh\n".to_vec(), 0o755)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/t")))]
#[case::unit_exec_interpreter_missing("unit/exec-interpreter-missing", Fx::raw("x.raw").release(unit(true)).with(Item::File("usr/bin/t", b"#!/usr/bin/python9 -u\n".to_vec(), 0o755)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/t")), Fx::raw("x.raw").release(unit(true)).with(Item::File("usr/bin/t", b"#!/usr/bin/python9 -u\n".to_vec(), 0o755)).with(Item::File("usr/bin/python9", b"#!/bin/sh\n".to_vec(), 0o755)).file("usr/lib/systemd/system/t.service", &svc("/usr/bin/t")))]
#[case::unit_no_exec_start("unit/no-exec-start", Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Service]\nType=oneshot\n").file("usr/lib/systemd/system/t.service.d/10-x.cfg", "[Service]\nExecStart=/usr/bin/env\n"), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Service]\nType=oneshot\n").file("usr/lib/systemd/system/t.service.d/10-x.conf", "[Service]\nExecStart=/usr/bin/env\n"))]
#[case::unit_no_exec_start_2("unit/no-exec-start", Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Service]\nExecStart=/usr/bin/env\nExecStart=/usr/bin/env\n"), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Service]\nType=oneshot\nExecStart=/usr/bin/env\nExecStart=/usr/bin/env\n"))]
#[case::unit_unknown_user("unit/unknown-user", Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Service]\nExecStart=/usr/bin/env\nUser=nosuchuser\n"), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.service", "[Service]\nExecStart=/usr/bin/env\nUser=nosuchuser\nDynamicUser=yes\n"))]
#[case::unit_unknown_group("unit/unknown-group", Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.socket", "[Socket]\nListenStream=/run/t.sock\nSocketGroup=nosuchgroup\n"), Fx::raw("x.raw").release(unit(true)).file("usr/lib/systemd/system/t.socket", "[Socket]\nListenStream=/run/t.sock\nSocketGroup=docker\n"))]
#[case::unit_in_etc("unit/in-etc", Fx::raw("x.raw").file("etc/systemd/system/t.service", &svc("/usr/bin/env")), Fx::raw("x.raw"))]
fn rule_fires_on_bad_image_and_not_on_good(#[case] rule: &str, #[case] bad: Fx, #[case] good: Fx) {
    let on_bad = bad.lint();
    assert!(
        on_bad.iter().any(|f| f.rule == rule),
        "{rule} not reported for the bad image: {on_bad:#?}"
    );
    let on_good = good.lint();
    assert!(
        !on_good.iter().any(|f| f.rule == rule),
        "{rule} reported for the good image: {on_good:#?}"
    );
}

#[test]
fn usr_sbin_is_an_error_on_flatcar_and_a_warning_on_generic() {
    let fx = Fx::raw("x.raw").file("usr/sbin/tool", "x");
    let sev = |fx: Fx| {
        fx.lint()
            .into_iter()
            .find(|f| f.rule == "content/usr-sbin")
            .map(|f| f.severity)
    };
    assert_eq!(sev(fx.clone()), Some(Severity::Error));
    assert_eq!(sev(fx.target(TargetKind::Generic)), Some(Severity::Warning));
}

#[test]
fn image_unreadable_for_garbage_empty_and_truncated_files_not_the_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("garbage.raw"), vec![0x5a; 8192]).unwrap();
    std::fs::write(tmp.path().join("empty.raw"), b"").unwrap();
    let good = Fx::raw("good.raw").write(tmp.path());
    // Cut a real image to half of what its superblock says it uses (bytes_used, offset 40);
    // cutting the file in half would only remove padding.
    let bytes = std::fs::read(&good).unwrap();
    let used = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
    std::fs::write(tmp.path().join("truncated.raw"), &bytes[..used / 2]).unwrap();
    let linter = Linter::new(Options::default());
    for name in ["garbage.raw", "empty.raw", "truncated.raw"] {
        let (report, _) = linter.lint_image(&tmp.path().join(name)).unwrap();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.rule == "image/unreadable" && f.severity == Severity::Error),
            "{name}: {report:#?}"
        );
    }
    let (report, _) = linter.lint_image(&good).unwrap();
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.severity != Severity::Error),
        "{report:#?}"
    );
}

/// A squashfs image whose first data block (right after the 96-byte superblock: backhand
/// writes file data first) has a byte flipped: it still opens, so only reading the file's
/// data shows the damage. Found missing by the mutation fuzzer.
#[test]
fn content_unreadable_file_fires_on_a_corrupt_block_not_on_the_intact_image() {
    let tmp = tempfile::tempdir().unwrap();
    let text: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let good = Fx::raw("good.raw")
        .with(Item::File("usr/share/fx/big", text, 0o644))
        .write(tmp.path());
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[96 + 200] ^= 0x55;
    let bad = tmp.path().join("bad.raw");
    std::fs::write(&bad, &bytes).unwrap();
    let linter = Linter::new(Options::default());
    let rules = |p: &Path| -> Vec<(&'static str, String)> {
        let (report, _) = linter.lint_image(p).unwrap();
        report
            .findings
            .into_iter()
            .map(|f| (f.rule, f.path))
            .collect()
    };
    let on_bad = rules(&bad);
    assert!(
        on_bad.contains(&("content/unreadable-file", "usr/share/fx/big".to_string())),
        "{on_bad:?}"
    );
    assert!(
        !rules(&good)
            .iter()
            .any(|(r, _)| *r == "content/unreadable-file"),
        "reported for the intact image"
    );
}

/// Found by the mutation fuzzer: backhand was built without its `error-strings` feature,
/// so every error it reported displayed as "" and the finding said only "corrupt or
/// truncated squashfs image: ". The finding must say what is wrong.
#[test]
fn image_unreadable_says_why_backhand_refused_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let good = Fx::raw("x.raw").write(tmp.path());
    let mut bytes = std::fs::read(&good).unwrap();
    // The inode table's first metadata block header (superblock offset 64): a length over
    // the 8 KiB a metadata block may hold.
    let at = u64::from_le_bytes(bytes[64..72].try_into().unwrap()) as usize;
    bytes[at..at + 2].copy_from_slice(&[0xff, 0x7f]);
    std::fs::write(&good, &bytes).unwrap();
    let (report, _) = Linter::new(Options::default()).lint_image(&good).unwrap();
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "image/unreadable")
        .unwrap_or_else(|| panic!("{report:#?}"));
    let detail = f
        .message
        .split_once("squashfs image: ")
        .map(|(_, d)| d)
        .unwrap_or_default();
    assert!(
        detail.len() > 2 && !detail.starts_with(';'),
        "no reason given: {}",
        f.message
    );
}

#[test]
fn every_rule_has_a_unique_id_and_a_family() {
    let rules = super::rules::all();
    let mut ids: Vec<&str> = rules.iter().map(|r| r.id).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate rule ids");
    for id in ids {
        assert!(id.contains('/'), "{id} has no family prefix");
    }
}

/// A bakery release directory built by `sysext-test build`, then changed by `mutate`.
fn release_dir(mutate: fn(&Path)) -> Vec<Finding> {
    release_dir_for(mutate, Options::default())
}

/// [`release_dir`], linted for the target `opts` describe.
fn release_dir_for(mutate: fn(&Path), opts: Options) -> Vec<Finding> {
    let tmp = tempfile::tempdir().unwrap();
    let spec_dir = tmp.path().join("spec");
    std::fs::create_dir(&spec_dir).unwrap();
    let spec_path = spec_dir.join("x.toml");
    std::fs::write(
        &spec_path,
        "name = \"x\"\nversion = \"1.0\"\n[[file]]\npath = \"/usr/share/x/data\"\ntext = \"x\"\n",
    )
    .unwrap();
    let out = tmp.path().join("rel");
    sysext_builder::build::build(&spec_path, &out, &Default::default()).unwrap();
    mutate(&out);
    let linter = Linter::new(opts);
    linter
        .lint_path(&out)
        .unwrap()
        .into_iter()
        .flat_map(|r| r.findings)
        .collect()
}

fn edit(dir: &Path, file: &str, f: impl Fn(String) -> String) {
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, f(text)).unwrap();
}

fn add_image(dir: &Path, name: &str, listed: bool) {
    std::fs::copy(dir.join("x-1.0-x86-64.raw"), dir.join(name)).unwrap();
    if listed {
        let d = sysext_builder::sha256sums::digest_file(&dir.join(name)).unwrap();
        sysext_builder::sha256sums::upsert(&dir.join("SHA256SUMS"), name, &d).unwrap();
    }
}

#[rstest]
#[case::sums_missing("sums/missing", |d: &Path| std::fs::remove_file(d.join("SHA256SUMS")).unwrap())]
#[case::sums_syntax("sums/syntax", |d: &Path| std::fs::write(d.join("SHA256SUMS"), "garbage\n").unwrap())]
#[case::sums_digest_mismatch("sums/digest-mismatch", |d: &Path| edit(d, "SHA256SUMS", |t| format!("{}{}", "0".repeat(64), &t[64..])))]
#[case::sums_unlisted_image("sums/unlisted-image", |d: &Path| add_image(d, "x-1.1-x86-64.raw", false))]
#[case::sums_listed_file_missing("sums/listed-file-missing", |d: &Path| edit(d, "SHA256SUMS", |t| format!("{t}{}  x-0.9-x86-64.raw\n", "a".repeat(64))))]
#[case::transfer_syntax("transfer/syntax", |d: &Path| edit(d, "x.conf", |t| format!("{t}this is not a key\n")))]
// Found by the mutation fuzzer: a NAME.conf cut short before [Source] was taken for
// someone else's file and not checked at all.
#[case::transfer_syntax_truncated_conf("transfer/syntax", |d: &Path| std::fs::write(d.join("x.conf"), "[Tr").unwrap())]
#[case::transfer_unknown_key("transfer/unknown-key", |d: &Path| edit(d, "x.conf", |t| t.replace("[Source]\n", "[Source]\nFoo=bar\n")))]
#[case::transfer_conf_suffix("transfer/conf-suffix", |_: &Path| {})]
#[case::transfer_missing_key("transfer/missing-key", |d: &Path| edit(d, "x.conf", |t| t.replace("MatchPattern=x-@v-%a.raw\n\n[Target]", "\n[Target]")))]
#[case::transfer_types("transfer/types", |d: &Path| edit(d, "x.conf", |t| t.replace("Type=url-file", "Type=url-tar")))]
#[case::transfer_pattern("transfer/pattern", |d: &Path| edit(d, "x.conf", |t| t.replacen("MatchPattern=x-@v-%a.raw", "MatchPattern=x-@v-*-%a.raw", 1)))]
#[case::transfer_no_match("transfer/no-match", |d: &Path| edit(d, "x.conf", |t| t.replacen("MatchPattern=x-@v-%a.raw", "MatchPattern=y-@v-%a.raw", 1)))]
#[case::transfer_invisible_version("transfer/invisible-version", |d: &Path| add_image(d, "x-2.0~rc1-x86-64.raw", true))]
#[case::transfer_current_symlink("transfer/current-symlink", |d: &Path| edit(d, "x.conf", |t| t.replace("/etc/extensions/x.raw", "/etc/extensions/x-v1.0.raw")))]
#[case::transfer_current_symlink_2("transfer/current-symlink", |d: &Path| edit(d, "x.conf", |t| t.replace("/etc/extensions/x.raw", "/opt/extensions/x.raw")))]
#[case::transfer_instances_max("transfer/instances-max", |d: &Path| edit(d, "x.conf", |t| t.replace("InstancesMax=3", "InstancesMax=1")))]
#[case::transfer_verify_without_signature("transfer/verify-without-signature", |d: &Path| edit(d, "x.conf", |t| t.replace("Verify=false", "Verify=yes")))]
#[case::served_sums("served/sums", |d: &Path| edit(d, "x.conf", |t| t.replace("/extensions/x/", "/extensions/x-v1/")))]
#[case::served_no_match("served/no-match", |d: &Path| {
    // Path names another extension's directory: its manifest has none of x's images.
    add_image(d, "y-1.0-x86-64.raw", true);
    edit(d, "x.conf", |t| t.replace("/extensions/x/", "/extensions/y/"));
})]
#[case::served_image("served/image", |d: &Path| {
    // Pointed at the hub root: the global manifest lists a name no redirect rule routes.
    add_image(d, "x-1.1.raw", true);
    edit(d, "x.conf", |t| t.replace("/extensions/x/", "/extensions/").replacen("MatchPattern=x-@v-%a.raw", "MatchPattern=x-@v.raw", 1));
})]
#[case::served_not_checked("served/not-checked", |d: &Path| edit(d, "x.conf", |t| t.replace("https://extensions.flatcar.org/extensions/x/", "https://example.org/x/")))]
fn release_dir_rule_fires_when_broken_and_not_on_the_built_dir(
    #[case] rule: &str,
    #[case] mutate: fn(&Path),
) {
    let bad = release_dir(mutate);
    assert!(
        bad.iter().any(|f| f.rule == rule),
        "{rule} not reported: {bad:#?}"
    );
    let good = if rule == "transfer/conf-suffix" {
        release_dir(|d| std::fs::rename(d.join("x.conf"), d.join("x.transfer")).unwrap())
    } else {
        release_dir(|_| {})
    };
    assert!(
        !good.iter().any(|f| f.rule == rule),
        "{rule} reported for the built directory: {good:#?}"
    );
}

fn systemd(major: u32) -> Options {
    Options {
        systemd: Some(major),
        ..Options::default()
    }
}

fn to_transfer(d: &Path) {
    std::fs::rename(d.join("x.conf"), d.join("x.transfer")).unwrap();
}

#[test]
fn transfer_suffix_needs_257_fires_only_where_systemd_is_known_older() {
    let fired = |f: Vec<Finding>| f.iter().any(|f| f.rule == "transfer/suffix-needs-257");
    assert!(fired(release_dir_for(to_transfer, systemd(256))));
    assert!(!fired(release_dir_for(to_transfer, systemd(257))));
    // Unknown systemd: a false alarm on every modern target, so not reported.
    assert!(!fired(release_dir_for(to_transfer, Options::default())));
    // Flatcar before 3913 runs a systemd older than 255.
    let old_flatcar = Options {
        target: "flatcar:3815.2.0".parse().unwrap(),
        ..Options::default()
    };
    assert!(fired(release_dir_for(to_transfer, old_flatcar)));
    assert!(!fired(release_dir_for(|_| {}, systemd(256))));
}

#[test]
fn transfer_conf_suffix_is_not_reported_where_conf_is_the_only_suffix_read() {
    let fired = |f: Vec<Finding>| f.iter().any(|f| f.rule == "transfer/conf-suffix");
    assert!(fired(release_dir_for(|_| {}, systemd(257))));
    assert!(!fired(release_dir_for(|_| {}, systemd(256))));
}

/// A store of `x` at 1.0 and 1.1 built by `build --store`, linted whole after `mutate`.
fn store_lint(mutate: fn(&Path)) -> Vec<super::ImageReport> {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("x.toml");
    let root = tmp.path().join("store");
    for version in ["1.0", "1.1"] {
        std::fs::write(
            &spec_path,
            format!("name = \"x\"\nversion = \"{version}\"\n[[file]]\npath = \"/usr/share/x/data\"\ntext = \"x\"\n"),
        )
        .unwrap();
        let spec = sysext_builder::spec::Spec::load(&spec_path).unwrap();
        sysext_builder::store::build_release(
            &root,
            &spec,
            tmp.path(),
            &Arch::ALL,
            &Default::default(),
        )
        .unwrap();
    }
    mutate(&root);
    Linter::new(Options::default()).lint_path(&root).unwrap()
}

#[test]
fn store_unlisted_transfer_notes_the_conf_the_cycles_use_until_a_manifest_lists_it() {
    let noted = |reports: &[super::ImageReport]| -> Vec<(String, String)> {
        reports
            .iter()
            .flat_map(|r| {
                r.findings
                    .iter()
                    .filter(|f| f.rule == "store/unlisted-transfer")
                    .map(|f| (r.path.clone(), f.path.clone()))
            })
            .collect()
    };
    // As the bakery publishes: no manifest lists a conf. Noted once, on the newest tag.
    let bad = noted(&store_lint(|_| {}));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].0.ends_with("x-1.1"), "{bad:?}");
    assert_eq!(bad[0].1, "x.conf");
    // Listed beside it: verified by the store's digest check, nothing to note.
    let good = noted(&store_lint(|root| {
        let tag = root.join("x-1.1");
        let d = sysext_builder::sha256sums::digest_file(&tag.join("x.conf")).unwrap();
        sysext_builder::sha256sums::upsert(&tag.join("SHA256SUMS"), "x.conf", &d).unwrap();
    }));
    assert!(good.is_empty(), "{good:?}");
}

#[test]
fn naming_version_order_disagrees_across_a_release_dir() {
    let findings = release_dir(|d| {
        add_image(d, "x-2.0.0-x86-64.raw", true);
        add_image(d, "x-2.0.0-rc1-x86-64.raw", true);
    });
    let dir_level: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.rule == "naming/version-order-disagrees" && f.path == "x-*-x86-64.raw")
        .collect();
    assert_eq!(dir_level.len(), 1, "{findings:#?}");
    assert!(
        dir_level[0].message.contains(
            "orders the releases 2.0.0 < 2.0.0-rc1 but semver orders them 2.0.0-rc1 < 2.0.0"
        ),
        "{}",
        dir_level[0].message
    );
    let agreeing = release_dir(|d| {
        add_image(d, "x-2.0.0-x86-64.raw", true);
        add_image(d, "x-10.0.0-x86-64.raw", true);
    });
    assert!(
        !agreeing
            .iter()
            .any(|f| f.rule == "naming/version-order-disagrees"),
        "{agreeing:#?}"
    );
}

#[test]
fn usr_sbin_is_an_error_only_where_sbin_is_a_symlink() {
    let severity = |spec: &str| {
        Fx::raw("x.raw")
            .file("usr/sbin/tool", "x")
            .target_spec(spec)
            .lint()
            .iter()
            .find(|f| f.rule == "content/usr-sbin")
            .map(|f| f.severity)
    };
    assert_eq!(severity("flatcar"), Some(Severity::Error));
    assert_eq!(severity("flatcar:4230.2.0"), Some(Severity::Error));
    assert_eq!(severity("flatcar:4081.2.0"), Some(Severity::Warning));
}

#[test]
fn an_sbin_exec_path_is_missing_on_flatcar_before_the_sbin_merge() {
    let rules = |spec: &str| {
        let fx = Fx::raw("x.raw")
            .release(unit(true))
            .file("usr/bin/d", "#!/bin/sh\n")
            .file("usr/lib/systemd/system/t.service", &svc("/usr/sbin/d"))
            .target_spec(spec);
        fx.lint().iter().map(|f| f.rule).collect::<Vec<_>>()
    };
    assert!(rules("flatcar:4230.2.0").contains(&"unit/exec-via-sbin-merge"));
    let old = rules("flatcar:4081.2.0");
    assert!(old.contains(&"unit/exec-missing"), "{old:?}");
    assert!(!old.contains(&"unit/exec-via-sbin-merge"), "{old:?}");
}

#[test]
fn built_release_dir_has_no_errors_or_warnings() {
    let findings = release_dir(|_| {});
    let bad: Vec<_> = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

/// A renamed image packed by a host tool, its release file carrying `strict` (or no xattr).
fn renamed_image(tool: &str, strict: Option<&str>, dir: &Path) -> PathBuf {
    let root = dir.join(format!("root-{tool}-{}", strict.unwrap_or("none")));
    let rel = root.join("usr/lib/extension-release.d/extension-release.other");
    std::fs::create_dir_all(rel.parent().unwrap()).unwrap();
    std::fs::write(&rel, "ID=_any\n").unwrap();
    std::fs::create_dir_all(root.join("usr/share/ero")).unwrap();
    std::fs::write(root.join("usr/share/ero/data"), "x\n").unwrap();
    if let Some(v) = strict {
        xattr::set(&rel, "user.extension-release.strict", v.as_bytes()).unwrap();
    }
    let img = dir.join(format!("renamed-{tool}-{}.raw", strict.unwrap_or("none")));
    let mut cmd = std::process::Command::new(tool);
    match tool {
        "mkfs.erofs" => cmd
            .args(["--all-root", "--quiet", "-T0"])
            .arg(&img)
            .arg(&root),
        _ => cmd
            .args(["-q", "-t", "ext4", "-d"])
            .arg(&root)
            .arg(&img)
            .arg("4M"),
    };
    let st = cmd
        .status()
        .unwrap_or_else(|e| panic!("{tool}: {e} (run .ci/setup)"));
    assert!(st.success(), "{tool} failed");
    img
}

fn rules_of(p: &Path) -> Vec<&'static str> {
    Linter::new(Options::default())
        .lint_image(p)
        .unwrap()
        .0
        .findings
        .iter()
        .map(|f| f.rule)
        .collect()
}

/// An ext4 image is read through debugfs, which drops xattrs: when its release name
/// differs, whether `user.extension-release.strict=0` rescues it cannot be known.
#[test]
fn release_xattrs_unreadable_fires_on_a_renamed_ext4_image_only() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = rules_of(&renamed_image("mke2fs", Some("0"), tmp.path()));
    assert!(bad.contains(&"release/xattrs-unreadable"), "{bad:?}");
    let erofs = rules_of(&renamed_image("mkfs.erofs", Some("0"), tmp.path()));
    assert!(!erofs.contains(&"release/xattrs-unreadable"), "{erofs:?}");
}

/// Regression of the differential oracle (seed 1, dt00006): lint said an erofs image's
/// xattrs cannot be read and predicted a merge; systemd failed the whole merge. Lint now
/// reads them from the image, as it does for squashfs.
#[test]
fn a_renamed_erofs_image_is_refused_without_strict_0_and_rescued_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let none = rules_of(&renamed_image("mkfs.erofs", None, tmp.path()));
    assert!(none.contains(&"release/name-mismatch"), "{none:?}");
    let rescued = rules_of(&renamed_image("mkfs.erofs", Some("0"), tmp.path()));
    assert!(
        rescued.contains(&"release/strict-xattr-fallback"),
        "{rescued:?}"
    );
    assert!(!rescued.contains(&"release/name-mismatch"), "{rescued:?}");
    let strict = rules_of(&renamed_image("mkfs.erofs", Some("1"), tmp.path()));
    assert!(strict.contains(&"release/name-mismatch"), "{strict:?}");
}

/// Every rule `lint --list-rules` prints has a case in one of the two good/bad tables above
/// (each case checks a bad input that fires and a good one that does not), or a test named
/// after it. Read from this file's own source, so a rule added without tests fails here.
#[test]
fn every_rule_has_a_good_and_a_bad_case() {
    let source = include_str!("tests.rs");
    let mut covered: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for part in source.split("#[case::").skip(1) {
        if let Some(rule) = part
            .split_once('"')
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(rule, _)| rule)
            .filter(|r| {
                r.contains('/')
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/-".contains(&b))
            })
        {
            covered.insert(rule.to_string());
        }
    }
    // Rules with a test of their own, named after the rule id.
    for line in source.lines() {
        if let Some(name) = line.trim().strip_prefix("fn ") {
            for r in super::rules::all() {
                if name.starts_with(&format!("{}_", r.id.replace(['/', '-'], "_"))) {
                    covered.insert(r.id.to_string());
                }
            }
        }
    }
    let missing: Vec<&str> = super::rules::all()
        .iter()
        .map(|r| r.id)
        .filter(|id| !covered.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a good and a bad case in lint/tests.rs: {missing:?}"
    );
    let unknown: Vec<&String> = covered
        .iter()
        .filter(|c| !super::rules::all().iter().any(|r| r.id == c.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "cases for rules that do not exist: {unknown:?}"
    );
}

/// `check`'s output folder (`<fixture>/<arch>/` release directories) is linted folder by
/// folder, not taken for one directory image.
#[test]
fn a_folder_of_release_directories_is_linted_one_release_directory_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = crate::fixtures::root().join("extensions/busybox.toml");
    let spec = sysext_builder::spec::Spec::load(&spec_path).unwrap();
    for arch in sysext_builder::Arch::ALL {
        sysext_builder::build::build_spec(
            &spec,
            spec_path.parent().unwrap(),
            &tmp.path().join("busybox").join(arch.systemd_name()),
            &sysext_builder::build::Options {
                arch: Some(arch),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let linter = Linter::new(Options::default());
    for root in [tmp.path().to_path_buf(), tmp.path().join("busybox")] {
        let reports = linter.lint_path(&root).unwrap();
        let images = reports
            .iter()
            .filter(|r| r.kind == crate::lint::ReportKind::Image)
            .count();
        assert_eq!(images, 2, "{}", root.display());
        let errors: Vec<&str> = reports
            .iter()
            .flat_map(|r| r.findings.iter())
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.rule)
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let empty = tmp.path().join("nothing");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        linter.lint_path(&empty),
        Err(crate::lint::LintError::NothingToCheck { .. })
    ));
}

/// The wasmcloud bug (sysext-bakery 59a0cde): a bakery-style image whose service binary
/// has mode 0644. systemd fails the unit with 203/EXEC, so lint says error, not only the
/// bin-directory warning.
#[test]
fn a_service_whose_binary_has_no_execute_bit_is_an_error() {
    let findings = Fx::raw("wasmcloud-1.0.0-x86-64.raw")
        .release(unit(true))
        .with(Item::File("usr/bin/wasmcloud", host_true("", ""), 0o644))
        .file(
            "usr/lib/systemd/system/wasmcloud.service",
            &svc("/usr/bin/wasmcloud"),
        )
        .lint();
    let f = findings
        .iter()
        .find(|f| f.rule == "unit/exec-not-executable")
        .unwrap_or_else(|| panic!("no unit/exec-not-executable: {findings:#?}"));
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("203/EXEC"), "{}", f.message);
}

/// `-` before the program makes systemd carry on without it: the finding stays, as a warning.
#[test]
fn a_dash_prefixed_missing_program_is_only_a_warning() {
    let findings = Fx::raw("x.raw")
        .release(unit(true))
        .file("usr/lib/systemd/system/t.service", &svc("-/usr/bin/nope"))
        .lint();
    let f = findings
        .iter()
        .find(|f| f.rule == "unit/exec-missing")
        .unwrap_or_else(|| panic!("no unit/exec-missing: {findings:#?}"));
    assert_eq!(f.severity, Severity::Warning);
}

/// Without the host's own account lists lint cannot know a user is missing: it warns; with
/// them (`--host-passwd`, `--host-group`) a missing user is an error, a present one nothing.
#[test]
fn unknown_user_is_an_error_only_against_the_hosts_own_accounts() {
    let fx = || {
        Fx::raw("x.raw").release(unit(true)).file(
            "usr/lib/systemd/system/t.service",
            "[Service]\nExecStart=/usr/bin/env\nUser=app\nGroup=app\n",
        )
    };
    let sev = |f: &[Finding], rule: &str| f.iter().find(|f| f.rule == rule).map(|f| f.severity);
    let guessed = fx().lint();
    assert_eq!(sev(&guessed, "unit/unknown-user"), Some(Severity::Warning));
    let mut without = fx();
    without.opts.host_accounts = Some(crate::lint::Accounts::from_files(
        "root:x:0:0::/root:/bin/sh\n",
        "root:x:0:\n",
    ));
    let known = without.lint();
    assert_eq!(sev(&known, "unit/unknown-user"), Some(Severity::Error));
    assert_eq!(sev(&known, "unit/unknown-group"), Some(Severity::Error));
    let mut with = fx();
    with.opts.host_accounts = Some(crate::lint::Accounts::from_files(
        "# users\nroot:x:0:0::/root:/bin/sh\napp:x:900:900::/:/sbin/nologin\n",
        "root:x:0:\napp:x:900:\n",
    ));
    let present = with.lint();
    assert_eq!(sev(&present, "unit/unknown-user"), None, "{present:#?}");
    assert_eq!(sev(&present, "unit/unknown-group"), None, "{present:#?}");
}

/// An account the image's own sysusers.d creates is not missing.
#[test]
fn unknown_user_is_not_reported_for_an_account_the_image_creates() {
    let findings = Fx::raw("x.raw")
        .release(unit(true))
        .file("usr/lib/sysusers.d/app.conf", "u app - \"App\"\n")
        .file(
            "usr/lib/systemd/system/t.service",
            "[Service]\nExecStart=/usr/bin/env\nUser=app\nGroup=app\n",
        )
        .lint();
    assert!(
        !findings
            .iter()
            .any(|f| f.rule == "unit/unknown-user" || f.rule == "unit/unknown-group"),
        "{findings:#?}"
    );
}

/// Found by the differential oracle (units, seed 2): with `-` before every command systemd
/// ignores a missing user too; the service is active with status 217.
#[test]
fn unknown_user_under_a_dash_prefixed_command_is_only_a_warning() {
    let mut fx = Fx::raw("x.raw").release(unit(true)).file(
        "usr/lib/systemd/system/t.service",
        "[Service]\nExecStart=-/usr/bin/env\nUser=app\n",
    );
    fx.opts.host_accounts = Some(crate::lint::Accounts::from_files(
        "root:x:0:0::/root:/bin/sh\n",
        "root:x:0:\n",
    ));
    let findings = fx.lint();
    let f = findings
        .iter()
        .find(|f| f.rule == "unit/unknown-user")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(f.severity, Severity::Warning);
}

/// The severity of `rule`'s findings for a release directory `mutate` breaks.
fn release_dir_severities(mutate: fn(&Path), rule: &str) -> Vec<Severity> {
    release_dir(mutate)
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| f.severity)
        .collect()
}

/// Found by the differential oracle (transfers, seed 1): systemd's config parser skips a
/// line that is not Key=Value ("Missing '=', ignoring line.") and sysupdate lists as ever;
/// only an invalid section header fails the file.
#[test]
fn transfer_syntax_is_an_error_only_for_what_fails_the_file() {
    assert_eq!(
        release_dir_severities(
            |d| edit(d, "x.conf", |t| format!("{t}this is not a key\n")),
            "transfer/syntax"
        ),
        vec![Severity::Warning]
    );
    assert_eq!(
        release_dir_severities(
            |d| edit(d, "x.conf", |t| t.replace("[Target]", "[Target")),
            "transfer/syntax"
        ),
        vec![Severity::Error]
    );
}

/// Found by the differential oracle: a local Source Type with a URL ("Source path is not
/// a normalized, absolute path"), and a partition target for an extension, fail every verb.
#[test]
fn transfer_types_catches_a_url_for_a_local_source_and_a_partition_target() {
    for mutate in [
        (|d: &Path| {
            edit(d, "x.conf", |t| {
                t.replace("Type=url-file", "Type=regular-file")
            })
        }) as fn(&Path),
        |d: &Path| {
            edit(d, "x.conf", |t| {
                t.replace("Type=regular-file", "Type=partition")
            })
        },
    ] {
        assert_eq!(
            release_dir_severities(mutate, "transfer/types"),
            vec![Severity::Error]
        );
    }
}

/// Found by the differential oracle: sysupdate expands `%w` to the host's VERSION_ID and
/// lists what that matches; lint warns that the match is the host's, and does not say the
/// pattern fails or matches nothing.
#[test]
fn transfer_pattern_with_a_host_specifier_is_a_warning_and_no_no_match() {
    let findings = release_dir(|d| {
        edit(d, "x.conf", |t| {
            t.replacen("MatchPattern=x-@v-%a.raw", "MatchPattern=x-@v-%w.raw", 1)
        })
    });
    let pattern: Vec<Severity> = findings
        .iter()
        .filter(|f| f.rule == "transfer/pattern")
        .map(|f| f.severity)
        .collect();
    assert_eq!(pattern, vec![Severity::Warning], "{findings:#?}");
    assert!(
        !findings.iter().any(|f| f.rule == "transfer/no-match"),
        "{findings:#?}"
    );
}

/// Found by the differential oracle: a SHA256SUMS with CRLF line ends fails every verb
/// ("Filename contains control characters at manifest line 1, refusing.").
#[test]
fn sums_syntax_catches_crlf_line_ends() {
    let findings = release_dir(|d| edit(d, "SHA256SUMS", |t| t.replace('\n', "\r\n")));
    let f = findings
        .iter()
        .find(|f| f.rule == "sums/syntax")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("CRLF"), "{}", f.message);
}

/// Found by the differential oracle (transfers, 2,000 at seed 7770001, 17 of them): an
/// unknown [Target] Type= is ignored and the type inferred from [Source]; list works.
#[test]
fn transfer_types_only_warns_about_an_unknown_target_type() {
    assert_eq!(
        release_dir_severities(
            |d| edit(d, "x.conf", |t| t.replace("Type=regular-file", "Type=file")),
            "transfer/types"
        ),
        vec![Severity::Warning]
    );
}

/// On a release that merges from the initrd (no ensure-sysext), a unit only a `.wants`
/// link starts is started at boot but not by a live refresh: a warning there, nothing on
/// a release with ensure-sysext, and nothing when the image upholds the unit.
#[test]
fn unit_wants_only_at_boot_fires_where_the_target_merges_from_the_initrd() {
    let rules = |spec: &str, upholds: bool| {
        let mut fx = Fx::raw("x.raw")
            .release(unit(true))
            .file("usr/bin/d", "#!/bin/sh\n")
            .file("usr/lib/systemd/system/d.service", &svc("/usr/bin/d"))
            .with(Item::Link(
                "usr/lib/systemd/system/multi-user.target.wants/d.service",
                "../d.service",
            ))
            .target_spec(spec);
        if upholds {
            fx = fx.file(
                "usr/lib/systemd/system/multi-user.target.d/10-d.conf",
                "[Unit]\nUpholds=d.service\n",
            );
        }
        fx.lint()
            .into_iter()
            .filter(|f| f.rule == "unit/wants-only-at-boot")
            .map(|f| (f.severity, f.path))
            .collect::<Vec<_>>()
    };
    let beta = rules("flatcar:beta", false);
    assert_eq!(
        beta,
        vec![(
            Severity::Warning,
            "usr/lib/systemd/system/multi-user.target.wants/d.service".to_string()
        )]
    );
    assert!(rules("flatcar:4628.0.0", false).len() == 1);
    assert!(rules("flatcar:stable", false).is_empty());
    assert!(rules("flatcar", false).is_empty());
    assert!(rules("flatcar:beta", true).is_empty());
}

/// Findings of `lint_together` over images written side by side (target Flatcar: the
/// built-ins take part).
fn together(images: &[Fx]) -> Vec<Finding> {
    let tmp = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = images.iter().map(|fx| fx.write(tmp.path())).collect();
    let linter = Linter::new(Options::default());
    linter
        .lint_together(&paths)
        .unwrap()
        .into_iter()
        .flat_map(|r| r.findings)
        .collect()
}

const PLUGIN: &str = "usr/libexec/docker/cli-plugins/docker-compose";

/// sysext-bakery#183: docker-buildx installed as `docker-compose`.
#[test]
fn collision_same_path_names_both_extensions_and_the_winner() {
    let f = together(&[
        Fx::raw("docker-compose-2.34.0-x86-64.raw").file(PLUGIN, "compose v2.34.0\n"),
        Fx::raw("docker-buildx-0.22.0-x86-64.raw").file(PLUGIN, "buildx v0.22.0\n"),
    ]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule, "collision/same-path");
    assert_eq!(f[0].path, PLUGIN);
    let m = &f[0].message;
    assert!(m.contains("docker-compose-2.34.0-x86-64.raw wins"), "{m}");
    assert!(m.contains("over docker-buildx-0.22.0-x86-64.raw"), "{m}");
    assert!(m.starts_with(&format!("/{PLUGIN}: ")), "{m}");
    // The same bytes in both, other arches, or one extension's releases: nothing.
    let same = together(&[
        Fx::raw("docker-compose-2.34.0-x86-64.raw").file(PLUGIN, "same\n"),
        Fx::raw("docker-buildx-0.22.0-x86-64.raw").file(PLUGIN, "same\n"),
    ]);
    assert!(same.is_empty(), "{same:?}");
    let apart = together(&[
        Fx::raw("docker-compose-2.34.0-x86-64.raw").file(PLUGIN, "compose\n"),
        Fx::raw("docker-buildx-0.22.0-arm64.raw")
            .release("ID=_any\nARCHITECTURE=arm64\n")
            .file(PLUGIN, "buildx\n"),
    ]);
    assert!(apart.is_empty(), "{apart:?}");
    let releases = together(&[
        Fx::raw("docker-compose-2.33.0-x86-64.raw").file(PLUGIN, "compose v2.33.0\n"),
        Fx::raw("docker-compose-2.34.0-x86-64.raw").file(PLUGIN, "compose v2.34.0\n"),
    ]);
    assert!(releases.is_empty(), "{releases:?}");
}

/// sysext-bakery#50: an OEM extension's drop-in of the same name hid kubernetes' Upholds=.
#[test]
fn collision_same_dropin_says_whose_settings_are_lost() {
    let d = "usr/lib/systemd/system/multi-user.target.d/10-services.conf";
    let f = together(&[
        Fx::raw("kubernetes-v1.32.2-x86-64.raw").file(d, "[Unit]\nUpholds=kubelet.service\n"),
        Fx::raw("oem-azure-4230.2.0-x86-64.raw").file(d, "[Unit]\nUpholds=waagent.service\n"),
    ]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule, "collision/same-dropin");
    assert!(
        f[0].message.contains("oem-azure-4230.2.0-x86-64.raw wins"),
        "{}",
        f[0].message
    );
    // The bakery's docker and containerd ship the same Upholds= drop-in, byte for byte.
    let d = "usr/lib/systemd/system/multi-user.target.d/10-containerd-service.conf";
    let same = together(&[
        Fx::raw("docker-28.0.4-x86-64.raw").file(d, "[Unit]\nUpholds=containerd.service\n"),
        Fx::raw("containerd-2.0.4-x86-64.raw").file(d, "[Unit]\nUpholds=containerd.service\n"),
    ]);
    assert!(same.is_empty(), "{same:?}");
}

/// Flatcar's docker-flatcar stacks above the bakery's docker unless masked.
#[test]
fn collision_builtin_above_asks_for_the_mask() {
    let f = together(&[
        Fx::raw("docker-28.0.4-x86-64.raw").file("usr/bin/docker", "bakery docker\n"),
        Fx::raw("wasmtime-v30.0.0-x86-64.raw").file("usr/bin/wasmtime", "wasmtime\n"),
    ]);
    let above: Vec<&Finding> = f
        .iter()
        .filter(|x| x.rule == "collision/builtin-above")
        .collect();
    assert_eq!(above.len(), 1, "{f:?}");
    assert!(
        above[0]
            .message
            .contains("/etc/extensions/docker-flatcar.raw")
    );
    // An extension whose name sorts after the built-in's wins over it: no mask needed.
    let f = together(&[
        Fx::raw("zz-docker-28.0.4-x86-64.raw").file("usr/bin/docker", "bakery docker\n"),
        Fx::raw("wasmtime-v30.0.0-x86-64.raw").file("usr/bin/wasmtime", "wasmtime\n"),
    ]);
    assert!(f.is_empty(), "{f:?}");
}
