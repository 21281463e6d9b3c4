//! Decompressing squashfs data blocks into a caller's buffer, with a decoder kept per thread.
//!
//! backhand's `DefaultCompressor` allocates a fresh output `Vec` and a fresh decoder state for
//! every block and inflates with zlib-rs; checking every block of a 233 MB image spent most of
//! lint's time there. These are the fastest decoders the crates offer for each format
//! (measured on the blocks of a gzip image of /usr/lib/x86_64-linux-gnu: libdeflate 0.77 s
//! single-threaded for 701 MB of output, zlib-rs 0.93 s with its CPU detection and 1.35 s
//! as backhand builds it): libdeflate for zlib streams (it checks the adler32 like zlib
//! does), the reference zstd library with one context reused, and liblzma's one-shot decoder
//! for xz, which is what unsquashfs and Linux call too. Other compressors (lzo, lz4, lzma)
//! fall back to backhand.

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};

/// Why a block did not decompress.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// More output than the buffer (the block size) holds: no reader accepts such a block.
    #[error("it decompresses to more than {limit} bytes")]
    TooLarge { limit: usize },
    /// The compressor's own verdict (a bad stream or checksum).
    #[error("{0}")]
    Corrupt(String),
}

enum Backend {
    /// libdeflate for whole blocks; zlib-rs (created on first use) for prefixes, which
    /// libdeflate cannot stop at.
    Gzip(
        Box<libdeflater::Decompressor>,
        Option<Box<flate2::Decompress>>,
    ),
    Zstd(Box<zstd::bulk::Decompressor<'static>>),
    Xz,
    /// Compressors no faster crate is wired for: backhand decodes them (or says it cannot).
    Backhand(Compressor),
}

/// One thread's decoder for one image's compressor.
pub(crate) struct Decoder {
    backend: Backend,
    /// Room for a whole block where only a prefix was asked for (zstd and the rest), kept
    /// so that reading a few bytes of a file costs no megabyte of zeroing.
    whole: Vec<u8>,
}

impl Decoder {
    pub(crate) fn new(compressor: Compressor) -> Result<Decoder, DecodeError> {
        let backend = match compressor {
            Compressor::Gzip => Backend::Gzip(Box::new(libdeflater::Decompressor::new()), None),
            Compressor::Zstd => Backend::Zstd(Box::new(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| DecodeError::Corrupt(format!("zstd: {e}")))?,
            )),
            Compressor::Xz => Backend::Xz,
            other => Backend::Backhand(other),
        };
        Ok(Decoder {
            backend,
            whole: Vec::new(),
        })
    }

    /// Decompresses one whole block from `raw` into `out` and returns its length; output
    /// that does not fit in `out` is an error, so `out` is sized to the most a block may
    /// hold.
    pub(crate) fn decompress(&mut self, raw: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
        let limit = out.len();
        match &mut self.backend {
            Backend::Gzip(d, _) => d.zlib_decompress(raw, out).map_err(|e| match e {
                libdeflater::DecompressionError::InsufficientSpace => {
                    DecodeError::TooLarge { limit }
                }
                libdeflater::DecompressionError::BadData => {
                    DecodeError::Corrupt("not a valid zlib stream".into())
                }
            }),
            Backend::Zstd(d) => {
                // A frame records its content size (mksquashfs and backhand write it).
                if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(raw)
                    && n > limit as u64
                {
                    return Err(DecodeError::TooLarge { limit });
                }
                d.decompress_to_buffer(raw, out)
                    .map_err(|e| DecodeError::Corrupt(format!("zstd: {e}")))
            }
            Backend::Xz => xz(raw, out),
            Backend::Backhand(c) => {
                let mut v = Vec::with_capacity(limit);
                DefaultCompressor
                    .decompress(raw, &mut v, *c)
                    .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
                let dest = out
                    .get_mut(..v.len())
                    .ok_or(DecodeError::TooLarge { limit })?;
                dest.copy_from_slice(&v);
                Ok(v.len())
            }
        }
    }
}

impl Decoder {
    /// Decodes the start of a block into `out` and stops when it is full: returns how many
    /// bytes came out and whether the stream ended (then that is the whole block). Checksums
    /// at the end of the stream are not reached; this is for reading a file's bytes, not
    /// for vouching for them.
    pub(crate) fn decompress_prefix(
        &mut self,
        raw: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, bool), DecodeError> {
        match &mut self.backend {
            Backend::Gzip(_, z) => {
                let z = z.get_or_insert_with(|| Box::new(flate2::Decompress::new(true)));
                z.reset(true);
                let status = z
                    .decompress(raw, out, flate2::FlushDecompress::Finish)
                    .map_err(|e| DecodeError::Corrupt(format!("zlib: {e}")))?;
                Ok((z.total_out() as usize, status == flate2::Status::StreamEnd))
            }
            Backend::Xz => {
                let corrupt = |e: liblzma::stream::Error| DecodeError::Corrupt(format!("xz: {e}"));
                let mut s =
                    liblzma::stream::Stream::new_stream_decoder(u64::MAX, 0).map_err(corrupt)?;
                let status = s
                    .process(raw, out, liblzma::stream::Action::Finish)
                    .map_err(corrupt)?;
                Ok((
                    s.total_out() as usize,
                    status == liblzma::stream::Status::StreamEnd,
                ))
            }
            // zstd writes a squashfs block as one frame block: nothing to gain by stopping.
            Backend::Zstd(_) | Backend::Backhand(_) => {
                let mut whole = std::mem::take(&mut self.whole);
                whole.resize(MAX_BLOCK, 0);
                let n = self.decompress(raw, &mut whole);
                let k = n.as_ref().map_or(0, |n| (*n).min(out.len()));
                out[..k].copy_from_slice(&whole[..k]);
                self.whole = whole;
                let n = n?;
                Ok((k, k == n))
            }
        }
    }
}

thread_local! {
    /// This thread's decoder and a buffer for compressed bytes, kept between reads: lint's
    /// rules read a few KiB of thousands of files, and a fresh decoder and buffers for each
    /// read left glibc's heap fragmented three times the size of what was live.
    static SCRATCH: std::cell::RefCell<Option<(Compressor, Decoder, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's decoder for `compressor` and its compressed-bytes buffer.
pub(crate) fn with_scratch<T>(
    compressor: Compressor,
    f: impl FnOnce(&mut Decoder, &mut Vec<u8>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(c, _, _)| *c != compressor) {
            *slot = Some((compressor, Decoder::new(compressor)?, Vec::new()));
        }
        match slot.as_mut() {
            Some((_, d, raw)) => f(d, raw),
            None => Err(DecodeError::Corrupt("no decoder".into())),
        }
    })
}

/// The largest block squashfs allows (1 MiB).
const MAX_BLOCK: usize = 1 << 20;

/// One xz stream that must end exactly where the block does, as unsquashfs's
/// `lzma_stream_buffer_decode` call requires.
fn xz(raw: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let limit = out.len();
    let corrupt = |e: liblzma::stream::Error| DecodeError::Corrupt(format!("xz: {e}"));
    let mut s = liblzma::stream::Stream::new_stream_decoder(u64::MAX, 0).map_err(corrupt)?;
    match s.process(raw, out, liblzma::stream::Action::Finish) {
        Ok(liblzma::stream::Status::StreamEnd) if s.total_in() == raw.len() as u64 => {
            Ok(s.total_out() as usize)
        }
        Ok(liblzma::stream::Status::StreamEnd) => Err(DecodeError::Corrupt(
            "xz: bytes after the end of the stream".into(),
        )),
        // Out of room before the stream ended.
        Ok(_) if s.total_out() == limit as u64 => Err(DecodeError::TooLarge { limit }),
        Ok(_) => Err(DecodeError::Corrupt("xz: the stream is cut short".into())),
        Err(e) => Err(corrupt(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backhand::FilesystemCompressor;

    fn compressed(c: Compressor, plain: &[u8]) -> Vec<u8> {
        let fc = FilesystemCompressor::new(c, None).expect("compressor");
        DefaultCompressor
            .compress(plain, fc, 128 * 1024)
            .expect("compress")
    }

    #[test]
    fn every_wired_compressor_reads_back_what_backhand_wrote() {
        let plain: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [Compressor::Gzip, Compressor::Zstd, Compressor::Xz] {
            let raw = compressed(c, &plain);
            let mut out = vec![0u8; 512 * 1024];
            let n = Decoder::new(c)
                .and_then(|mut d| d.decompress(&raw, &mut out))
                .unwrap_or_else(|e| panic!("{c:?}: {e}"));
            assert_eq!(&out[..n], &plain[..], "{c:?}");
        }
    }

    #[test]
    fn a_block_that_outgrows_the_buffer_is_too_large_not_truncated() {
        let plain = vec![7u8; 64 * 1024];
        for c in [Compressor::Gzip, Compressor::Zstd, Compressor::Xz] {
            let raw = compressed(c, &plain);
            let mut out = vec![0u8; 32 * 1024];
            let got = Decoder::new(c).and_then(|mut d| d.decompress(&raw, &mut out));
            assert!(
                matches!(got, Err(DecodeError::TooLarge { limit: 32768 })),
                "{c:?}: {got:?}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_corrupt() {
        let plain: Vec<u8> = (0..50_000u32).flat_map(|i| (i * 7).to_le_bytes()).collect();
        for c in [Compressor::Gzip, Compressor::Zstd, Compressor::Xz] {
            let mut raw = compressed(c, &plain);
            let mid = raw.len() / 2;
            raw[mid] ^= 0x10;
            let mut out = vec![0u8; 512 * 1024];
            let got = Decoder::new(c).and_then(|mut d| d.decompress(&raw, &mut out));
            // zstd without a frame checksum may inflate a flipped literal to other bytes of
            // the same length; what matters is that it never reads back as the original.
            match got {
                Ok(n) => assert!(n != plain.len() || out[..n] != plain[..], "{c:?}"),
                Err(e) => assert!(
                    matches!(e, DecodeError::Corrupt(_) | DecodeError::TooLarge { .. }),
                    "{c:?}: {e}"
                ),
            }
        }
    }
}
