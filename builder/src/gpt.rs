//! GUID partition tables, read and written in plain files: the Flatcar-shaped guest's disk
//! is assembled with it and `sysext-test bake` finds ROOT and OEM with it, in our guest and
//! in a real Flatcar image alike, with no loop device, no `sfdisk` and no root.
//!
//! Only what those two need: 512-byte sectors, 128 entries of 128 bytes, both copies of
//! the header and entries written, the primary one read (and its CRCs checked, so a
//! damaged table is an error instead of partitions at wrong offsets).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors the 128 entries take (16 KiB).
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
const SIGNATURE: &[u8; 8] = b"EFI PART";

/// Partition type GUIDs (as GPT tools print them) of Flatcar's `disk_layout.json`.
pub mod types {
    pub const EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    pub const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
    pub const COREOS_USR: &str = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6";
    pub const COREOS_RESERVED: &str = "C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0";
    pub const COREOS_RESIZE: &str = "3884DD41-8582-4404-B9A8-E9B84F2DF50E";
    pub const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
}

/// Why a disk's partition table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no GUID partition table ({detail}); give a whole-disk image such as flatcar_production_image.bin or the guest's disk", path.display())]
    NotGpt { path: PathBuf, detail: String },
    #[error("{}: partition table is damaged: {detail}", path.display())]
    Damaged { path: PathBuf, detail: String },
    #[error("{}: no partition labelled {label} (labels: {found})", path.display())]
    NoSuchLabel {
        path: PathBuf,
        label: String,
        found: String,
    },
}

/// One partition: its number (1-based, as the kernel names `vda9`), label and extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub label: String,
    pub type_guid: String,
    pub first_lba: u64,
    /// Inclusive, as GPT stores it.
    pub last_lba: u64,
    /// The partition's own GUID: what `PARTUUID=` names (Flatcar's `verity.usr=`).
    pub unique_guid: String,
    /// The attribute bits; Flatcar's GRUB reads the USR slots' priority, tries and
    /// successful flags from bits 48-56 ([`gptprio`]).
    pub attributes: u64,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// A partition to lay out: `number` keeps Flatcar's numbering even with gaps.
#[derive(Debug, Clone)]
pub struct Planned {
    pub number: u32,
    pub label: &'static str,
    pub type_guid: &'static str,
    pub mib: u64,
    pub attributes: u64,
}

/// ChromeOS' and Flatcar's A/B attribute bits (cgpt, Flatcar's GRUB `gptprio`): priority
/// in bits 48-51, tries left in 52-55, successful in 56. The slot with the highest priority
/// that is successful or has tries left boots.
pub mod gptprio {
    pub fn attributes(priority: u8, tries: u8, successful: bool) -> u64 {
        ((priority as u64 & 0xF) << 48) | ((tries as u64 & 0xF) << 52) | ((successful as u64) << 56)
    }

    pub fn priority(attributes: u64) -> u8 {
        ((attributes >> 48) & 0xF) as u8
    }

    pub fn successful(attributes: u64) -> bool {
        attributes >> 56 & 1 == 1
    }
}

/// The partitions of `disk`, by number.
pub fn read(disk: &Path) -> Result<Vec<Partition>, GptError> {
    let io = |e| GptError::Io {
        path: disk.to_path_buf(),
        source: e,
    };
    let mut f = File::open(disk).map_err(io)?;
    let mut header = [0u8; SECTOR as usize];
    f.seek(SeekFrom::Start(SECTOR)).map_err(io)?;
    f.read_exact(&mut header).map_err(|e| GptError::NotGpt {
        path: disk.to_path_buf(),
        detail: format!("cannot read sector 1: {e}"),
    })?;
    if &header[..8] != SIGNATURE {
        return Err(GptError::NotGpt {
            path: disk.to_path_buf(),
            detail: "sector 1 does not start with \"EFI PART\"".into(),
        });
    }
    let damaged = |detail: String| GptError::Damaged {
        path: disk.to_path_buf(),
        detail,
    };
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let header_size = u32_at(&header, 12) as usize;
    if !(92..=SECTOR as usize).contains(&header_size) {
        return Err(damaged(format!("header size {header_size}")));
    }
    let mut check = header[..header_size].to_vec();
    check[16..20].fill(0);
    if crc32(&check) != u32_at(&header, 16) {
        return Err(damaged("header CRC does not match".into()));
    }
    let entries_lba = u64_at(&header, 72);
    let count = u32_at(&header, 80) as u64;
    let size = u32_at(&header, 84) as u64;
    if !(128..=4096).contains(&size) || count > 1024 {
        return Err(damaged(format!("{count} entries of {size} bytes")));
    }
    let mut table = vec![0u8; (count * size) as usize];
    f.seek(SeekFrom::Start(entries_lba * SECTOR)).map_err(io)?;
    f.read_exact(&mut table)
        .map_err(|e| damaged(format!("entries at sector {entries_lba}: {e}")))?;
    if crc32(&table) != u32_at(&header, 88) {
        return Err(damaged("partition entries CRC does not match".into()));
    }
    let mut parts = Vec::new();
    for (i, e) in table.chunks(size as usize).enumerate() {
        if e[..16].iter().all(|b| *b == 0) {
            continue;
        }
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        parts.push(Partition {
            number: i as u32 + 1,
            label: String::from_utf16_lossy(&name),
            type_guid: guid_to_string(&e[..16]),
            first_lba: u64_at(e, 32),
            last_lba: u64_at(e, 40),
            unique_guid: guid_to_string(&e[16..32]),
            attributes: u64_at(e, 48),
        });
    }
    Ok(parts)
}

/// The partition of `disk` labelled `label`.
pub fn find(disk: &Path, label: &str) -> Result<Partition, GptError> {
    let parts = read(disk)?;
    parts
        .iter()
        .find(|p| p.label == label)
        .cloned()
        .ok_or_else(|| GptError::NoSuchLabel {
            path: disk.to_path_buf(),
            label: label.to_string(),
            found: parts
                .iter()
                .map(|p| format!("{}={}", p.number, p.label))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Writes a protective MBR and both GPT copies for `plan` into `disk` (made or grown to
/// fit, sparse), 1 MiB aligned, in the plan's order. Returns where each partition went.
/// GUIDs derive from `seed`, so the same plan makes the same bytes.
pub fn write(disk: &Path, plan: &[Planned], seed: &str) -> Result<Vec<Partition>, GptError> {
    let io = |e| GptError::Io {
        path: disk.to_path_buf(),
        source: e,
    };
    let mib = 1024 * 1024 / SECTOR;
    let mut next = mib;
    let mut parts = Vec::new();
    for p in plan {
        let first = next;
        let last = first + p.mib * mib - 1;
        next = last + 1;
        parts.push(Partition {
            number: p.number,
            label: p.label.to_string(),
            type_guid: p.type_guid.to_string(),
            first_lba: first,
            last_lba: last,
            unique_guid: guid_to_string(&derived_guid(seed, &format!("part{}", p.number))),
            attributes: p.attributes,
        });
    }
    // Room for the backup entries and header after the last partition.
    let total = next + mib;
    let last_lba = total - 1;
    let mut table = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for p in &parts {
        let e = &mut table[((p.number as u64 - 1) * ENTRY_SIZE) as usize..][..ENTRY_SIZE as usize];
        e[..16].copy_from_slice(&guid_from_string(&p.type_guid));
        e[16..32].copy_from_slice(&guid_from_string(&p.unique_guid));
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (i, c) in p.label.encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
    }
    let entries_crc = crc32(&table);
    let header = |current: u64, backup: u64, entries: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(last_lba - 1 - ENTRY_SECTORS).to_le_bytes());
        h[56..72].copy_from_slice(&derived_guid(seed, "disk"));
        h[72..80].copy_from_slice(&entries.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut mbr = vec![0u8; SECTOR as usize];
    let pe = &mut mbr[446..462];
    pe[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    pe[4] = 0xEE;
    pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    pe[8..12].copy_from_slice(&1u32.to_le_bytes());
    pe[12..16].copy_from_slice(&(last_lba.min(u32::MAX as u64) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let mut f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(disk)
        .map_err(io)?;
    if f.metadata().map_err(io)?.len() < total * SECTOR {
        f.set_len(total * SECTOR).map_err(io)?;
    }
    let mut put = |lba: u64, bytes: &[u8]| -> std::io::Result<()> {
        f.seek(SeekFrom::Start(lba * SECTOR))?;
        f.write_all(bytes)
    };
    put(0, &mbr).map_err(io)?;
    put(1, &header(1, last_lba, 2)).map_err(io)?;
    put(2, &table).map_err(io)?;
    put(last_lba - ENTRY_SECTORS, &table).map_err(io)?;
    put(last_lba, &header(last_lba, 1, last_lba - ENTRY_SECTORS)).map_err(io)?;
    Ok(parts)
}

/// CRC-32 (IEEE 802.3, reflected), as GPT checksums its header and entries.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// GPT stores the first three GUID fields little-endian.
fn guid_from_string(s: &str) -> [u8; 16] {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

fn guid_to_string(b: &[u8]) -> String {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[..16]);
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    uuid_text(&g).to_ascii_uppercase()
}

/// 16 bytes in their stored order as `8-4-4-4-12` lowercase hex (how filesystems and
/// `blkid` show a UUID; GPT's mixed-endian GUIDs swap the first three fields first).
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A version-4-shaped GUID from a hash, so rebuilding a disk gives the same bytes.
fn derived_guid(seed: &str, what: &str) -> [u8; 16] {
    let d = Sha256::digest(format!("{seed}\0{what}").as_bytes());
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    g[7] = (g[7] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Vec<Planned> {
        vec![
            Planned {
                number: 1,
                label: "EFI-SYSTEM",
                type_guid: types::EFI_SYSTEM,
                mib: 2,
                attributes: 0,
            },
            Planned {
                number: 9,
                label: "ROOT",
                type_guid: types::COREOS_RESIZE,
                mib: 3,
                attributes: 0,
            },
        ]
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guids_round_trip_in_gpt_byte_order() {
        let b = guid_from_string(types::COREOS_USR);
        assert_eq!(b[0], 0xF4, "first field is little-endian on disk");
        assert_eq!(guid_to_string(&b), types::COREOS_USR);
    }

    #[test]
    fn written_tables_read_back_with_numbers_labels_and_extents() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let written = write(&disk, &plan(), "t").unwrap();
        let read_back = read(&disk).unwrap();
        assert_eq!(written, read_back);
        let root = find(&disk, "ROOT").unwrap();
        assert_eq!(root.number, 9);
        assert_eq!(root.offset(), 3 * 1024 * 1024);
        assert_eq!(root.size(), 3 * 1024 * 1024);
        assert_eq!(root.type_guid, types::COREOS_RESIZE);
    }

    #[test]
    fn a_missing_label_names_the_labels_there_are() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        write(&disk, &plan(), "t").unwrap();
        let e = find(&disk, "OEM").unwrap_err().to_string();
        assert!(e.contains("no partition labelled OEM"), "{e}");
        assert!(e.contains("1=EFI-SYSTEM, 9=ROOT"), "{e}");
    }

    #[test]
    fn a_damaged_table_is_an_error_not_wrong_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        write(&disk, &plan(), "t").unwrap();
        let mut f = File::options().write(true).open(&disk).unwrap();
        f.seek(SeekFrom::Start(2 * SECTOR + 32)).unwrap();
        f.write_all(&[0xFF]).unwrap();
        drop(f);
        let e = read(&disk).unwrap_err().to_string();
        assert!(e.contains("entries CRC"), "{e}");
    }

    #[test]
    fn a_filesystem_image_is_not_gpt() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("fs.img");
        std::fs::write(&disk, vec![0u8; 4096]).unwrap();
        assert!(matches!(read(&disk), Err(GptError::NotGpt { .. })));
    }
}
