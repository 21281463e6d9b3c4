//! Turns generated variants into real image files with the formats' own tools: a tree is
//! staged on disk (xattrs and all, which our squashfs writer cannot set), then packed by
//! `mksquashfs` or `mkfs.erofs`, as an author's build would.
//!
//! Everything for one run goes under one pool directory laid out as the guest's root will
//! be: `run/extensions/` (entries systemd-sysext finds), `etc/extensions/` (masks) and
//! `store/` (bakery-named files that `run/extensions/NAME.raw` symlinks point at).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sysext_builder::naming;

use super::variant::{Deployment, FileName, Format, ImageVariant, Payload, ReleaseFile, token};

/// Where the pool is unpacked in the guest; bakery symlinks point into its `store/`.
pub const GUEST_POOL: &str = "/run/dt/pool";

/// The xattr systemd's fallback lookup reads (rule book B3).
const STRICT_XATTR: &str = "user.extension-release.strict";

/// One image as built: where lint reads it, and where the guest finds it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image file on the host.
    pub file: PathBuf,
    /// The entry systemd-sysext sees, relative to the pool (`run/extensions/x.raw`).
    pub entry: String,
}

/// The file name an image variant is built under, and the name systemd will give the
/// entry it is deployed as (a bakery file through its `NAME.raw` symlink, as the bakery's
/// docs install it).
pub fn names(index: u32, v: &ImageVariant) -> (String, String) {
    let t = token(index);
    let file = match &v.file {
        FileName::Plain => format!("{t}.raw"),
        FileName::Sysext => format!("{t}.sysext.raw"),
        FileName::Bakery { arch } => format!("{t}-1.2.3-{arch}.raw"),
        FileName::Underscore => format!("{t}_1.2.raw"),
        FileName::Plus => format!("{t}+3.raw"),
    };
    let image_name = match &v.file {
        FileName::Bakery { .. } => t,
        _ => naming::image_name(&file, false),
    };
    (file, image_name)
}

/// The extension-release text of `v`: only the keys it sets, in a fixed order.
pub fn release_text(v: &ImageVariant) -> String {
    let mut s = String::new();
    let mut line = |k: &str, val: &Option<String>| {
        if let Some(val) = val {
            s.push_str(&format!("{k}={val}\n"));
        }
    };
    line("ID", &v.id);
    line("VERSION_ID", &v.version_id);
    line("SYSEXT_LEVEL", &v.sysext_level);
    line("ARCHITECTURE", &v.architecture);
    line("SYSEXT_SCOPE", &v.scope);
    line("EXTENSION_RELOAD_MANAGER", &v.reload_manager);
    s
}

fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| io(p, e))?;
    }
    std::fs::write(path, text).map_err(|e| io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

/// Stages the tree of `v` (deployed as `index`, named `image_name`) under `root`.
fn stage_image(
    root: &Path,
    index: u32,
    image_name: &str,
    probe: &str,
    v: &ImageVariant,
) -> Result<(), String> {
    let t = token(index);
    let rel_dir = root.join("usr/lib/extension-release.d");
    std::fs::create_dir_all(&rel_dir).map_err(|e| io(&rel_dir, e))?;
    let text = release_text(v);
    let mut release_files = Vec::new();
    match v.release {
        ReleaseFile::Exact => {
            release_files.push(rel_dir.join(format!("extension-release.{image_name}")))
        }
        ReleaseFile::Cut => release_files.push(rel_dir.join(format!("extension-release.{t}"))),
        ReleaseFile::Other => release_files.push(rel_dir.join("extension-release.other")),
        ReleaseFile::TwoOthers => {
            release_files.push(rel_dir.join("extension-release.other1"));
            release_files.push(rel_dir.join("extension-release.other2"));
        }
        ReleaseFile::None => {}
        ReleaseFile::ConfextOnly => release_files.push(root.join(format!(
            "etc/extension-release.d/extension-release.{image_name}"
        ))),
        ReleaseFile::Directory => {
            let d = rel_dir.join(format!("extension-release.{image_name}"));
            std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
        }
        ReleaseFile::DanglingSymlink => {
            let l = rel_dir.join(format!("extension-release.{image_name}"));
            std::os::unix::fs::symlink("../../../nowhere/release", &l).map_err(|e| io(&l, e))?;
        }
    }
    for f in &release_files {
        write(f, &text, 0o644)?;
        if let Some(value) = &v.strict {
            xattr::set(f, STRICT_XATTR, value.as_bytes()).map_err(|e| io(f, e))?;
        }
    }
    let usr_probe = root.join(format!("usr/share/{t}/probe"));
    let opt_probe = root.join(format!("opt/{t}/probe"));
    match v.payload {
        Payload::Usr => write(&usr_probe, probe, 0o644)?,
        Payload::Opt => write(&opt_probe, probe, 0o644)?,
        Payload::UsrAndOpt => {
            write(&usr_probe, probe, 0o644)?;
            write(&opt_probe, probe, 0o644)?;
        }
        Payload::ReleaseOnly => {}
        Payload::Sbin => {
            write(&usr_probe, probe, 0o644)?;
            write(
                &root.join(format!("usr/sbin/{t}-probe")),
                "#!/bin/sh\n",
                0o755,
            )?;
        }
    }
    if v.os_release_inside {
        write(&root.join("usr/lib/os-release"), "ID=_any\n", 0o644)?;
    }
    if let Some(o) = &v.outside {
        let p = match o.as_str() {
            "var" => root.join(format!("var/lib/{t}-probe")),
            _ => root.join(format!("etc/{t}-probe")),
        };
        write(&p, probe, 0o644)?;
    }
    Ok(())
}

/// Packs `tree` into `dest` with the format's own tool.
pub fn pack(tree: &Path, format: Format, dest: &Path) -> Result<(), String> {
    match format {
        Format::Squashfs => sysext_builder::squashfs_tools::pack(tree, dest, &[]),
        Format::Erofs => sysext_builder::host_tool::output(
            Command::new("mkfs.erofs")
                .args(["--all-root", "--quiet", "-T0"])
                .arg(dest)
                .arg(tree),
            "erofs-utils",
        )
        .map(|_| ()),
    }
    .map_err(|e| e.to_string())
}

fn build_one(
    pool: &Path,
    scratch: &Path,
    index: u32,
    v: &ImageVariant,
    image_name: &str,
    file: &str,
    probe: &str,
) -> Result<PathBuf, String> {
    let tree = scratch.join(format!("tree-{file}"));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).map_err(|e| io(&tree, e))?;
    stage_image(&tree, index, image_name, probe, v)?;
    let dest = pool.join("store").join(file);
    std::fs::create_dir_all(pool.join("store")).map_err(|e| io(pool, e))?;
    pack(&tree, v.format, &dest)?;
    let _ = std::fs::remove_dir_all(&tree);
    Ok(dest)
}

/// A good image for the deployment kinds that test placement, not content: `ID=_any`,
/// its exact release file.
fn good(format: Format) -> ImageVariant {
    ImageVariant::plainest(format)
}

/// Builds every file of deployment `index` into the pool and lays out its entries.
pub fn build(
    pool: &Path,
    scratch: &Path,
    index: u32,
    d: &Deployment,
) -> Result<Vec<Built>, String> {
    let t = token(index);
    let run = pool.join("run/extensions");
    std::fs::create_dir_all(&run).map_err(|e| io(&run, e))?;
    let link = |file: &str, entry: &str| -> Result<String, String> {
        let at = run.join(entry);
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(format!("{GUEST_POOL}/store/{file}"), &at)
            .map_err(|e| io(&at, e))?;
        Ok(format!("run/extensions/{entry}"))
    };
    match d {
        Deployment::Single { image } | Deployment::Masked { image } => {
            let (file, name) = names(index, image);
            let path = build_one(pool, scratch, index, image, &name, &file, &file)?;
            let entry = match image.file {
                FileName::Bakery { .. } => link(&file, &format!("{name}.raw"))?,
                _ => {
                    let at = run.join(&file);
                    std::fs::rename(&path, &at).map_err(|e| io(&at, e))?;
                    format!("run/extensions/{file}")
                }
            };
            if matches!(d, Deployment::Masked { .. }) {
                let mask = pool.join("etc/extensions").join(&name);
                std::fs::create_dir_all(&mask).map_err(|e| io(&mask, e))?;
            }
            // Lint reads the built file itself (a bakery entry is a symlink into the
            // guest's pool path).
            let file = match image.file {
                FileName::Bakery { .. } => path,
                _ => pool.join(&entry),
            };
            Ok(vec![Built { file, entry }])
        }
        Deployment::Versioned { format, files } => {
            let dir = run.join(format!("{t}.raw.v"));
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let mut out = Vec::new();
            for (version, arch) in files {
                let file = match arch {
                    Some(a) => format!("{t}_{version}_{a}.raw"),
                    None => format!("{t}_{version}.raw"),
                };
                let path = build_one(pool, scratch, index, &good(*format), &t, &file, &file)?;
                let at = dir.join(&file);
                std::fs::rename(&path, &at).map_err(|e| io(&at, e))?;
                out.push(Built {
                    file: at,
                    entry: format!("run/extensions/{t}.raw.v/{file}"),
                });
            }
            Ok(out)
        }
        Deployment::Stacked { format, suffixes } => {
            let mut out = Vec::new();
            for s in suffixes {
                let name = format!("{t}{s}");
                let file = format!("{name}.raw");
                let tree = scratch.join(format!("tree-{file}"));
                let _ = std::fs::remove_dir_all(&tree);
                stage_image(&tree, index, &name, &name, &good(*format))?;
                write(
                    &tree.join(format!("usr/share/dtstack/{t}/winner")),
                    &name,
                    0o644,
                )?;
                // Each image's own probe would collide: keep only the shared file.
                let _ = std::fs::remove_dir_all(tree.join(format!("usr/share/{t}")));
                let at = run.join(&file);
                pack(&tree, *format, &at)?;
                let _ = std::fs::remove_dir_all(&tree);
                out.push(Built {
                    file: at,
                    entry: format!("run/extensions/{file}"),
                });
            }
            Ok(out)
        }
    }
}

/// Packs `entries` of `dir` (`.` for all of it) into a tar; symlinks stay symlinks, which
/// the guest's tar restores.
pub fn pack_tar(dir: &Path, entries: &[String], tar: &Path) -> Result<(), String> {
    sysext_builder::host_tool::output(
        Command::new("tar")
            .arg("-cf")
            .arg(tar)
            .arg("-C")
            .arg(dir)
            .args(entries),
        "tar",
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Uploads a tar of generated inputs and unpacks it as the guest's pool, after clearing
/// the pool and `clear` (what the last run left) and making `make`.
pub fn upload_pool(
    vm: &sysext_harness::Vm,
    tar: &Path,
    clear: &[&str],
    make: &[&str],
) -> Result<(), String> {
    let remote = "/run/dt/pool.tar";
    let out = vm
        .upload_and_batch(
            tar,
            remote,
            &[&format!(
                "rm -rf {GUEST_POOL} {} && mkdir -p {GUEST_POOL} {} && tar -xmf {remote} -C {GUEST_POOL} && rm -f {remote}",
                clear.join(" "),
                make.join(" ")
            )],
        )
        .map_err(|e| format!("guest: {e}"))?;
    if out[0].status != 0 {
        return Err(format!(
            "guest: unpacking the generated inputs: {}",
            out[0].combined()
        ));
    }
    Ok(())
}
