//! Minimal, bounded ELF inspector.
//!
//! Reads only the bytes it needs (ELF header, program header table,
//! `PT_INTERP`, `PT_DYNAMIC` and the referenced dynamic strings) through the
//! [`ReadAt`] trait, so files stored compressed inside a squashfs image never
//! have to be decompressed whole. Every size taken from the file is checked
//! against the file length and against fixed caps before anything is read or
//! allocated; malformed input yields an [`ElfError`], never a panic.

use std::io;

/// Random access to a file's bytes (implemented elsewhere for squashfs files
/// and plain files).
pub trait ReadAt {
    /// Fill `buf` from `offset`; returns bytes read (short only at end of file).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Total length of the file in bytes.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(src) = self.get(start..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }

    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.as_slice().read_at(offset, buf)
    }

    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
}

/// Lets `&[u8]` (and any other `&impl ReadAt`) be passed as `&dyn ReadAt`.
impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(offset, buf)
    }

    fn len(&self) -> u64 {
        (**self).len()
    }
}

/// The four bytes every ELF file starts with.
pub const MAGIC: [u8; 4] = *b"\x7fELF";

/// `e_type` values.
pub const ET_REL: u16 = 1;
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;
pub const ET_CORE: u16 = 4;

/// `e_machine` values understood by [`machine_arch`].
pub const EM_386: u16 = 3;
pub const EM_MIPS: u16 = 8;
pub const EM_PPC: u16 = 20;
pub const EM_PPC64: u16 = 21;
pub const EM_S390: u16 = 22;
pub const EM_ARM: u16 = 40;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const EM_RISCV: u16 = 243;
pub const EM_LOONGARCH: u16 = 258;

/// Largest program header table (`e_phnum * e_phentsize`) we accept.
pub const MAX_PHDR_TABLE: u64 = 1 << 20;
/// Largest `PT_INTERP` segment we accept.
pub const MAX_INTERP: u64 = 4096;
/// Largest dynamic string (including its NUL) we accept.
pub const MAX_STRING: usize = 4096;
/// Most dynamic entries scanned before giving up without a `DT_NULL`.
pub const MAX_DYN_ENTRIES: u64 = 65536;
/// Most bytes of dynamic strings (needed, soname, runpath) collected per file.
pub const MAX_STRING_TOTAL: u64 = 1 << 20;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// `e_phnum` value meaning "the real count is in section header 0's `sh_info`".
const PN_XNUM: u16 = 0xffff;

/// Bytes read per chunk when scanning for a string's NUL.
const STRING_CHUNK: usize = 256;
/// Dynamic entries read per chunk.
const DYN_CHUNK_ENTRIES: usize = 64;

/// True when `head` starts with the ELF magic.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(&MAGIC)
}

/// What [`inspect`] learned about an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub class64: bool,
    pub little_endian: bool,
    /// `e_machine`.
    pub machine: u16,
    /// `e_type` (`ET_EXEC`=2, `ET_DYN`=3, `ET_REL`=1 ...).
    pub elf_type: u16,
    /// `PT_INTERP` contents without the trailing NUL.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` names, in order.
    pub needed: Vec<String>,
    /// `DT_SONAME`.
    pub soname: Option<String>,
    /// `DT_RUNPATH` (preferred, as the dynamic loader ignores `DT_RPATH` when
    /// both exist) or else `DT_RPATH`, split on `':'`. Empty components are
    /// kept (`"a::b"` gives `["a", "", "b"]`) so callers can flag them; an
    /// empty string gives no entries.
    pub runpath: Vec<String>,
}

impl ElfInfo {
    /// True for dynamically linked objects: those that have an interpreter or
    /// `DT_NEEDED` entries. Static executables (including static-pie, which has
    /// a `PT_DYNAMIC` but neither) and relocatable objects are not dynamic.
    pub fn is_dynamic(&self) -> bool {
        self.interpreter.is_some() || !self.needed.is_empty()
    }

    /// systemd architecture name for this file, see [`machine_arch`].
    pub fn arch(&self) -> Option<&'static str> {
        machine_arch(self.machine, self.class64, self.little_endian)
    }
}

/// Why an ELF file could not be inspected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    #[error("I/O error while reading {what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error("not an ELF file (bad magic)")]
    NotElf,
    #[error("unsupported ELF class {0} (expected 1 for ELF32 or 2 for ELF64)")]
    BadClass(u8),
    #[error("unsupported ELF data encoding {0} (expected 1 for little-endian or 2 for big-endian)")]
    BadEncoding(u8),
    #[error("{what} extends past end of file")]
    Truncated { what: &'static str },
    #[error("{what} is too large ({size} bytes, limit {limit})")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("invalid program header entry size {size} (need at least {min})")]
    BadPhentsize { size: u16, min: u16 },
    #[error("dynamic section refers to strings but has no DT_STRTAB")]
    MissingStrtab,
    #[error("DT_STRTAB address {0:#x} is not inside any PT_LOAD segment")]
    UnmappedStrtab(u64),
    #[error("dynamic string offset {offset:#x} is outside the string table (DT_STRSZ {strsz:#x})")]
    StringOutsideTable { offset: u64, strsz: u64 },
    #[error("dynamic string at file offset {offset:#x} is not NUL-terminated within {limit} bytes")]
    UnterminatedString { offset: u64, limit: usize },
    #[error("dynamic section has more than {0} entries without DT_NULL")]
    TooManyDynamicEntries(u64),
}

/// Maps an ELF machine to a systemd architecture name (as used by
/// `ARCHITECTURE=` in extension-release files and `ConditionArchitecture=`).
pub fn machine_arch(machine: u16, class64: bool, little_endian: bool) -> Option<&'static str> {
    Some(match machine {
        EM_X86_64 => "x86-64",
        EM_386 => "x86",
        EM_AARCH64 if little_endian => "arm64",
        EM_AARCH64 => "arm64-be",
        EM_ARM if little_endian => "arm",
        EM_ARM => "arm-be",
        EM_RISCV if class64 => "riscv64",
        EM_RISCV => "riscv32",
        EM_PPC64 if little_endian => "ppc64-le",
        EM_PPC64 => "ppc64",
        EM_PPC if little_endian => "ppc-le",
        EM_PPC => "ppc",
        EM_S390 if class64 => "s390x",
        EM_S390 => "s390",
        EM_LOONGARCH if class64 => "loongarch64",
        EM_MIPS => match (class64, little_endian) {
            (false, false) => "mips",
            (false, true) => "mips-le",
            (true, false) => "mips64",
            (true, true) => "mips64-le",
        },
        _ => return None,
    })
}

/// Byte order and word size of the file being decoded.
#[derive(Clone, Copy)]
struct Layout {
    class64: bool,
    le: bool,
}

impl Layout {
    fn u16(self, b: &[u8], off: usize) -> u16 {
        let a = [b[off], b[off + 1]];
        if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }

    fn u32(self, b: &[u8], off: usize) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[off..off + 4]);
        if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }

    fn u64(self, b: &[u8], off: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[off..off + 8]);
        if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }
}

/// The parts of a program header we use.
#[derive(Clone, Copy, Debug)]
struct Phdr {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Reads exactly `buf.len()` bytes at `offset`, or reports `what` as truncated.
fn read_exact_at(
    file: &dyn ReadAt,
    offset: u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), ElfError> {
    let end = offset.checked_add(buf.len() as u64);
    if end.is_none_or(|end| end > file.len()) {
        return Err(ElfError::Truncated { what });
    }
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(offset + done as u64, &mut buf[done..]) {
            Ok(0) => return Err(ElfError::Truncated { what }),
            Ok(n) => done += n.min(buf.len() - done),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ElfError::Io { what, source }),
        }
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes at `offset`; returns fewer only at end of file.
fn read_some_at(
    file: &dyn ReadAt,
    offset: u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<usize, ElfError> {
    let avail = file.len().saturating_sub(offset);
    let want = usize::try_from(avail).map_or(buf.len(), |a| a.min(buf.len()));
    let mut done = 0;
    while done < want {
        match file.read_at(offset + done as u64, &mut buf[done..want]) {
            Ok(0) => break,
            Ok(n) => done += n.min(want - done),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ElfError::Io { what, source }),
        }
    }
    Ok(done)
}

/// Reads a NUL-terminated string of at most `limit` bytes (NUL included) at
/// `offset`, in small chunks.
fn read_cstr(
    file: &dyn ReadAt,
    offset: u64,
    limit: usize,
    what: &'static str,
) -> Result<String, ElfError> {
    let mut out = Vec::new();
    let mut chunk = [0u8; STRING_CHUNK];
    while out.len() < limit {
        let want = (limit - out.len()).min(STRING_CHUNK);
        let pos = offset
            .checked_add(out.len() as u64)
            .ok_or(ElfError::Truncated { what })?;
        let n = read_some_at(file, pos, &mut chunk[..want], what)?;
        if n == 0 {
            return Err(ElfError::Truncated { what });
        }
        if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..nul]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Err(ElfError::UnterminatedString { offset, limit })
}

/// Inspects an ELF file: class, byte order, machine, type, interpreter and
/// the dynamic section's needed libraries, soname and runpath.
///
/// Reads only the headers and the referenced strings, never the whole file.
pub fn inspect(file: &dyn ReadAt) -> Result<ElfInfo, ElfError> {
    // ELF header: 16 bytes of e_ident, then 36 (ELF32) or 48 (ELF64) more.
    let mut ehdr = [0u8; 64];
    let got = read_some_at(file, 0, &mut ehdr, "ELF header")?;
    if got < MAGIC.len() || !is_elf(&ehdr[..got]) {
        return Err(ElfError::NotElf);
    }
    if got < 6 {
        return Err(ElfError::Truncated { what: "ELF header" });
    }
    let class64 = match ehdr[4] {
        1 => false,
        2 => true,
        c => return Err(ElfError::BadClass(c)),
    };
    let le = match ehdr[5] {
        1 => true,
        2 => false,
        d => return Err(ElfError::BadEncoding(d)),
    };
    let ehsize = if class64 { 64 } else { 52 };
    if got < ehsize {
        return Err(ElfError::Truncated { what: "ELF header" });
    }
    let l = Layout { class64, le };
    let elf_type = l.u16(&ehdr, 16);
    let machine = l.u16(&ehdr, 18);
    let (phoff, shoff, phentsize, phnum_raw) = if class64 {
        (
            l.u64(&ehdr, 32),
            l.u64(&ehdr, 40),
            l.u16(&ehdr, 54),
            l.u16(&ehdr, 56),
        )
    } else {
        (
            u64::from(l.u32(&ehdr, 28)),
            u64::from(l.u32(&ehdr, 32)),
            l.u16(&ehdr, 42),
            l.u16(&ehdr, 44),
        )
    };

    let mut info = ElfInfo {
        class64,
        little_endian: le,
        machine,
        elf_type,
        interpreter: None,
        needed: Vec::new(),
        soname: None,
        runpath: Vec::new(),
    };

    let phnum = if phnum_raw == PN_XNUM && shoff != 0 {
        // The real count lives in sh_info of section header 0.
        let sh_info_off = if class64 { 44 } else { 28 };
        let mut b = [0u8; 4];
        let pos = shoff.checked_add(sh_info_off).ok_or(ElfError::Truncated {
            what: "section header 0",
        })?;
        read_exact_at(file, pos, &mut b, "section header 0")?;
        u64::from(l.u32(&b, 0))
    } else {
        u64::from(phnum_raw)
    };
    if phnum == 0 {
        // Relocatable objects (kernel modules, .o files) have no program headers.
        return Ok(info);
    }

    let min_phentsize: u16 = if class64 { 56 } else { 32 };
    if phentsize < min_phentsize {
        return Err(ElfError::BadPhentsize {
            size: phentsize,
            min: min_phentsize,
        });
    }
    let table_size = phnum * u64::from(phentsize); // < 2^32 * 2^16, no overflow
    if table_size > MAX_PHDR_TABLE {
        return Err(ElfError::TooLarge {
            what: "program header table",
            size: table_size,
            limit: MAX_PHDR_TABLE,
        });
    }
    let mut table = vec![0u8; table_size as usize];
    read_exact_at(file, phoff, &mut table, "program header table")?;
    let phdrs: Vec<Phdr> = table
        .chunks_exact(usize::from(phentsize))
        .map(|e| {
            if class64 {
                Phdr {
                    p_type: l.u32(e, 0),
                    offset: l.u64(e, 8),
                    vaddr: l.u64(e, 16),
                    filesz: l.u64(e, 32),
                }
            } else {
                Phdr {
                    p_type: l.u32(e, 0),
                    offset: u64::from(l.u32(e, 4)),
                    vaddr: u64::from(l.u32(e, 8)),
                    filesz: u64::from(l.u32(e, 16)),
                }
            }
        })
        .collect();
    drop(table);

    if let Some(ph) = phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        if ph.filesz > MAX_INTERP {
            return Err(ElfError::TooLarge {
                what: "PT_INTERP segment",
                size: ph.filesz,
                limit: MAX_INTERP,
            });
        }
        let mut buf = vec![0u8; ph.filesz as usize];
        read_exact_at(file, ph.offset, &mut buf, "PT_INTERP segment")?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        info.interpreter = Some(String::from_utf8_lossy(&buf[..end]).into_owned());
    }

    if let Some(dynamic) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) {
        read_dynamic(file, l, dynamic, &phdrs, &mut info)?;
    }
    Ok(info)
}

/// Values collected from the dynamic section before strings are resolved.
#[derive(Default)]
struct DynRefs {
    strtab: Option<u64>,
    strsz: Option<u64>,
    needed: Vec<u64>,
    soname: Option<u64>,
    rpath: Option<u64>,
    runpath: Option<u64>,
}

fn read_dynamic(
    file: &dyn ReadAt,
    l: Layout,
    dynamic: &Phdr,
    phdrs: &[Phdr],
    info: &mut ElfInfo,
) -> Result<(), ElfError> {
    const WHAT: &str = "dynamic section";
    let entsize: usize = if l.class64 { 16 } else { 8 };
    let total = dynamic.filesz / entsize as u64;
    let mut refs = DynRefs::default();
    let mut buf = [0u8; 16 * DYN_CHUNK_ENTRIES];
    let mut idx = 0u64;
    'scan: while idx < total {
        if idx >= MAX_DYN_ENTRIES {
            return Err(ElfError::TooManyDynamicEntries(MAX_DYN_ENTRIES));
        }
        let n = (total - idx).min(DYN_CHUNK_ENTRIES as u64) as usize;
        let pos = dynamic
            .offset
            .checked_add(idx * entsize as u64)
            .ok_or(ElfError::Truncated { what: WHAT })?;
        let chunk = &mut buf[..n * entsize];
        read_exact_at(file, pos, chunk, WHAT)?;
        for e in chunk.chunks_exact(entsize) {
            let (tag, val) = if l.class64 {
                (l.u64(e, 0), l.u64(e, 8))
            } else {
                (u64::from(l.u32(e, 0)), u64::from(l.u32(e, 4)))
            };
            match tag {
                DT_NULL => break 'scan,
                DT_NEEDED => refs.needed.push(val),
                DT_STRTAB => {
                    refs.strtab.get_or_insert(val);
                }
                DT_STRSZ => {
                    refs.strsz.get_or_insert(val);
                }
                DT_SONAME => {
                    refs.soname.get_or_insert(val);
                }
                DT_RPATH => {
                    refs.rpath.get_or_insert(val);
                }
                DT_RUNPATH => {
                    refs.runpath.get_or_insert(val);
                }
                _ => {}
            }
        }
        idx += n as u64;
    }

    let path_ref = refs.runpath.or(refs.rpath);
    if refs.needed.is_empty() && refs.soname.is_none() && path_ref.is_none() {
        return Ok(());
    }
    let strtab_vaddr = refs.strtab.ok_or(ElfError::MissingStrtab)?;
    let strtab_off = phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .find(|p| strtab_vaddr >= p.vaddr && strtab_vaddr - p.vaddr < p.filesz)
        .and_then(|p| (strtab_vaddr - p.vaddr).checked_add(p.offset))
        .ok_or(ElfError::UnmappedStrtab(strtab_vaddr))?;

    let mut budget = MAX_STRING_TOTAL;
    let mut string = |str_off: u64| -> Result<String, ElfError> {
        let limit = match refs.strsz {
            Some(strsz) if str_off >= strsz => {
                return Err(ElfError::StringOutsideTable {
                    offset: str_off,
                    strsz,
                });
            }
            Some(strsz) => {
                usize::try_from(strsz - str_off).map_or(MAX_STRING, |r| r.min(MAX_STRING))
            }
            None => MAX_STRING,
        };
        let pos = strtab_off.checked_add(str_off).ok_or(ElfError::Truncated {
            what: "dynamic string",
        })?;
        let s = read_cstr(file, pos, limit, "dynamic string")?;
        let cost = s.len() as u64 + 1;
        if cost > budget {
            return Err(ElfError::TooLarge {
                what: "dynamic string data",
                size: MAX_STRING_TOTAL - budget + cost,
                limit: MAX_STRING_TOTAL,
            });
        }
        budget -= cost;
        Ok(s)
    };

    for &off in &refs.needed {
        let name = string(off)?;
        info.needed.push(name);
    }
    if let Some(off) = refs.soname {
        info.soname = Some(string(off)?);
    }
    if let Some(off) = path_ref {
        let path = string(off)?;
        if !path.is_empty() {
            info.runpath = path.split(':').map(str::to_owned).collect();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::cell::Cell;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    // ---------------------------------------------------------------- builder

    /// Virtual address of the single PT_LOAD of hand-built files (file offset 0).
    const BASE: u64 = 0x40_0000;
    const DT_DEBUG: u64 = 21;

    /// Description of a hand-built ELF file.
    #[derive(Clone, Default)]
    struct Spec {
        class64: bool,
        le: bool,
        machine: u16,
        elf_type: u16,
        interp: Option<String>,
        /// Emit PT_LOAD + PT_DYNAMIC.
        dynamic: bool,
        needed: Vec<String>,
        soname: Option<String>,
        rpath: Option<String>,
        runpath: Option<String>,
        /// Dynamic entries placed before the generated ones (first one wins).
        pre_dyn: Vec<(u64, u64)>,
        /// Leave out DT_STRTAB and DT_STRSZ.
        no_strtab: bool,
    }

    struct W {
        buf: Vec<u8>,
        le: bool,
        c64: bool,
    }

    impl W {
        fn u16(&mut self, v: u16) {
            let b = if self.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            self.buf.extend_from_slice(&b);
        }
        fn u32(&mut self, v: u32) {
            let b = if self.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            self.buf.extend_from_slice(&b);
        }
        fn u64(&mut self, v: u64) {
            let b = if self.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            self.buf.extend_from_slice(&b);
        }
        fn word(&mut self, v: u64) {
            if self.c64 {
                self.u64(v)
            } else {
                self.u32(u32::try_from(v).expect("ELF32 word"))
            }
        }
        fn phdr(&mut self, p_type: u32, offset: u64, vaddr: u64, filesz: u64) {
            if self.c64 {
                self.u32(p_type);
                self.u32(4); // p_flags
                self.u64(offset);
                self.u64(vaddr);
                self.u64(vaddr); // p_paddr
                self.u64(filesz);
                self.u64(filesz); // p_memsz
                self.u64(8); // p_align
            } else {
                self.u32(p_type);
                self.word(offset);
                self.word(vaddr);
                self.word(vaddr);
                self.word(filesz);
                self.word(filesz);
                self.u32(4);
                self.u32(8);
            }
        }
    }

    fn build(s: &Spec) -> Vec<u8> {
        let c64 = s.class64;
        let ehsize: u64 = if c64 { 64 } else { 52 };
        let phentsize: u64 = if c64 { 56 } else { 32 };
        let entsize: u64 = if c64 { 16 } else { 8 };
        let phnum = if s.dynamic {
            2 + u64::from(s.interp.is_some())
        } else {
            u64::from(s.interp.is_some())
        };
        let interp_off = ehsize + phnum * phentsize;
        let interp_bytes = s
            .interp
            .as_ref()
            .map(|i| format!("{i}\0").into_bytes())
            .unwrap_or_default();
        let strtab_off = interp_off + interp_bytes.len() as u64;

        let mut strtab = vec![0u8];
        let mut add = |text: &str| {
            let off = strtab.len() as u64;
            strtab.extend_from_slice(text.as_bytes());
            strtab.push(0);
            off
        };
        let mut entries = s.pre_dyn.clone();
        for n in &s.needed {
            entries.push((DT_NEEDED, add(n)));
        }
        if let Some(n) = &s.soname {
            entries.push((DT_SONAME, add(n)));
        }
        if let Some(n) = &s.rpath {
            entries.push((DT_RPATH, add(n)));
        }
        if let Some(n) = &s.runpath {
            entries.push((DT_RUNPATH, add(n)));
        }
        if !s.no_strtab {
            entries.push((DT_STRTAB, BASE + strtab_off));
            entries.push((DT_STRSZ, strtab.len() as u64));
        }
        entries.push((DT_NULL, 0));
        let dyn_off = (strtab_off + strtab.len() as u64).next_multiple_of(8);
        let dyn_size = entries.len() as u64 * entsize;
        let total = dyn_off + dyn_size;

        let mut w = W {
            buf: Vec::new(),
            le: s.le,
            c64,
        };
        w.buf.extend_from_slice(&MAGIC);
        w.buf.push(if c64 { 2 } else { 1 });
        w.buf.push(if s.le { 1 } else { 2 });
        w.buf.push(1); // EI_VERSION
        w.buf.resize(16, 0);
        w.u16(s.elf_type);
        w.u16(s.machine);
        w.u32(1); // e_version
        w.word(0); // e_entry
        w.word(if phnum > 0 { ehsize } else { 0 }); // e_phoff
        w.word(0); // e_shoff
        w.u32(0); // e_flags
        w.u16(ehsize as u16);
        w.u16(phentsize as u16);
        w.u16(phnum as u16);
        w.u16(if c64 { 64 } else { 40 }); // e_shentsize
        w.u16(0); // e_shnum
        w.u16(0); // e_shstrndx
        assert_eq!(w.buf.len() as u64, ehsize);
        if s.dynamic {
            w.phdr(PT_LOAD, 0, BASE, total);
        }
        if s.interp.is_some() {
            w.phdr(
                PT_INTERP,
                interp_off,
                BASE + interp_off,
                interp_bytes.len() as u64,
            );
        }
        if s.dynamic {
            w.phdr(PT_DYNAMIC, dyn_off, BASE + dyn_off, dyn_size);
        }
        w.buf.extend_from_slice(&interp_bytes);
        if !s.dynamic {
            return w.buf;
        }
        w.buf.extend_from_slice(&strtab);
        w.buf.resize(dyn_off as usize, 0);
        for (tag, val) in entries {
            w.word(tag);
            w.word(val);
        }
        assert_eq!(w.buf.len() as u64, total);
        w.buf
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// 32-bit big-endian ARM executable with the full set of dynamic entries.
    fn arm_be_spec() -> Spec {
        Spec {
            class64: false,
            le: false,
            machine: EM_ARM,
            elf_type: ET_EXEC,
            interp: Some("/lib/ld-linux.so.3".into()),
            dynamic: true,
            needed: strings(&["libfoo.so.1", "libc.so.6"]),
            soname: Some("libapp.so.2".into()),
            runpath: Some("/opt/app/lib:$ORIGIN/../lib".into()),
            ..Spec::default()
        }
    }

    fn patch_u16(buf: &mut [u8], off: usize, v: u16, le: bool) {
        let b = if le { v.to_le_bytes() } else { v.to_be_bytes() };
        buf[off..off + 2].copy_from_slice(&b);
    }

    fn patch_u64(buf: &mut [u8], off: usize, v: u64, le: bool) {
        let b = if le { v.to_le_bytes() } else { v.to_be_bytes() };
        buf[off..off + 8].copy_from_slice(&b);
    }

    fn err_msg(data: &[u8]) -> String {
        match inspect(&data) {
            Ok(info) => panic!("expected an error, got {info:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Runs `inspect`, turning a panic into a test failure that names the input.
    fn inspect_no_panic(data: &[u8], what: &dyn Fn() -> String) -> Result<ElfInfo, ElfError> {
        match catch_unwind(AssertUnwindSafe(|| inspect(&data))) {
            Ok(r) => r,
            Err(_) => panic!("inspect panicked on {}", what()),
        }
    }

    /// Deterministic xorshift64* generator for the fuzz-like tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Counts what `inspect` reads.
    struct Counting<'a> {
        data: &'a [u8],
        bytes: Cell<u64>,
        calls: Cell<u64>,
    }

    impl ReadAt for Counting<'_> {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.read_at(offset, buf)?;
            self.bytes.set(self.bytes.get() + n as u64);
            self.calls.set(self.calls.get() + 1);
            Ok(n)
        }
        fn len(&self) -> u64 {
            self.data.len() as u64
        }
    }

    /// Returns at most 3 bytes per call, and `Interrupted` every other call.
    struct Dribble<'a> {
        data: &'a [u8],
        flip: Cell<bool>,
    }

    impl ReadAt for Dribble<'_> {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.flip.set(!self.flip.get());
            if self.flip.get() {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(3);
            self.data.read_at(offset, &mut buf[..n])
        }
        fn len(&self) -> u64 {
            self.data.len() as u64
        }
    }

    /// Fails every read.
    struct Broken;

    impl ReadAt for Broken {
        fn read_at(&self, _: u64, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("device on fire"))
        }
        fn len(&self) -> u64 {
            4096
        }
    }

    // ------------------------------------------------------------ small API

    #[rstest]
    #[case::magic(b"\x7fELF\x02\x01", true)]
    #[case::magic_only(b"\x7fELF", true)]
    #[case::short(b"\x7fEL", false)]
    #[case::empty(b"", false)]
    #[case::script(b"#!/bin/sh\n", false)]
    #[case::wrong_case(b"\x7felf", false)]
    fn is_elf_cases(#[case] head: &[u8], #[case] expected: bool) {
        assert_eq!(is_elf(head), expected);
    }

    #[rstest]
    #[case::x86_64(EM_X86_64, true, true, Some("x86-64"))]
    #[case::x86(EM_386, false, true, Some("x86"))]
    #[case::arm64(EM_AARCH64, true, true, Some("arm64"))]
    #[case::arm64_be(EM_AARCH64, true, false, Some("arm64-be"))]
    #[case::arm(EM_ARM, false, true, Some("arm"))]
    #[case::arm_be(EM_ARM, false, false, Some("arm-be"))]
    #[case::riscv64(EM_RISCV, true, true, Some("riscv64"))]
    #[case::riscv32(EM_RISCV, false, true, Some("riscv32"))]
    #[case::ppc64(EM_PPC64, true, false, Some("ppc64"))]
    #[case::ppc64_le(EM_PPC64, true, true, Some("ppc64-le"))]
    #[case::ppc(EM_PPC, false, false, Some("ppc"))]
    #[case::ppc_le(EM_PPC, false, true, Some("ppc-le"))]
    #[case::s390x(EM_S390, true, false, Some("s390x"))]
    #[case::s390(EM_S390, false, false, Some("s390"))]
    #[case::loongarch64(EM_LOONGARCH, true, true, Some("loongarch64"))]
    #[case::loongarch32(EM_LOONGARCH, false, true, None)]
    #[case::mips(EM_MIPS, false, false, Some("mips"))]
    #[case::mips_le(EM_MIPS, false, true, Some("mips-le"))]
    #[case::mips64(EM_MIPS, true, false, Some("mips64"))]
    #[case::mips64_le(EM_MIPS, true, true, Some("mips64-le"))]
    #[case::none(0, true, true, None)]
    #[case::sparc(2, false, false, None)]
    #[case::unknown(0xffff, true, true, None)]
    fn machine_arch_table(
        #[case] machine: u16,
        #[case] class64: bool,
        #[case] le: bool,
        #[case] expected: Option<&str>,
    ) {
        assert_eq!(machine_arch(machine, class64, le), expected);
    }

    #[rstest]
    #[case::interp_and_needed(Some("/lib/ld.so"), &["libc.so.6"], true)]
    #[case::needed_only(None, &["libc.so.6"], true)]
    #[case::interp_only(Some("/lib/ld.so"), &[], true)]
    #[case::neither(None, &[], false)]
    fn is_dynamic_cases(
        #[case] interpreter: Option<&str>,
        #[case] needed: &[&str],
        #[case] expected: bool,
    ) {
        let info = ElfInfo {
            class64: true,
            little_endian: true,
            machine: EM_X86_64,
            elf_type: ET_DYN,
            interpreter: interpreter.map(str::to_owned),
            needed: strings(needed),
            soname: None,
            runpath: Vec::new(),
        };
        assert_eq!(info.is_dynamic(), expected);
    }

    #[test]
    fn slice_read_at_is_short_only_at_end() {
        let data: &[u8] = b"0123456789";
        let mut buf = [0u8; 4];
        assert_eq!(data.read_at(0, &mut buf).unwrap(), 4);
        assert_eq!(&buf, b"0123");
        assert_eq!(data.read_at(8, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"89");
        assert_eq!(data.read_at(10, &mut buf).unwrap(), 0);
        assert_eq!(data.read_at(u64::MAX, &mut buf).unwrap(), 0);
        assert_eq!(ReadAt::len(data), 10);
        let v = data.to_vec();
        assert_eq!(v.read_at(6, &mut buf).unwrap(), 4);
        assert_eq!(&buf, b"6789");
        assert!(!ReadAt::is_empty(&v));
        assert!(ReadAt::is_empty(&Vec::new()));
    }

    // ---------------------------------------------------- hand-built files

    #[test]
    fn arm32_big_endian_dynamic() {
        let data = build(&arm_be_spec());
        let info = inspect(&data).unwrap();
        assert_eq!(
            info,
            ElfInfo {
                class64: false,
                little_endian: false,
                machine: EM_ARM,
                elf_type: ET_EXEC,
                interpreter: Some("/lib/ld-linux.so.3".into()),
                needed: strings(&["libfoo.so.1", "libc.so.6"]),
                soname: Some("libapp.so.2".into()),
                runpath: strings(&["/opt/app/lib", "$ORIGIN/../lib"]),
            }
        );
        assert!(info.is_dynamic());
        assert_eq!(info.arch(), Some("arm-be"));
    }

    #[test]
    fn aarch64_little_endian_relocatable_machine_only() {
        let data = build(&Spec {
            class64: true,
            le: true,
            machine: EM_AARCH64,
            elf_type: ET_REL,
            ..Spec::default()
        });
        assert_eq!(data.len(), 64, "just an ELF header");
        let info = inspect(&data).unwrap();
        assert_eq!(
            info,
            ElfInfo {
                class64: true,
                little_endian: true,
                machine: EM_AARCH64,
                elf_type: ET_REL,
                interpreter: None,
                needed: Vec::new(),
                soname: None,
                runpath: Vec::new(),
            }
        );
        assert!(!info.is_dynamic());
        assert_eq!(info.arch(), Some("arm64"));
    }

    #[test]
    fn elf64_big_endian_shared_library() {
        let data = build(&Spec {
            class64: true,
            le: false,
            machine: EM_S390,
            elf_type: ET_DYN,
            dynamic: true,
            needed: strings(&["libc.so.6"]),
            soname: Some("libz.so.1".into()),
            ..Spec::default()
        });
        let info = inspect(&data).unwrap();
        assert_eq!(info.arch(), Some("s390x"));
        assert_eq!(info.elf_type, ET_DYN);
        assert_eq!(info.interpreter, None);
        assert_eq!(info.needed, strings(&["libc.so.6"]));
        assert_eq!(info.soname.as_deref(), Some("libz.so.1"));
        assert!(info.runpath.is_empty());
    }

    #[test]
    fn elf32_little_endian_static_pie_like() {
        // PT_DYNAMIC without DT_NEEDED and no interpreter: not dynamic, and no
        // DT_STRTAB is needed because no string is referenced.
        let data = build(&Spec {
            class64: false,
            le: true,
            machine: EM_386,
            elf_type: ET_DYN,
            dynamic: true,
            no_strtab: true,
            pre_dyn: vec![(DT_DEBUG, 0)],
            ..Spec::default()
        });
        let info = inspect(&data).unwrap();
        assert_eq!(info.arch(), Some("x86"));
        assert!(info.needed.is_empty());
        assert!(!info.is_dynamic());
    }

    #[rstest]
    #[case::runpath_wins(Some("/rpath"), Some("/a:/b"), &["/a", "/b"])]
    #[case::rpath_only(Some("/x:/y:/z"), None, &["/x", "/y", "/z"])]
    #[case::empty_component_kept(None, Some("/a::/b:"), &["/a", "", "/b", ""])]
    #[case::empty_string(None, Some(""), &[])]
    #[case::neither(None, None, &[])]
    fn runpath_selection(
        #[case] rpath: Option<&str>,
        #[case] runpath: Option<&str>,
        #[case] expected: &[&str],
    ) {
        let data = build(&Spec {
            class64: true,
            le: true,
            machine: EM_X86_64,
            elf_type: ET_DYN,
            dynamic: true,
            needed: strings(&["libc.so.6"]),
            rpath: rpath.map(str::to_owned),
            runpath: runpath.map(str::to_owned),
            ..Spec::default()
        });
        assert_eq!(inspect(&data).unwrap().runpath, strings(expected));
    }

    #[test]
    fn short_reads_and_interrupts_are_retried() {
        let data = build(&arm_be_spec());
        let expected = inspect(&data).unwrap();
        let dribble = Dribble {
            data: &data,
            flip: Cell::new(false),
        };
        assert_eq!(inspect(&dribble).unwrap(), expected);
    }

    #[test]
    fn io_errors_are_reported() {
        let err = inspect(&Broken).unwrap_err();
        assert!(matches!(err, ElfError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("device on fire"), "{err}");
    }

    #[test]
    fn pn_xnum_reads_count_from_section_header_zero() {
        let spec = Spec {
            class64: true,
            le: true,
            machine: EM_X86_64,
            elf_type: ET_DYN,
            interp: Some("/lib64/ld-linux-x86-64.so.2".into()),
            dynamic: true,
            needed: strings(&["libc.so.6"]),
            ..Spec::default()
        };
        let mut data = build(&spec);
        let expected = inspect(&data).unwrap();
        let shoff = data.len() as u64;
        let mut sh0 = vec![0u8; 64];
        sh0[44..48].copy_from_slice(&3u32.to_le_bytes()); // sh_info = real e_phnum
        data.extend_from_slice(&sh0);
        patch_u64(&mut data, 40, shoff, true);
        patch_u16(&mut data, 56, PN_XNUM, true);
        assert_eq!(inspect(&data).unwrap(), expected);
    }

    // ------------------------------------------------------------- errors

    #[rstest]
    #[case::empty(b"", "not an ELF file")]
    #[case::text(b"#!/bin/sh\necho hi\n", "not an ELF file")]
    #[case::magic_only(b"\x7fELF", "ELF header extends past end of file")]
    #[case::bad_class(b"\x7fELF\x03\x01\x01", "unsupported ELF class 3")]
    #[case::bad_encoding(b"\x7fELF\x02\x00\x01", "unsupported ELF data encoding 0")]
    #[case::short_header(
        b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0",
        "ELF header extends past end of file"
    )]
    fn header_errors(#[case] data: &[u8], #[case] msg: &str) {
        let got = err_msg(data);
        assert!(got.contains(msg), "{got:?} should contain {msg:?}");
    }

    #[test]
    fn program_header_table_past_end_of_file() {
        let mut data = build(&arm_be_spec());
        // e_phoff (ELF32 offset 28) just inside the file, table runs off the end.
        let phoff = (data.len() - 4) as u32;
        data[28..32].copy_from_slice(&phoff.to_be_bytes());
        assert_eq!(
            err_msg(&data),
            "program header table extends past end of file"
        );
        let err = inspect(&data).unwrap_err();
        assert!(matches!(
            err,
            ElfError::Truncated {
                what: "program header table"
            }
        ));
        // An offset that overflows u64 arithmetic is reported the same way.
        let mut data = build(&Spec {
            class64: true,
            le: true,
            machine: EM_X86_64,
            elf_type: ET_EXEC,
            dynamic: true,
            ..Spec::default()
        });
        patch_u64(&mut data, 32, u64::MAX - 8, true);
        assert_eq!(
            err_msg(&data),
            "program header table extends past end of file"
        );
    }

    #[test]
    fn program_header_table_too_large() {
        let mut data = build(&arm_be_spec());
        patch_u16(&mut data, 44, 0xfff0, false); // e_phnum
        patch_u16(&mut data, 42, 0x100, false); // e_phentsize
        let msg = err_msg(&data);
        assert!(
            msg.starts_with("program header table is too large"),
            "{msg}"
        );
    }

    #[test]
    fn program_header_entry_too_small() {
        let mut data = build(&arm_be_spec());
        patch_u16(&mut data, 42, 8, false);
        assert_eq!(
            err_msg(&data),
            "invalid program header entry size 8 (need at least 32)"
        );
    }

    #[test]
    fn interpreter_too_long() {
        let data = build(&Spec {
            interp: Some("/".repeat(5000)),
            ..arm_be_spec()
        });
        let msg = err_msg(&data);
        assert!(msg.starts_with("PT_INTERP segment is too large"), "{msg}");
    }

    #[test]
    fn needed_string_too_long() {
        let data = build(&Spec {
            needed: vec!["x".repeat(5000)],
            ..arm_be_spec()
        });
        let msg = err_msg(&data);
        assert!(
            msg.contains("not NUL-terminated within 4096 bytes"),
            "{msg}"
        );
        // 4095 characters plus the NUL is still accepted.
        let data = build(&Spec {
            needed: vec!["y".repeat(4095)],
            ..arm_be_spec()
        });
        assert_eq!(inspect(&data).unwrap().needed[0].len(), 4095);
    }

    #[test]
    fn strtab_not_in_any_load_segment() {
        let data = build(&Spec {
            pre_dyn: vec![(DT_STRTAB, 0x10)],
            ..arm_be_spec()
        });
        assert_eq!(
            err_msg(&data),
            "DT_STRTAB address 0x10 is not inside any PT_LOAD segment"
        );
    }

    #[test]
    fn strtab_missing() {
        let data = build(&Spec {
            no_strtab: true,
            ..arm_be_spec()
        });
        assert_eq!(
            err_msg(&data),
            "dynamic section refers to strings but has no DT_STRTAB"
        );
    }

    #[test]
    fn string_offset_outside_strsz() {
        let data = build(&Spec {
            pre_dyn: vec![(DT_NEEDED, 0x7fff)],
            ..arm_be_spec()
        });
        let msg = err_msg(&data);
        assert!(
            msg.starts_with("dynamic string offset 0x7fff is outside"),
            "{msg}"
        );
    }

    #[test]
    fn string_past_end_of_file_without_strsz() {
        let data = build(&Spec {
            pre_dyn: vec![(DT_STRSZ, u64::from(u32::MAX)), (DT_NEEDED, 0x7fff)],
            ..arm_be_spec()
        });
        assert_eq!(err_msg(&data), "dynamic string extends past end of file");
    }

    #[test]
    fn dynamic_section_without_dt_null_is_bounded() {
        let data = build(&Spec {
            pre_dyn: vec![(DT_DEBUG, 0); MAX_DYN_ENTRIES as usize + 1],
            ..arm_be_spec()
        });
        assert_eq!(
            err_msg(&data),
            "dynamic section has more than 65536 entries without DT_NULL"
        );
    }

    #[test]
    fn total_string_data_is_bounded() {
        // 400 DT_NEEDED entries all pointing at one 4000-byte string: ~1.6 MB.
        let mut spec = Spec {
            needed: vec!["z".repeat(4000)],
            ..arm_be_spec()
        };
        let probe = build(&spec);
        let off = inspect(&probe).map(|i| i.needed.len()).unwrap();
        assert_eq!(off, 1);
        spec.pre_dyn = vec![(DT_NEEDED, 1); 400]; // string offset 1 = first string
        let msg = err_msg(&build(&spec));
        assert!(msg.starts_with("dynamic string data is too large"), "{msg}");
    }

    #[test]
    fn every_truncation_of_a_hand_built_file_is_an_error() {
        for spec in [
            arm_be_spec(),
            Spec {
                class64: true,
                le: true,
                machine: EM_AARCH64,
                ..arm_be_spec()
            },
        ] {
            let data = build(&spec);
            inspect(&data).unwrap();
            for len in 0..data.len() {
                let r = inspect_no_panic(&data[..len], &|| format!("prefix of {len} bytes"));
                assert!(r.is_err(), "prefix of {len} bytes parsed: {r:?}");
            }
        }
    }

    #[test]
    fn every_byte_flip_of_a_hand_built_file_is_handled() {
        for spec in [
            arm_be_spec(),
            Spec {
                class64: true,
                le: true,
                machine: EM_AARCH64,
                ..arm_be_spec()
            },
        ] {
            let mut data = build(&spec);
            for pos in 0..data.len() {
                let orig = data[pos];
                for v in [orig ^ 0x01, orig ^ 0x80, 0x00, 0xff, 0x7f] {
                    data[pos] = v;
                    let _ = inspect_no_panic(&data, &|| format!("byte {pos} set to {v:#x}"));
                }
                data[pos] = orig;
            }
        }
    }

    // ------------------------------------------------------------ properties

    mod proptests {
        use super::*;
        use crate::props::check;
        use proptest::prelude::*;

        /// A hand-built file of either class and byte order.
        fn built() -> impl Strategy<Value = Vec<u8>> {
            (any::<bool>(), any::<bool>()).prop_map(|(class64, le)| {
                build(&Spec {
                    class64,
                    le,
                    machine: if class64 { EM_AARCH64 } else { EM_ARM },
                    ..arm_be_spec()
                })
            })
        }

        #[test]
        fn inspect_returns_ok_or_err_on_arbitrary_bytes() {
            let bytes = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..512),
                // The magic and a valid class and byte order, so the rest gets parsed.
                (
                    1u8..=2,
                    1u8..=2,
                    prop::collection::vec(any::<u8>(), 0..1024)
                )
                    .prop_map(|(class, data, rest)| [
                        &MAGIC[..],
                        &[class, data],
                        &rest
                    ]
                    .concat()),
            ];
            check(bytes, |bytes| {
                let _ = inspect(&bytes);
                Ok(())
            });
        }

        /// Overwrites and a cut anywhere in a valid file: an error or an answer, never a
        /// panic; and a cut file is never mistaken for the whole one.
        #[test]
        fn inspect_survives_overwritten_and_truncated_files() {
            let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6);
            check(
                (built(), edits, any::<prop::sample::Index>()),
                |(mut data, edits, cut)| {
                    prop_assert!(inspect(&data).is_ok());
                    let cut = cut.index(data.len());
                    prop_assert!(
                        inspect(&&data[..cut]).is_err(),
                        "a {}-byte prefix parsed",
                        cut
                    );
                    for (at, byte) in edits {
                        let i = at.index(data.len());
                        data[i] = byte;
                    }
                    let _ = inspect(&data);
                    let _ = inspect(&&data[..cut]);
                    Ok(())
                },
            );
        }

        /// A file that claims to be huge: a header, then one 16-byte word repeated.
        struct Huge {
            head: Vec<u8>,
            word: [u8; 16],
            len: u64,
            read: Cell<u64>,
        }

        impl ReadAt for Huge {
            fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
                let n = usize::try_from(self.len.saturating_sub(offset))
                    .map_or(buf.len(), |left| left.min(buf.len()));
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    let pos = offset + i as u64;
                    *b = match usize::try_from(pos).ok().and_then(|p| self.head.get(p)) {
                        Some(h) => *h,
                        None => self.word[(pos % 16) as usize],
                    };
                }
                self.read.set(self.read.get() + n as u64);
                Ok(n)
            }
            fn len(&self) -> u64 {
                self.len
            }
        }

        /// However large a file claims to be and whatever its tables say, inspect reads at
        /// most the capped tables and strings: a hostile image cannot make lint read it all.
        #[test]
        fn inspect_reads_a_bounded_amount_of_any_file() {
            // Program headers, interpreter, dynamic entries, strings: each capped, plus one
            // 256-byte chunk of overshoot per string read.
            let bound = MAX_PHDR_TABLE
                + 64
                + MAX_INTERP
                + MAX_DYN_ENTRIES * 16
                + MAX_STRING_TOTAL
                + MAX_DYN_ENTRIES * STRING_CHUNK as u64;
            let head = (
                1u8..=2,
                1u8..=2,
                prop::collection::vec(any::<u8>(), 58..200),
            )
                .prop_map(|(class, data, rest)| [&MAGIC[..], &[class, data], &rest].concat());
            let len = prop_oneof![Just(u64::MAX), 0u64..(1 << 40)];
            check((head, any::<[u8; 16]>(), len), |(head, word, len)| {
                let file = Huge {
                    head,
                    word,
                    len,
                    read: Cell::new(0),
                };
                let _ = inspect(&file);
                prop_assert!(file.read.get() <= bound, "read {} bytes", file.read.get());
                Ok(())
            });
        }
    }

    // ------------------------------------------------------- host binaries

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    mod host {
        use super::*;

        const LS: &str = "/bin/ls";
        const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

        fn read(path: &str) -> Vec<u8> {
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
        }

        #[test]
        fn bin_ls_is_dynamic_x86_64() {
            let info = inspect(&read(LS)).unwrap();
            assert!(info.class64);
            assert!(info.little_endian);
            assert_eq!(info.machine, EM_X86_64);
            assert_eq!(info.arch(), Some("x86-64"));
            assert!(matches!(info.elf_type, ET_DYN | ET_EXEC));
            assert_eq!(
                info.interpreter.as_deref(),
                Some("/lib64/ld-linux-x86-64.so.2")
            );
            assert!(info.needed.iter().any(|n| n == "libc.so.6"), "{info:?}");
            assert!(info.is_dynamic());
        }

        #[test]
        fn libc_has_soname_and_is_read_sparingly() {
            let data = read(LIBC);
            let counting = Counting {
                data: &data,
                bytes: Cell::new(0),
                calls: Cell::new(0),
            };
            let info = inspect(&counting).unwrap();
            assert_eq!(info.elf_type, ET_DYN);
            assert_eq!(info.soname.as_deref(), Some("libc.so.6"));
            assert!(
                info.needed.iter().any(|n| n.starts_with("ld-linux")),
                "{info:?}"
            );
            let (bytes, calls) = (counting.bytes.get(), counting.calls.get());
            eprintln!(
                "libc.so.6: {} bytes file, inspect read {bytes} bytes in {calls} calls",
                data.len()
            );
            assert!(bytes < 16 * 1024, "read {bytes} bytes");
            assert!(calls < 64, "{calls} read calls");
        }

        /// A binary out of a Debian package (fetched once, cached like every fixture
        /// binary), so these tests never depend on the host's toolchain.
        fn from_deb(package: &str, arch: crate::Arch, paths: &[&str]) -> Vec<u8> {
            let dir = crate::deb::unpacked(package, arch)
                .unwrap_or_else(|e| panic!("fetching {package} ({arch}): {e}"));
            paths
                .iter()
                .find_map(|p| std::fs::read(dir.join(p)).ok())
                .unwrap_or_else(|| panic!("{package} ships none of {paths:?}"))
        }

        #[test]
        fn static_binary_is_not_dynamic() {
            // busybox-static: a classic static executable (ET_EXEC, no PT_INTERP).
            for (arch, machine) in [
                (crate::Arch::X86_64, EM_X86_64),
                (crate::Arch::Arm64, EM_AARCH64),
            ] {
                let data = from_deb("busybox-static", arch, &["usr/bin/busybox", "bin/busybox"]);
                let info = inspect(&data).unwrap();
                assert_eq!(info.machine, machine, "{arch}");
                assert_eq!(info.elf_type, ET_EXEC, "{arch}");
                assert_eq!(info.interpreter, None, "{arch}");
                assert!(info.needed.is_empty(), "{arch}");
                assert!(!info.is_dynamic(), "{arch}");
            }
        }

        #[test]
        fn static_pie_binary_is_not_dynamic() {
            // glibc's ldconfig is static-pie: ET_DYN like a library, yet no loader and no
            // DT_NEEDED, the shape a naive "ET_DYN means dynamic" check gets wrong.
            let data = from_deb(
                "libc-bin",
                crate::Arch::X86_64,
                &["usr/sbin/ldconfig", "sbin/ldconfig"],
            );
            let info = inspect(&data).unwrap();
            assert_eq!(info.elf_type, ET_DYN);
            assert_eq!(info.interpreter, None);
            assert!(info.needed.is_empty());
            assert!(!info.is_dynamic());
        }

        #[test]
        fn truncations_of_bin_ls_never_panic() {
            let data = read(LS);
            // PT_DYNAMIC of /bin/ls lies beyond 4 KiB, so every such prefix fails.
            for len in 0..=4096.min(data.len()) {
                let r = inspect_no_panic(&data[..len], &|| format!("{LS} cut to {len} bytes"));
                assert!(r.is_err(), "{LS} cut to {len} bytes parsed: {r:?}");
            }
            for len in (4096..data.len()).step_by(61) {
                let _ = inspect_no_panic(&data[..len], &|| format!("{LS} cut to {len} bytes"));
            }
        }

        #[test]
        fn random_byte_flips_of_bin_ls_never_panic() {
            let mut data = read(LS);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let (mut ok, mut err) = (0, 0);
            for round in 0..3000 {
                let flips = 1 + rng.below(4);
                let mut saved = Vec::with_capacity(flips);
                for _ in 0..flips {
                    // Mostly the headers, sometimes anywhere (dynamic section, strings).
                    let pos = if rng.below(4) == 0 {
                        rng.below(data.len())
                    } else {
                        rng.below(4096)
                    };
                    saved.push((pos, data[pos]));
                    data[pos] ^= 1 << rng.below(8);
                }
                match inspect_no_panic(&data, &|| format!("round {round}, flips {saved:?}")) {
                    Ok(_) => ok += 1,
                    Err(_) => err += 1,
                }
                for &(pos, byte) in saved.iter().rev() {
                    data[pos] = byte;
                }
            }
            eprintln!("byte flips: {ok} Ok, {err} Err");
            assert!(ok > 0 && err > 0);
        }
    }
}
