//! Oracle tests: what we build and what we read, checked against tools nobody here wrote
//! (squashfs-tools, the Linux kernel, erofs-utils).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sysext_builder::build::{self, Format};
use sysext_builder::image::{Image, Kind};
use sysext_builder::spec::Compression;
use sysext_cases::fixtures;
use sysext_cases::lint::{Finding, Linter, Options, Severity};

fn require(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "host tool {tool} is missing: apt-get install {package} (.ci/run does this)"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build_fixture(
    name: &str,
    out: &Path,
    compression: Option<Compression>,
    format: Format,
) -> PathBuf {
    let spec = fixtures::root()
        .join("extensions")
        .join(format!("{name}.toml"));
    let opts = build::Options {
        compression,
        format,
        ..Default::default()
    };
    build::build(&spec, out, &opts).unwrap().image
}

/// `(path, kind letter, mode, uid, gid, symlink target)` for every entry, as unsquashfs
/// `-lln` prints them.
type Listing = BTreeMap<String, (char, u16, u32, u32, Option<String>)>;

fn unsquashfs_listing(image: &Path) -> Listing {
    let text = run(Command::new("unsquashfs")
        .arg("-lln")
        .arg("-d")
        .arg("")
        .arg(image));
    let mut out = Listing::new();
    for line in text
        .lines()
        .filter(|l| l.len() > 10 && "-dlcbps".contains(&l[..1]))
    {
        // Columns: perms uid/gid size date time path [-> target]
        let cols: Vec<&str> = line.split_whitespace().collect();
        let perms = cols[0];
        let (uid, gid) = cols[1].split_once('/').unwrap();
        let tail = line[line.find(cols[4]).unwrap() + cols[4].len()..].trim();
        let (path, target) = match tail.split_once(" -> ") {
            Some((p, t)) => (p, Some(t.to_string())),
            None => (tail, None),
        };
        let entry = (
            perms.as_bytes()[0] as char,
            mode_bits(perms),
            uid.parse().unwrap(),
            gid.parse().unwrap(),
            target,
        );
        out.insert(path.trim_start_matches('/').to_string(), entry);
    }
    out
}

fn mode_bits(perms: &str) -> u16 {
    let p = perms.as_bytes();
    let mut m = 0u16;
    for (i, bit) in [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1]
        .iter()
        .enumerate()
    {
        let c = p[i + 1];
        if c != b'-' && c != b'S' && c != b'T' {
            m |= bit;
        }
    }
    if matches!(p[3], b's' | b'S') {
        m |= 0o4000;
    }
    if matches!(p[6], b's' | b'S') {
        m |= 0o2000;
    }
    if matches!(p[9], b't' | b'T') {
        m |= 0o1000;
    }
    m
}

fn our_listing(image: &Image) -> Listing {
    image
        .entries()
        .iter()
        .map(|e| {
            let (k, t) = match &e.kind {
                Kind::Dir => ('d', None),
                Kind::File => ('-', None),
                Kind::Symlink(t) => ('l', Some(t.clone())),
                Kind::CharDevice { .. } => ('c', None),
                Kind::BlockDevice => ('b', None),
                Kind::Fifo => ('p', None),
                Kind::Socket => ('s', None),
            };
            let mode = if k == 'l' { 0o777 } else { e.mode };
            (e.path.clone(), (k, mode, e.uid, e.gid, t))
        })
        .collect()
}

fn unsquash(image: &Path, dest: &Path) {
    run(Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(dest)
        .arg(image));
}

/// Every regular file's bytes through our reader, against a tree on disk.
fn assert_same_contents(image: &Image, tree: &Path) {
    for e in image.entries().iter().filter(|e| e.is_file()) {
        let ours = image.read(&e.path, 1 << 30).unwrap();
        let theirs = std::fs::read(tree.join(&e.path)).unwrap();
        assert!(
            ours == theirs,
            "{}: contents differ ({} vs {} bytes)",
            e.path,
            ours.len(),
            theirs.len()
        );
    }
}

#[test]
fn built_images_list_and_extract_identically_with_unsquashfs() {
    require("unsquashfs", "squashfs-tools");
    for compression in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
        for fixture in ["busybox", "hello-service", "broken-dropin-suffix"] {
            let tmp = tempfile::tempdir().unwrap();
            let img = build_fixture(fixture, tmp.path(), Some(compression), Format::Squashfs);
            let image = Image::open(&img).unwrap();
            assert_eq!(
                our_listing(&image),
                unsquashfs_listing(&img),
                "{fixture} {compression:?}"
            );
            let x = tmp.path().join("x");
            unsquash(&img, &x);
            assert_same_contents(&image, &x);
        }
    }
}

#[test]
fn two_builds_of_one_spec_are_byte_identical() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ia = build_fixture("hello-service", a.path(), None, Format::Squashfs);
    let ib = build_fixture("hello-service", b.path(), None, Format::Squashfs);
    assert_eq!(std::fs::read(ia).unwrap(), std::fs::read(ib).unwrap());
    assert_eq!(
        std::fs::read(a.path().join("SHA256SUMS")).unwrap(),
        std::fs::read(b.path().join("SHA256SUMS")).unwrap()
    );
}

/// A tree the way the bakery's create.sh leaves it, with a release file named `release`.
fn bakery_tree(dir: &Path, release: &str, arch_line: &str) -> PathBuf {
    let root = dir.join("tree");
    std::fs::create_dir_all(root.join("usr/lib/extension-release.d")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::write(
        root.join(format!(
            "usr/lib/extension-release.d/extension-release.{release}"
        )),
        format!("ID=_any\n{arch_line}"),
    )
    .unwrap();
    let busybox = sysext_builder::deb::unpacked("busybox-static", sysext_builder::Arch::X86_64)
        .unwrap()
        .join("usr/bin/busybox");
    std::fs::copy(busybox, root.join("usr/bin/busybox")).unwrap();
    root
}

fn mksquashfs(tree: &Path, out: &Path, extra: &[&str]) {
    require("mksquashfs", "squashfs-tools");
    run(Command::new("mksquashfs")
        .arg(tree)
        .arg(out)
        .args(["-all-root", "-noappend", "-quiet"])
        .args(extra));
}

fn setfattr(path: &Path, value: &str) {
    xattr::set(path, "user.extension-release.strict", value.as_bytes()).unwrap();
}

fn lint(path: &Path) -> Vec<Finding> {
    Linter::new(Options::default())
        .lint_path(path)
        .unwrap()
        .into_iter()
        .flat_map(|r| r.findings)
        .collect()
}

fn errors_and_warnings(f: &[Finding]) -> Vec<&Finding> {
    f.iter()
        .filter(|f| f.severity >= Severity::Warning)
        .collect()
}

#[test]
fn mksquashfs_bakery_release_dir_lints_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = bakery_tree(tmp.path(), "busybox", "ARCHITECTURE=x86-64\n");
    let rel = tmp.path().join("release");
    std::fs::create_dir(&rel).unwrap();
    let img = rel.join("busybox-1.37.0-x86-64.raw");
    mksquashfs(&tree, &img, &[]);
    let digest = sysext_builder::sha256sums::digest_file(&img).unwrap();
    std::fs::write(
        rel.join("SHA256SUMS"),
        format!("{digest}  busybox-1.37.0-x86-64.raw\n"),
    )
    .unwrap();
    std::fs::write(
        rel.join("busybox.conf"),
        sysext_builder::transfer::render_bakery("busybox", sysext_builder::transfer::BAKERY_HUB),
    )
    .unwrap();
    let f = lint(&rel);
    assert!(errors_and_warnings(&f).is_empty(), "{f:#?}");
}

#[test]
fn renamed_image_with_strict_xattr_is_clean_and_without_it_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = bakery_tree(tmp.path(), "other", "ARCHITECTURE=x86-64\n");
    let release = tree.join("usr/lib/extension-release.d/extension-release.other");

    let plain = tmp.path().join("renamed.raw");
    mksquashfs(&tree, &plain, &[]);
    assert!(
        lint(&plain)
            .iter()
            .any(|f| f.rule == "release/name-mismatch")
    );

    setfattr(&release, "0");
    let with_xattr = tmp.path().join("renamed2.raw");
    mksquashfs(&tree, &with_xattr, &[]);
    let f = lint(&with_xattr);
    assert!(errors_and_warnings(&f).is_empty(), "{f:#?}");
    assert!(
        f.iter().any(|f| f.rule == "release/strict-xattr-fallback"),
        "{f:#?}"
    );

    // The pitfall: an image built without xattrs loses the rescue (rule book B6).
    let stripped = tmp.path().join("renamed3.raw");
    mksquashfs(&tree, &stripped, &["-no-xattrs"]);
    assert!(
        lint(&stripped)
            .iter()
            .any(|f| f.rule == "release/name-mismatch")
    );
}

#[test]
fn two_fallback_candidates_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = bakery_tree(tmp.path(), "a", "ARCHITECTURE=x86-64\n");
    let dir = tree.join("usr/lib/extension-release.d");
    std::fs::write(dir.join("extension-release.b"), "ID=_any\n").unwrap();
    setfattr(&dir.join("extension-release.a"), "0");
    setfattr(&dir.join("extension-release.b"), "0");
    let img = tmp.path().join("c.raw");
    mksquashfs(&tree, &img, &[]);
    let f = lint(&img);
    assert!(
        f.iter()
            .any(|f| f.rule == "release/ambiguous" && f.severity == Severity::Error),
        "{f:#?}"
    );
}

/// Unmounts on drop so a failed assertion does not leave a mount behind.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn host_kernel_mounts_a_built_image_with_the_same_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let img = build_fixture(
        "busybox",
        tmp.path(),
        Some(Compression::Zstd),
        Format::Squashfs,
    );
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-o", "loop,ro", "-t", "squashfs"])
        .arg(&img)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "loop-mounting a built image failed (this test needs root and loop devices): {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let _guard = Mount(mnt.clone());
    let image = Image::open(&img).unwrap();
    assert_same_contents(&image, &mnt);
    let dir_image = Image::open(&mnt).unwrap();
    assert_eq!(our_listing(&image), our_listing(&dir_image));
}

#[test]
fn erofs_images_build_and_lint_like_squashfs() {
    require("mkfs.erofs", "erofs-utils");
    require("fsck.erofs", "erofs-utils");
    let tmp = tempfile::tempdir().unwrap();
    let img = build_fixture("hello-service", tmp.path(), None, Format::Erofs);
    let image = Image::open(&img).unwrap();
    assert_eq!(image.format.name(), "erofs");
    assert!(
        image
            .get("usr/bin/hello-daemon")
            .is_some_and(|e| e.is_file() && e.mode == 0o755 && e.uid == 0)
    );
    let f = lint(&img);
    assert!(errors_and_warnings(&f).is_empty(), "{f:#?}");
}

#[test]
fn lint_of_extracted_tree_matches_lint_of_image() {
    require("unsquashfs", "squashfs-tools");
    let tmp = tempfile::tempdir().unwrap();
    for fixture in [
        "broken-missing-library",
        "broken-unit-exec",
        "broken-usr-sbin",
    ] {
        let img = build_fixture(fixture, tmp.path(), None, Format::Squashfs);
        let name = sysext_cases::lint::rules::naming::triple(
            &img.file_name().unwrap().to_string_lossy(),
            &[],
        )
        .unwrap()
        .name;
        let x = tmp.path().join(&name);
        unsquash(&img, &x);
        let rules = |p: &Path| -> Vec<&'static str> {
            let mut v: Vec<_> = lint(p)
                .into_iter()
                .filter(|f| !f.rule.starts_with("naming/"))
                .map(|f| f.rule)
                .collect();
            v.sort();
            v
        };
        let (from_image, from_tree) = (rules(&img), rules(&x));
        // Every fixture here is broken on purpose: equal lists prove something only when
        // both found it.
        assert!(
            !from_image.is_empty(),
            "{fixture}: lint found nothing in the image"
        );
        assert_eq!(from_image, from_tree, "{fixture}");
    }
}

#[test]
fn ext4_images_are_read_through_debugfs() {
    require("mke2fs", "e2fsprogs");
    require("debugfs", "e2fsprogs");
    let tmp = tempfile::tempdir().unwrap();
    let tree = bakery_tree(tmp.path(), "busybox", "ARCHITECTURE=x86-64\n");
    let img = tmp.path().join("busybox.raw");
    run(Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-E", "root_owner=0:0", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("16M"));
    let image = Image::open(&img).unwrap();
    assert_eq!(image.format.name(), "ext4");
    assert!(image.get("usr/bin/busybox").is_some_and(|e| e.is_file()));
    let f = lint(&img);
    assert!(!f.iter().any(|f| f.severity == Severity::Error), "{f:#?}");
}

/// A tree with every shape of file data mksquashfs writes: multi-block files with and
/// without a tail, a tail in a fragment, small files sharing a fragment, a duplicate (its
/// blocks stored once), a sparse file (a hole), an empty file, incompressible bytes
/// (blocks stored uncompressed).
fn data_shapes(dir: &Path) -> PathBuf {
    let root = bakery_tree(dir, "shapes", "ARCHITECTURE=x86-64\n");
    let share = root.join("usr/share/shapes");
    std::fs::create_dir_all(&share).unwrap();
    let text = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|i| b"squashfs data shapes\n"[i % 21] ^ (i / 4096) as u8)
            .collect()
    };
    let noise = |n: usize| -> Vec<u8> {
        let mut x = 0x9e37_79b9_u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    std::fs::write(share.join("three-blocks"), text(3 * 131_072)).unwrap();
    std::fs::write(share.join("with-tail"), text(2 * 131_072 + 5_000)).unwrap();
    std::fs::write(share.join("copy-of-with-tail"), text(2 * 131_072 + 5_000)).unwrap();
    std::fs::write(share.join("noise"), noise(300_000)).unwrap();
    std::fs::write(share.join("empty"), b"").unwrap();
    for i in 0..20 {
        std::fs::write(share.join(format!("small-{i}")), text(1_000 + i * 700)).unwrap();
    }
    let mut sparse = text(4 * 131_072);
    sparse[131_072..2 * 131_072].fill(0);
    std::fs::write(share.join("sparse"), sparse).unwrap();
    root
}

#[test]
fn every_block_of_mksquashfs_images_reads_back_whole_and_a_flipped_one_does_not() {
    require("unsquashfs", "squashfs-tools");
    let tmp = tempfile::tempdir().unwrap();
    let tree = data_shapes(tmp.path());
    let layouts: [&[&str]; 3] = [&[], &["-no-fragments"], &["-always-use-fragments"]];
    for comp in ["gzip", "xz", "zstd"] {
        for extra in layouts {
            let img = tmp.path().join(format!("{comp}{}.raw", extra.join("")));
            let mut args = vec!["-comp", comp];
            args.extend_from_slice(extra);
            mksquashfs(&tree, &img, &args);
            let unreadable: Vec<_> = lint(&img)
                .into_iter()
                .filter(|f| f.rule == "content/unreadable-file")
                .collect();
            assert!(unreadable.is_empty(), "{comp} {extra:?}: {unreadable:#?}");
        }
    }
    // mksquashfs writes data right after the superblock: flip a byte in the middle of the
    // first file's first block, which unsquashfs then cannot extract either.
    let img = tmp.path().join("gzip.raw");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[96 + 20_000] ^= 0x40;
    let bad = tmp.path().join("flipped.raw");
    std::fs::write(&bad, &bytes).unwrap();
    let extracted = Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(tmp.path().join("out"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !extracted.status.success() || !extracted.stderr.is_empty(),
        "unsquashfs read the flipped image"
    );
    assert!(
        lint(&bad)
            .iter()
            .any(|f| f.rule == "content/unreadable-file" && f.severity == Severity::Error),
        "lint missed the flipped block"
    );
}
