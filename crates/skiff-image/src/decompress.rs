//! A layer stream, decompressed by what its first bytes say it is (gzip, zstd or a plain
//! tar) rather than by the media type a registry claims.

use std::io::{self, BufRead, BufReader, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

pub fn decompressed<'a>(stream: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 20, stream);
    let magic = buffered.fill_buf()?;
    Ok(if magic.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&ZSTD_MAGIC) {
        Box::new(ZstdFrames {
            decoder: FrameDecoder::new(),
            source: buffered,
            in_frame: false,
        })
    } else {
        Box::new(buffered)
    })
}

/// zstd streams may hold several frames (and skippable frames between them, as zstd:chunked
/// layers do); ruzstd's decoder reads one frame at a time, so this chains them.
struct ZstdFrames<R: BufRead> {
    decoder: FrameDecoder,
    source: R,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    /// Starts the next frame, skipping skippable ones; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.init(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    io::copy(&mut (&mut self.source).take(length as u64), &mut io::sink())?;
                }
                Err(e) => return Err(io::Error::other(format!("zstd: {e}"))),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                    self.decoder
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(|e| io::Error::other(format!("zstd: {e}")))?;
                }
                let n = self.decoder.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if !self.next_frame()? {
                return Ok(0);
            }
            self.in_frame = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decompressed(bytes).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn gzip_zstd_and_plain_streams_are_recognised() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &data).unwrap();
        assert_eq!(read_all(&gz.finish().unwrap()), data);
        let zst = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(read_all(&zst), data);
        assert_eq!(read_all(&data), data);
    }

    #[test]
    fn zstd_frames_chain_and_skippable_frames_are_skipped() {
        let level = ruzstd::encoding::CompressionLevel::Fastest;
        let mut stream = ruzstd::encoding::compress_to_vec(&b"first "[..], level);
        stream.extend_from_slice(&0x184D_2A53u32.to_le_bytes());
        stream.extend_from_slice(&3u32.to_le_bytes());
        stream.extend_from_slice(b"xyz");
        stream.extend(ruzstd::encoding::compress_to_vec(&b"second"[..], level));
        assert_eq!(read_all(&stream), b"first second");
    }
}
