//! A zero-copy view of a Kafka RecordBatch v2 header, its validation, and the
//! few in-place edits the log makes (base offset, leader epoch, LogAppendTime).
//!
//! Layout (Kafka `DefaultRecordBatch`), all big-endian:
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records...
//! ```
//! The CRC-32C covers `attributes` to the end of the batch, so `baseOffset` and
//! `partitionLeaderEpoch` can be assigned without recomputing it.
//!
//! This is the one definition of the layout: the broker, its load generator,
//! benches and tests all read and patch batches through it.

use super::error::{CorruptReason, Error};

/// Kafka's NO_TIMESTAMP: a batch or record without a time.
pub const NO_TIMESTAMP: i64 = -1;

pub const BASE_OFFSET_OFFSET: usize = 0;
pub const BATCH_LENGTH_OFFSET: usize = 8;
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
pub const ATTRIBUTES_OFFSET: usize = 21;
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
pub const RECORD_COUNT_OFFSET: usize = 57;
/// Size of the v2 batch header (`RECORDS_OFFSET` in Kafka).
pub const HEADER_BYTES: usize = 61;
/// `baseOffset` + `batchLength`: the bytes not counted by `batchLength` (Kafka's LOG_OVERHEAD).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only batch format stored.
pub const MAGIC_V2: i8 = 2;
/// Attribute bits (Kafka `DefaultRecordBatch`).
pub const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
pub const ATTRIBUTE_TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub const ATTRIBUTE_TRANSACTIONAL_BIT: i16 = 0x10;
pub const ATTRIBUTE_CONTROL_BIT: i16 = 0x20;
/// No batch larger than this is ever read back from disk, whatever max.message.bytes
/// says; a larger length field on disk is corruption, not data.
pub const BATCH_BYTES_LIMIT: usize = 128 * 1024 * 1024;

const _: () = assert!(HEADER_BYTES == RECORD_COUNT_OFFSET + 4);
const _: () = assert!(LOG_OVERHEAD_BYTES == PARTITION_LEADER_EPOCH_OFFSET);

/// The fixed header of one v2 record batch, decoded from its first 61 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}
fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

fn write_i16(buf: &mut [u8], at: usize, value: i16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
fn write_i32(buf: &mut [u8], at: usize, value: i32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}
fn write_i64(buf: &mut [u8], at: usize, value: i64) {
    buf[at..at + 8].copy_from_slice(&value.to_be_bytes());
}

impl BatchHeader {
    /// Decodes the header at the start of `buf`. Checks only that the header is
    /// there and its magic is 2; [`BatchHeader::validate`] checks the rest.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, Error> {
        // The magic byte sits before the end of the header; check it first so that a
        // v0/v1 message set (shorter header) is reported as such, not as truncated.
        if buf.len() > MAGIC_OFFSET && buf[MAGIC_OFFSET] as i8 != MAGIC_V2 {
            return Err(Error::InvalidMagic(buf[MAGIC_OFFSET] as i8));
        }
        if buf.len() < HEADER_BYTES {
            return Err(Error::Truncated {
                needed: HEADER_BYTES,
                available: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: read_i64(buf, BASE_OFFSET_OFFSET),
            batch_length: read_i32(buf, BATCH_LENGTH_OFFSET),
            partition_leader_epoch: read_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic: buf[MAGIC_OFFSET] as i8,
            crc: read_i32(buf, CRC_OFFSET) as u32,
            attributes: read_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: read_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: read_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: read_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: read_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: read_i32(buf, BASE_SEQUENCE_OFFSET),
            record_count: read_i32(buf, RECORD_COUNT_OFFSET),
        })
    }

    /// Total bytes of the batch on the wire and on disk (`batchLength` + 12).
    /// Meaningful only once `batch_length` was checked to be at least a header.
    pub fn total_bytes(&self) -> usize {
        self.batch_length.max(0) as usize + LOG_OVERHEAD_BYTES
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression_code(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_TIMESTAMP_TYPE_BIT != 0
    }

    /// Checks the length field against the buffer and `size_limit`, the record
    /// count against `lastOffsetDelta`, and the CRC-32C. `buf` starts at this
    /// batch and may hold more batches after it.
    pub fn validate(&self, buf: &[u8], size_limit: usize) -> Result<(), Error> {
        self.validate_framing(buf.len(), size_limit)?;
        let total = self.total_bytes();
        let computed = compute_crc(&buf[..total]);
        if computed != self.crc {
            return Err(Error::CorruptBatch(CorruptReason::CrcMismatch {
                stored: self.crc,
                computed,
            }));
        }
        Ok(())
    }

    /// Every check of [`validate`](Self::validate) except the CRC.
    pub fn validate_framing(&self, available: usize, size_limit: usize) -> Result<(), Error> {
        if self.magic != MAGIC_V2 {
            return Err(Error::InvalidMagic(self.magic));
        }
        if (self.batch_length as i64) < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i64 {
            return Err(Error::CorruptBatch(CorruptReason::LengthTooSmall));
        }
        let total = self.total_bytes();
        if total > BATCH_BYTES_LIMIT {
            return Err(Error::CorruptBatch(CorruptReason::LengthBeyondLimit));
        }
        if total > available {
            return Err(Error::Truncated {
                needed: total,
                available,
            });
        }
        if total > size_limit {
            return Err(Error::MessageTooLarge {
                size: total,
                max: size_limit.min(u32::MAX as usize) as u32,
            });
        }
        if self.record_count <= 0 {
            return Err(Error::CorruptBatch(CorruptReason::RecordCountNotPositive));
        }
        // A stored batch may have fewer records than offsets: compaction
        // removes records and keeps the others' offsets. Never more.
        if i64::from(self.last_offset_delta) + 1 < i64::from(self.record_count) {
            return Err(self.record_count_mismatch());
        }
        Ok(())
    }

    fn record_count_mismatch(&self) -> Error {
        Error::CorruptBatch(CorruptReason::RecordCountMismatch {
            record_count: self.record_count,
            last_offset_delta: self.last_offset_delta,
        })
    }
}

/// Iterates over the batches of a buffer that was already validated, yielding
/// each header and its byte range.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, position: 0 }
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, std::ops::Range<usize>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.position..];
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.position = self.buf.len();
                return Some(Err(e));
            }
        };
        if let Err(e) = header.validate_framing(rest.len(), BATCH_BYTES_LIMIT) {
            self.position = self.buf.len();
            return Some(Err(e));
        }
        let start = self.position;
        self.position += header.total_bytes();
        Some(Ok((header, start..self.position)))
    }
}

/// Validates every batch of a produce payload before anything is written.
/// Control batches are refused: only the broker writes them (Kafka's
/// LogValidator). Returns the number of batches.
pub fn validate_all(buf: &[u8], max_message_bytes: usize) -> Result<usize, Error> {
    if buf.is_empty() {
        return Err(Error::EmptyAppend);
    }
    let mut position = 0;
    let mut count = 0;
    while position < buf.len() {
        let rest = &buf[position..];
        let header = BatchHeader::parse(rest)?;
        header.validate(rest, max_message_bytes)?;
        // Kafka's LogValidator: a produced batch's offset range matches its record count.
        if i64::from(header.last_offset_delta) + 1 != i64::from(header.record_count) {
            return Err(header.record_count_mismatch());
        }
        if header.attributes & ATTRIBUTE_CONTROL_BIT != 0 {
            return Err(Error::ControlBatchFromClient);
        }
        position += header.total_bytes();
        count += 1;
    }
    Ok(count)
}

/// The CRC-32C of one whole batch as KIP-98 defines it for magic 2: over
/// `attributes` to the end, so the fields before it are not covered.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Rewrites the CRC after an edit inside the covered range; `batch` is exactly one batch.
pub fn recompute_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    write_i32(batch, CRC_OFFSET, crc as i32);
}

/// Writes `baseOffset` (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    write_i64(batch, BASE_OFFSET_OFFSET, base_offset);
}

/// Writes `partitionLeaderEpoch` (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    write_i32(batch, PARTITION_LEADER_EPOCH_OFFSET, epoch);
}

/// Writes `baseTimestamp` and `maxTimestamp`. Both are covered by the CRC:
/// call [`recompute_crc`] after the last edit.
#[inline]
pub fn set_timestamps(batch: &mut [u8], base_timestamp_ms: i64, max_timestamp_ms: i64) {
    write_i64(batch, BASE_TIMESTAMP_OFFSET, base_timestamp_ms);
    write_i64(batch, MAX_TIMESTAMP_OFFSET, max_timestamp_ms);
}

/// Writes the idempotent producer's fields (KIP-98). Covered by the CRC:
/// call [`recompute_crc`] after the last edit.
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    write_i64(batch, PRODUCER_ID_OFFSET, producer_id);
    write_i16(batch, PRODUCER_EPOCH_OFFSET, producer_epoch);
    write_i32(batch, BASE_SEQUENCE_OFFSET, base_sequence);
}

/// message.timestamp.type=LogAppendTime: like Kafka's `setMaxTimestamp`, set the
/// timestamp-type bit and maxTimestamp, then recompute the CRC over attributes..end.
/// Record timestamps inside are left alone; consumers read the batch's maxTimestamp.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes = read_i16(batch, ATTRIBUTES_OFFSET) | ATTRIBUTE_TIMESTAMP_TYPE_BIT;
    write_i16(batch, ATTRIBUTES_OFFSET, attributes);
    write_i64(batch, MAX_TIMESTAMP_OFFSET, timestamp_ms);
    recompute_crc(batch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal_batch(records: i32) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_BYTES];
        b[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]
            .copy_from_slice(&((HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
        b[MAGIC_OFFSET] = 2;
        b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&(records - 1).to_be_bytes());
        b[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&records.to_be_bytes());
        recompute_crc(&mut b);
        b
    }

    #[test]
    fn valid_header_passes_and_fields_decode() {
        let b = minimal_batch(3);
        let h = BatchHeader::parse(&b).expect("header present");
        h.validate(&b, 1 << 20).expect("valid batch");
        assert_eq!(h.record_count, 3);
        assert_eq!(h.total_bytes(), b.len());
    }

    #[test]
    fn flipped_payload_bit_is_a_crc_mismatch() {
        let mut b = minimal_batch(1);
        b[BASE_TIMESTAMP_OFFSET + 3] ^= 1;
        let h = BatchHeader::parse(&b).expect("header present");
        assert!(matches!(
            h.validate(&b, 1 << 20),
            Err(Error::CorruptBatch(CorruptReason::CrcMismatch { .. }))
        ));
    }

    #[test]
    fn base_offset_and_epoch_edits_keep_the_crc_valid() {
        let mut b = minimal_batch(2);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = BatchHeader::parse(&b).expect("header present");
        h.validate(&b, 1 << 20).expect("still valid");
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.last_offset()),
            (42, 7, 43)
        );
    }

    #[test]
    fn log_append_time_sets_bit_timestamp_and_crc() {
        let mut b = minimal_batch(1);
        set_log_append_time(&mut b, 1234);
        let h = BatchHeader::parse(&b).expect("header present");
        h.validate(&b, 1 << 20).expect("crc recomputed");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 1234);
    }

    #[test]
    fn timestamp_edits_with_a_recomputed_crc_stay_valid() {
        let mut b = minimal_batch(1);
        set_timestamps(&mut b, 10, 20);
        recompute_crc(&mut b);
        let h = BatchHeader::parse(&b).expect("header present");
        h.validate(&b, 1 << 20).expect("crc recomputed");
        assert_eq!((h.base_timestamp, h.max_timestamp), (10, 20));
    }

    #[test]
    fn old_magic_is_rejected_before_length_checks() {
        let mut b = minimal_batch(1);
        b[MAGIC_OFFSET] = 1;
        assert!(matches!(
            BatchHeader::parse(&b[..20]),
            Err(Error::InvalidMagic(1))
        ));
    }

    #[test]
    fn length_larger_than_buffer_is_truncated() {
        let b = minimal_batch(1);
        assert!(matches!(
            validate_all(&b[..b.len() - 1], 1 << 20),
            Err(Error::Truncated { .. })
        ));
    }
}
