//! The log's record frames: `[u32 payload_len][u32 crc32c(payload)][payload]`
//! (little endian), the payload `[u8 op][u32 key_len][key]` plus, for a put,
//! `[u32 value_len][value]`; and the scan that reads them back, stopping at a
//! torn or corrupt tail.

use super::GroupLogError;

pub(super) const FRAME_HEADER_BYTES: usize = 8;
/// Largest payload of one record; a larger length read back is corruption.
pub const RECORD_BYTES_MAX: usize = 1 << 20;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One record: a key and its value, or `None` for a delete.
pub(super) type Op = (Vec<u8>, Option<Vec<u8>>);

pub(super) fn frame(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let payload_len = 1 + 4 + key.len() + value.map_or(0, |v| 4 + v.len());
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(if value.is_some() { OP_PUT } else { OP_DELETE });
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    if let Some(value) = value {
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    let crc = crc32c::crc32c(&out[FRAME_HEADER_BYTES..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

pub(super) fn framed_len(key: &[u8], value: &[u8]) -> u64 {
    (FRAME_HEADER_BYTES + 1 + 4 + key.len() + 4 + value.len()) as u64
}

/// What scanning a log's bytes found.
#[derive(Default)]
pub(super) struct Scan {
    pub(super) ops: Vec<Op>,
    pub(super) valid_bytes: usize,
}

/// Reads frames until the end or the first one that is torn or fails its CRC.
pub(super) fn scan(bytes: &[u8]) -> Result<Scan, GroupLogError> {
    let mut ops = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= FRAME_HEADER_BYTES {
        let header = &bytes[pos..pos + FRAME_HEADER_BYTES];
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > RECORD_BYTES_MAX || bytes.len() - pos - FRAME_HEADER_BYTES < len {
            break;
        }
        let payload = &bytes[pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        // The CRC matched, so a payload that does not parse was written by a
        // format this code does not know: refuse to start instead of dropping it.
        ops.push(parse_payload(payload)?);
        pos += FRAME_HEADER_BYTES + len;
    }
    Ok(Scan {
        ops,
        valid_bytes: pos,
    })
}

/// `scan` for the decoder tests: the number of valid bytes, or the error.
#[cfg(test)]
pub(crate) fn scan_for_tests(bytes: &[u8]) -> Result<usize, GroupLogError> {
    scan(bytes).map(|scanned| scanned.valid_bytes)
}

fn parse_payload(payload: &[u8]) -> Result<Op, GroupLogError> {
    let corrupt = |what: &str| GroupLogError::Corrupt(format!("log record: {what}"));
    let (&op, rest) = payload.split_first().ok_or_else(|| corrupt("empty"))?;
    let (key, rest) = split_len_prefixed(rest).ok_or_else(|| corrupt("bad key length"))?;
    match op {
        OP_PUT => {
            let (value, rest) =
                split_len_prefixed(rest).ok_or_else(|| corrupt("bad value length"))?;
            if !rest.is_empty() {
                return Err(corrupt("trailing bytes"));
            }
            Ok((key.to_vec(), Some(value.to_vec())))
        }
        OP_DELETE if rest.is_empty() => Ok((key.to_vec(), None)),
        OP_DELETE => Err(corrupt("trailing bytes")),
        other => Err(GroupLogError::Corrupt(format!(
            "log record: unknown op {other}"
        ))),
    }
}

fn split_len_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len_bytes: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let rest = &bytes[4..];
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}
