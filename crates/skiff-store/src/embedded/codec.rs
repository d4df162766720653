//! Byte layouts of the embedded backend's table values.
//!
//! Fixed little-endian headers followed by raw bytes: no serde, no allocation beyond the value
//! itself, and a decoder that rejects short or inconsistent records instead of panicking.

use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::types::{EventKind, KeyValue, Revision};

/// Value of the `current` table: the newest version of a live key.
/// Layout: `create_revision u64 | mod_revision u64 | value`.
pub(super) fn encode_current(
    create_revision: Revision,
    mod_revision: Revision,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

pub(super) fn decode_current(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    let (create_revision, rest) = take_u64(bytes, key)?;
    let (mod_revision, value) = take_u64(rest, key)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        create_revision,
        mod_revision,
    })
}

/// One write as the `log` table (keyed by its revision) keeps it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LogEntry {
    pub kind: EventKind,
    pub key: String,
    /// The key's create revision after this write (0 for a delete).
    pub create_revision: Revision,
    /// The mod revision of the version this write replaced (0 for a create).
    pub prev_revision: Revision,
    pub value: Bytes,
}

/// Layout: `kind u8 | create_revision u64 | prev_revision u64 | key_len u32 | key | value`.
pub(super) fn encode_log(
    kind: EventKind,
    key: &str,
    create_revision: Revision,
    prev_revision: Revision,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(21 + key.len() + value.len());
    out.push(match kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&prev_revision.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
    out
}

pub(super) fn decode_log(revision: Revision, bytes: &[u8]) -> Result<LogEntry> {
    let what = format!("log entry {revision}");
    let kind = match bytes.first() {
        Some(0) => EventKind::Put,
        Some(1) => EventKind::Delete,
        _ => return Err(corrupt(&what)),
    };
    let (create_revision, rest) = take_u64(&bytes[1..], &what)?;
    let (prev_revision, rest) = take_u64(rest, &what)?;
    let key_len = rest
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| corrupt(&what))?;
    let rest = &rest[4..];
    let key = rest
        .get(..key_len)
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or_else(|| corrupt(&what))?;
    Ok(LogEntry {
        kind,
        key: key.to_owned(),
        create_revision,
        prev_revision,
        value: Bytes::copy_from_slice(&rest[key_len..]),
    })
}

fn take_u64<'a>(bytes: &'a [u8], what: &str) -> Result<(u64, &'a [u8])> {
    let head = bytes.get(..8).ok_or_else(|| corrupt(what))?;
    Ok((
        u64::from_le_bytes(head.try_into().expect("8 bytes")),
        &bytes[8..],
    ))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Storage(format!("{what} is malformed; the data file is damaged"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_round_trips() {
        let bytes = encode_current(3, 9, b"hello");
        let kv = decode_current("/a", &bytes).unwrap();
        assert_eq!(
            kv,
            KeyValue {
                key: "/a".into(),
                value: Bytes::from_static(b"hello"),
                create_revision: 3,
                mod_revision: 9
            }
        );
    }

    #[test]
    fn log_round_trips_both_kinds() {
        for kind in [EventKind::Put, EventKind::Delete] {
            let bytes = encode_log(kind, "/registry/pods/x", 4, 7, b"v");
            let entry = decode_log(8, &bytes).unwrap();
            assert_eq!(
                entry,
                LogEntry {
                    kind,
                    key: "/registry/pods/x".into(),
                    create_revision: 4,
                    prev_revision: 7,
                    value: Bytes::from_static(b"v"),
                }
            );
        }
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let log = encode_log(EventKind::Put, "/key", 1, 0, b"value");
        for len in 0..log.len() - b"value".len() {
            assert!(decode_log(2, &log[..len]).is_err(), "prefix of {len} bytes");
        }
        let current = encode_current(1, 2, b"");
        for len in 0..current.len() {
            assert!(decode_current("/k", &current[..len]).is_err());
        }
        assert!(decode_log(2, &[7u8; 30]).is_err(), "unknown kind byte");
    }
}
