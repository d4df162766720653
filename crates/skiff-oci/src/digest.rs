//! sha256 digests in the `sha256:<hex>` form the distribution spec uses.

use ring::digest::{Context, SHA256};

#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?} (only sha256:<64 hex digits> is supported)")]
pub struct DigestInvalid(pub String);

/// `sha256:<hex>` → the hex, if that is what it is.
pub fn digest_hex(digest: &str) -> Result<&str, DigestInvalid> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(DigestInvalid(digest.to_string())),
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finish()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A running sha256 over content that arrives in pieces.
#[derive(Clone)]
pub struct Sha256 {
    ctx: Context,
    len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256 {
            ctx: Context::new(&SHA256),
            len: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.ctx.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest, as `sha256:<hex>`.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex(self.ctx.finish().as_ref()))
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Sha256::new(),
        }
    }

    /// The digest of everything read so far.
    pub fn digest(&self) -> String {
        self.hash.clone().finish()
    }

    pub fn bytes_read(&self) -> u64 {
        self.hash.len()
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_in_pieces_equal_digests_at_once() {
        let mut h = Sha256::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.len(), 11);
        assert_eq!(h.finish(), sha256_digest(b"hello world"));
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(digest_hex(&sha256_digest(b"x")).is_ok());
        for bad in [
            "sha256:abc",
            "md5:00",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            assert!(digest_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashing_reader_sees_every_byte() {
        use std::io::Read;
        let mut r = HashingReader::new(&b"some content"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.digest(), sha256_digest(b"some content"));
        assert_eq!(r.bytes_read(), 12);
    }
}
