//! A minimal `newc` cpio writer, enough for an initramfs the kernel unpacks.

use std::io::{self, Write};

/// Writes `newc` archive entries; call [`Cpio::finish`] to add the trailer.
pub struct Cpio<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Cpio<W> {
        Cpio { out, ino: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let namesize = name.len() + 1;
        write!(
            self.out,
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            namesize,
            0
        )?;
        self.ino += 1;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        pad(&mut self.out, 110 + namesize)?;
        self.out.write_all(data)?;
        pad(&mut self.out, data.len())
    }

    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, 0o040755, &[])
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | (mode & 0o7777), data)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, &[])?;
        Ok(self.out)
    }
}

fn pad(out: &mut impl Write, len: usize) -> io::Result<()> {
    let n = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cpio_lists_what_we_wrote() {
        let mut c = Cpio::new(Vec::new());
        c.dir("bin").unwrap();
        c.file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        let bytes = c.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, &bytes).unwrap();
        let Ok(out) = std::process::Command::new("cpio")
            .arg("-itv")
            .arg("-F")
            .arg(&archive)
            .output()
        else {
            panic!("cpio is missing: apt-get install cpio (.ci/setup installs it)");
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(listing.contains("bin/hello"), "{listing}");
        assert!(listing.contains("-rwxr-xr-x"), "{listing}");
    }
}
