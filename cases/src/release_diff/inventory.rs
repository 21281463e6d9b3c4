//! What one image holds that a release diff compares: its paths, its executables (and what
//! their ELF headers ask of the host), its units as systemd would read them (the file and
//! its drop-ins), the units it starts at boot, and its extension-release fields.
//!
//! Read through [`Image`], so nothing is extracted and an inventory of a 100 MB image reads a
//! few KiB per binary.

use std::collections::{BTreeMap, BTreeSet};

use sysext_builder::elf;
use sysext_builder::image::{Image, Kind, facts};
use sysext_builder::unitfile::IniFile;

use super::units::Unit;

/// What an executable's ELF header says; `None` for a script or other non-ELF program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// systemd's name for the machine (`x86-64`), or `machine 0xNN` for one it has none for.
    pub arch: String,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Inventory {
    /// Every path but directories, with a short kind (`file`, `symlink -> T`, ...).
    pub paths: BTreeMap<String, String>,
    /// Regular files with an execute bit, by path, with their ELF facts.
    pub executables: BTreeMap<String, Option<Binary>>,
    /// Units shipped or given drop-ins by the image, by name.
    pub units: BTreeMap<String, Unit>,
    /// Units the image pulls in at boot (`*.wants/`, `*.upholds/`, `Upholds=` drop-ins).
    pub started_at_boot: BTreeSet<String>,
    /// The extension-release file's fields, in file order.
    pub release: Vec<(String, String)>,
}

impl Inventory {
    pub fn read(image: &Image) -> Inventory {
        let mut inv = Inventory::default();
        for e in image.entries() {
            let kind = match &e.kind {
                Kind::Dir => continue,
                Kind::File => "file".to_string(),
                Kind::Symlink(t) => format!("symlink -> {t}"),
                Kind::CharDevice { major, minor } => format!("char device {major}:{minor}"),
                Kind::BlockDevice => "block device".into(),
                Kind::Fifo => "fifo".into(),
                Kind::Socket => "socket".into(),
            };
            inv.paths.insert(format!("/{}", e.path), kind);
            if e.is_file() && e.mode & 0o111 != 0 {
                inv.executables
                    .insert(format!("/{}", e.path), binary(image, &e.path));
            }
        }
        for (path, name) in facts::unit_files(image) {
            let text = read_text(image, &path);
            inv.units.entry(name).or_default().file = Some((format!("/{path}"), text));
        }
        for (unit, dropin, path) in dropins(image) {
            let text = read_text(image, &path);
            inv.units
                .entry(unit)
                .or_default()
                .dropins
                .insert(dropin, text);
        }
        inv.started_at_boot = facts::enabled_units(image).into_iter().collect();
        let names = facts::release_names(image);
        if let [only] = names.as_slice()
            && let Some(release) = facts::release(image, only)
        {
            inv.release = release.entries().to_vec();
        }
        inv
    }
}

fn read_text(image: &Image, path: &str) -> IniFile {
    let resolved = image.resolve(path).unwrap_or_else(|| path.to_string());
    let bytes = image.read(&resolved, 1 << 20).unwrap_or_default();
    IniFile::parse(&String::from_utf8_lossy(&bytes))
}

fn binary(image: &Image, path: &str) -> Option<Binary> {
    let mut head = [0u8; 4];
    image.read_head(path, &mut head).ok()?;
    if !elf::is_elf(&head) {
        return None;
    }
    let file = image.open_file(path).ok()?;
    let info = elf::inspect(file.as_ref()).ok()?;
    Some(Binary {
        arch: info
            .arch()
            .map(str::to_string)
            .unwrap_or_else(|| format!("machine {:#x}", info.machine)),
        interpreter: info.interpreter,
        needed: info.needed,
    })
}

/// `(unit, drop-in file name, path in the image)` for every `UNIT.d/*.conf` in a unit
/// directory, in the order systemd applies them (by file name).
fn dropins(image: &Image) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for e in image.entries() {
        if !matches!(e.kind, Kind::File | Kind::Symlink(_)) {
            continue;
        }
        for dir in facts::UNIT_DIRS {
            let Some(rest) = e.path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let Some((sub, file)) = rest.split_once('/') else {
                continue;
            };
            if let Some(unit) = sub.strip_suffix(".d")
                && file.ends_with(".conf")
                && !file.contains('/')
                && facts::is_unit_name(unit)
            {
                out.push((unit.to_string(), file.to_string(), e.path.clone()));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}
