//! The smallest static programs that do one thing, for each arch: fixtures and the
//! differential oracle need a real ELF that execve runs (and lint's ELF reader reads)
//! without a toolchain or a package.

use serde::Deserialize;

use crate::Arch;

/// What the program does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TinyProgram {
    /// `exit(0)`.
    ExitZero,
    /// Writes to address 0: a real segmentation fault (the kernel's `segfault at 0`, a
    /// core dump where the limits allow one), not a signal sent to itself.
    Segfault,
}

impl TinyProgram {
    /// One ELF64 header, one loadable segment and the code for `arch`.
    pub fn elf(self, arch: Arch) -> Vec<u8> {
        let (machine, code): (u16, &[u8]) = match (arch, self) {
            // mov eax, 60; xor edi, edi; syscall
            (Arch::X86_64, TinyProgram::ExitZero) => {
                (62, &[0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05])
            }
            // mov dword [0], 0
            (Arch::X86_64, TinyProgram::Segfault) => {
                (62, &[0xc7, 0x04, 0x25, 0, 0, 0, 0, 0, 0, 0, 0])
            }
            // mov x0, #0; mov x8, #93; svc #0
            (Arch::Arm64, TinyProgram::ExitZero) => (
                183,
                &[
                    0x00, 0x00, 0x80, 0xd2, 0xa8, 0x0b, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4,
                ],
            ),
            // mov x0, #0; str x0, [x0]
            (Arch::Arm64, TinyProgram::Segfault) => {
                (183, &[0x00, 0x00, 0x80, 0xd2, 0x00, 0x00, 0x00, 0xf9])
            }
        };
        const BASE: u64 = 0x40_0000;
        const HEADERS: u64 = 64 + 56;
        let total = HEADERS + code.len() as u64;
        let mut b = Vec::with_capacity(total as usize);
        b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        b.extend_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
        b.extend_from_slice(&64u64.to_le_bytes()); // program headers
        b.extend_from_slice(&0u64.to_le_bytes()); // no section headers
        b.extend_from_slice(&0u32.to_le_bytes());
        for half in [64u16, 56, 1, 64, 0, 0] {
            b.extend_from_slice(&half.to_le_bytes());
        }
        b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        b.extend_from_slice(&5u32.to_le_bytes()); // R+X
        b.extend_from_slice(&0u64.to_le_bytes()); // offset
        b.extend_from_slice(&BASE.to_le_bytes());
        b.extend_from_slice(&BASE.to_le_bytes());
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&0x1000u64.to_le_bytes());
        b.extend_from_slice(code);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_program_is_a_static_elf_for_its_arch() {
        for arch in Arch::ALL {
            for p in [TinyProgram::ExitZero, TinyProgram::Segfault] {
                let b = p.elf(arch);
                let info = crate::elf::inspect(&b).unwrap_or_else(|e| panic!("{arch}: {e}"));
                assert_eq!(info.arch(), Some(arch.systemd_name()), "{arch}");
                assert!(info.interpreter.is_none());
            }
        }
    }

    /// The host's own arch runs them for real: exit 0, and SIGSEGV.
    #[test]
    fn the_host_runs_them_as_they_say() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::ExitStatusExt;
        let Some(arch) = Arch::host() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        for (p, want_signal) in [
            (TinyProgram::ExitZero, None),
            (TinyProgram::Segfault, Some(11)),
        ] {
            let path = dir.path().join(format!("{p:?}"));
            std::fs::write(&path, p.elf(arch)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            let st = std::process::Command::new(&path).status().unwrap();
            match want_signal {
                None => assert!(st.success(), "{p:?}: {st:?}"),
                Some(sig) => assert_eq!(st.signal(), Some(sig), "{p:?}: {st:?}"),
            }
        }
    }
}
