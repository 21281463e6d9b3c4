//! Files taken out of Debian packages, for fixtures that need real binaries.
//!
//! Fixture binaries (busybox-static for amd64 and arm64) are fetched from Debian's archive at
//! build time and cached, never committed. We drive the host's `apt-get` with a private state
//! directory, so the host's own package lists and architecture setup are left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::cache;
use crate::errors::BuildError;

/// The suite fixtures come from: trixie, the same generation as our guests.
pub const SUITE: &str = "trixie";

fn mirror() -> String {
    std::env::var("SYSEXT_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// Returns a directory holding the unpacked contents of `package` for `arch`, downloading
/// it on first use.
pub fn unpacked(package: &str, arch: Arch) -> Result<PathBuf, BuildError> {
    if package.is_empty()
        || !package
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(BuildError::Spec(format!(
            "'{package}' is not a Debian package name"
        )));
    }
    let base = cache::root()
        .join("debs")
        .join(SUITE)
        .join(arch.debian_name());
    let dest = base.join(package);
    let _lock = cache::Lock::acquire(&base).map_err(|e| BuildError::io(&base, e))?;
    if dest.join(".complete").exists() {
        return Ok(dest);
    }
    let deb = download(package, arch, &base)?;
    let staging = base.join(format!(".{package}.unpack"));
    let _ = std::fs::remove_dir_all(&staging);
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging),
        "dpkg-deb",
        "dpkg",
    )?;
    std::fs::write(
        staging.join(".complete"),
        deb.file_name().unwrap_or_default().as_encoded_bytes(),
    )
    .map_err(|e| BuildError::io(&staging, e))?;
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest).map_err(|e| BuildError::io(&dest, e))?;
    Ok(dest)
}

fn download(package: &str, arch: Arch, base: &Path) -> Result<PathBuf, BuildError> {
    let state = base.join("apt");
    for d in [
        "state/lists/partial",
        "cache/archives/partial",
        "etc/sources.list.d",
        "etc/preferences.d",
        "debs",
    ] {
        std::fs::create_dir_all(state.join(d)).map_err(|e| BuildError::io(&state, e))?;
    }
    let sources = state.join("etc/sources.list");
    std::fs::write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {SUITE} main\n",
            mirror()
        ),
    )
    .map_err(|e| BuildError::io(&sources, e))?;
    let apt = |verb: &[&str], cwd: &Path| {
        let mut c = Command::new("apt-get");
        c.current_dir(cwd)
            .arg("-q")
            .arg("-o")
            .arg(format!("Dir::State={}", state.join("state").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", state.join("cache").display()))
            .arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", sources.display()))
            .arg("-o")
            .arg(format!(
                "Dir::Etc::SourceParts={}",
                state.join("etc/sources.list.d").display()
            ))
            .arg("-o")
            .arg(format!(
                "Dir::Etc::PreferencesParts={}",
                state.join("etc/preferences.d").display()
            ))
            .arg("-o")
            .arg(format!("APT::Architecture={}", arch.debian_name()))
            .arg("-o")
            .arg(format!("APT::Architectures={}", arch.debian_name()))
            .arg("-o")
            .arg("Debug::NoLocking=1")
            .args(verb);
        c
    };
    let lists_fresh = std::fs::read_dir(state.join("state/lists"))
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        })
        .unwrap_or(false);
    if !lists_fresh {
        run(&mut apt(&["update"], base), "apt-get update", "apt")?;
    }
    let debs = state.join("debs");
    run(
        &mut apt(&["download", package], &debs),
        "apt-get download",
        "apt",
    )?;
    let prefix = format!("{package}_");
    std::fs::read_dir(&debs)
        .map_err(|e| BuildError::io(&debs, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".deb")
        })
        .ok_or_else(|| {
            BuildError::Fetch(format!(
                "apt-get download {package} produced no .deb in {}",
                debs.display()
            ))
        })
}

fn run(cmd: &mut Command, what: &str, package: &str) -> Result<(), BuildError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BuildError::MissingTool {
            tool: program.clone(),
            package: package.into(),
        },
        _ => BuildError::Fetch(format!("{what}: {e}")),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return Err(BuildError::Fetch(format!(
            "{what} failed ({}): {last}",
            out.status
        )));
    }
    Ok(())
}
