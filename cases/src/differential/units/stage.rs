//! Turns unit variants into image files: the tree of one variant (release file, unit,
//! drop-ins, links, the program it runs) packed with the format's own tool.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sysext_builder::Arch;

use super::variant::{Account, Activation, ExecIn, GuestAccounts, Program, UnitVariant, gone};
use crate::differential::stage::pack;
use crate::differential::variant::token;

const UNITS: &str = "usr/lib/systemd/system";

fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| io(p, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

fn link(path: &Path, target: &str) -> Result<(), String> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| io(p, e))?;
    }
    std::os::unix::fs::symlink(target, path).map_err(|e| io(path, e))
}

/// The smallest static program that exits 0, for `arch`.
pub fn exit_zero_elf(arch: Arch) -> Vec<u8> {
    sysext_builder::tiny_program::TinyProgram::ExitZero.elf(arch)
}

/// The name an account knob stands for in variant `index`.
pub fn account_name(a: Account, index: u32, pool: &[String], suffix: char) -> Option<String> {
    match a {
        Account::Unset => None,
        Account::Root => Some("root".into()),
        Account::Existing => pool
            .get(index as usize % pool.len().max(1))
            .cloned()
            .or_else(|| Some("root".into())),
        Account::Unknown => Some(format!("{}{suffix}", token(index))),
    }
}

/// The `ExecStart=` value of `v`.
fn exec_line(index: u32, v: &UnitVariant) -> String {
    let t = token(index);
    let program = match v.program {
        Program::HostTrue => "/bin/true".to_string(),
        Program::HostTrueBySearch => "true".to_string(),
        Program::Absent => format!("/usr/bin/{t}-absent"),
        Program::SbinCall | Program::SbinShipped => format!("/usr/sbin/{t}-run"),
        _ => format!("/usr/bin/{t}-run"),
    };
    format!("{}{program}", if v.dash { "-" } else { "" })
}

/// Stages the tree of variant `index` under `root`.
fn stage(
    root: &Path,
    index: u32,
    v: &UnitVariant,
    arch: Arch,
    accounts: &GuestAccounts,
) -> Result<(), String> {
    let t = token(index);
    let mut release = "ID=_any\n".to_string();
    if v.reload_manager {
        release.push_str("EXTENSION_RELOAD_MANAGER=1\n");
    }
    write(
        &root.join(format!("usr/lib/extension-release.d/extension-release.{t}")),
        release.as_bytes(),
        0o644,
    )?;
    let mode = if v.executable { 0o755 } else { 0o644 };
    let script = b"#!/bin/sh\nexit 0\n".to_vec();
    let shipped: Option<(String, Vec<u8>)> = match v.program {
        Program::Script | Program::SbinCall => Some((format!("usr/bin/{t}-run"), script)),
        Program::SbinShipped => Some((format!("usr/sbin/{t}-run"), script)),
        Program::Elf => Some((format!("usr/bin/{t}-run"), exit_zero_elf(arch))),
        Program::ElfOtherArch => {
            let other = Arch::ALL.into_iter().find(|a| *a != arch).unwrap_or(arch);
            Some((format!("usr/bin/{t}-run"), exit_zero_elf(other)))
        }
        Program::ScriptMissingInterpreter => Some((
            format!("usr/bin/{t}-run"),
            format!("#!/usr/bin/{t}-nointerp\nexit 0\n").into_bytes(),
        )),
        Program::HostTrue | Program::HostTrueBySearch | Program::Absent => None,
    };
    if let Some((path, bytes)) = shipped {
        write(&root.join(path), &bytes, mode)?;
    }

    let exec = exec_line(index, v);
    // RemainAfterExit=yes: a service whose program exited 0 stays active, so "ran" is
    // visible (an inactive unit nothing references is unloaded, its history with it) and
    // Upholds= does not restart it until the start limit.
    let mut unit = format!(
        "[Unit]\nDescription=differential unit\n\n[Service]\nType={}\nRemainAfterExit=yes\n",
        if v.oneshot { "oneshot" } else { "simple" }
    );
    let name = |a: Account, pool: &[String], c: char| account_name(a, index, pool, c);
    if let Some(u) = name(v.user, &accounts.users, 'u') {
        unit.push_str(&format!("User={u}\n"));
    }
    if let Some(g) = name(v.group, &accounts.groups, 'g') {
        unit.push_str(&format!("Group={g}\n"));
    }
    if let Some(g) = name(v.supplementary, &accounts.groups, 's') {
        unit.push_str(&format!("SupplementaryGroups={g}\n"));
    }
    if v.dynamic_user {
        unit.push_str("DynamicUser=yes\n");
    }
    match &v.exec_in {
        ExecIn::Unit => unit.push_str(&format!("ExecStart={exec}\n")),
        ExecIn::Twice => unit.push_str(&format!("ExecStart={exec}\nExecStart={exec}\n")),
        ExecIn::Nowhere => {}
        ExecIn::DropIn(suffix) => write(
            &root.join(format!("{UNITS}/{t}.service.d/10-exec{suffix}")),
            format!("[Service]\nExecStart={exec}\n").as_bytes(),
            0o644,
        )?,
    }
    write(
        &root.join(format!("{UNITS}/{t}.service")),
        unit.as_bytes(),
        0o644,
    )?;
    if let Some(s) = &v.socket {
        let mut text = format!(
            "[Unit]\nDescription=differential socket\n\n[Socket]\nListenStream=/run/{t}.sock\n"
        );
        if let Some(u) = name(s.user, &accounts.users, 'v') {
            text.push_str(&format!("SocketUser={u}\n"));
        }
        if let Some(g) = name(s.group, &accounts.groups, 'h') {
            text.push_str(&format!("SocketGroup={g}\n"));
        }
        write(
            &root.join(format!("{UNITS}/{t}.socket")),
            text.as_bytes(),
            0o644,
        )?;
    }
    match v.activation {
        Activation::Direct => {}
        Activation::Wants => link(
            &root.join(format!("{UNITS}/multi-user.target.wants/{t}.service")),
            &format!("../{t}.service"),
        )?,
        Activation::Upholds => write(
            &root.join(format!("{UNITS}/multi-user.target.d/{t}.conf")),
            format!("[Unit]\nUpholds={t}.service\n").as_bytes(),
            0o644,
        )?,
    }
    if v.dangling_link {
        let g = gone(index);
        link(
            &root.join(format!("{UNITS}/multi-user.target.wants/{g}")),
            &format!("../{g}"),
        )?;
    }
    Ok(())
}

/// Builds variant `index` as `run/extensions/dtNNNNN.raw` (or the directory
/// `run/extensions/dtNNNNN`) under `pool`.
pub fn build(
    pool: &Path,
    scratch: &Path,
    index: u32,
    v: &UnitVariant,
    arch: Arch,
    accounts: &GuestAccounts,
) -> Result<PathBuf, String> {
    let t = token(index);
    let tree = scratch.join(format!("unit-tree-{t}"));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).map_err(|e| io(&tree, e))?;
    stage(&tree, index, v, arch, accounts)?;
    let dir = pool.join("run/extensions");
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    if v.directory {
        let dest = dir.join(&t);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tree, &dest).map_err(|e| io(&dest, e))?;
        return Ok(dest);
    }
    let dest = dir.join(format!("{t}.raw"));
    let _ = std::fs::remove_file(&dest);
    pack(&tree, v.format, &dest)?;
    let _ = std::fs::remove_dir_all(&tree);
    Ok(dest)
}
