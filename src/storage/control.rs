//! Transaction markers (KIP-98): the control batch a partition stores when a
//! transaction ends, built and read exactly as Kafka writes it
//! (`MemoryRecords.withEndTransactionMarker`).
//!
//! A marker is one v2 batch with the control and transactional attribute
//! bits, the transaction's producer id and epoch, no sequence, and one record:
//! ```text
//! key:   version i16 (0) | type i16 (0 ABORT, 1 COMMIT)        ControlRecordType
//! value: version i16 (0) | coordinatorEpoch i32                 EndTransactionMarker
//! ```

use bytes::Bytes;

use super::batch::{
    self, BatchHeader, ATTRIBUTES_OFFSET, ATTRIBUTE_CONTROL_BIT, ATTRIBUTE_TRANSACTIONAL_BIT,
    BATCH_LENGTH_OFFSET, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_OFFSET, MAGIC_V2, NO_TIMESTAMP,
    RECORD_COUNT_OFFSET,
};
use super::error::Error;
use super::records::{self, Records};

/// How a transaction ended: the ControlRecordType of its marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Abort,
    Commit,
}

impl TxnResult {
    /// Kafka's `ControlRecordType` id.
    pub const fn control_type(self) -> i16 {
        match self {
            TxnResult::Abort => 0,
            TxnResult::Commit => 1,
        }
    }

    pub const fn from_control_type(control_type: i16) -> Option<TxnResult> {
        match control_type {
            0 => Some(TxnResult::Abort),
            1 => Some(TxnResult::Commit),
            _ => None,
        }
    }
}

/// A transaction marker to write to a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    /// The epoch the marker carries. With Transactions V2 (KIP-890) the
    /// coordinator writes the bumped epoch, which fences the old one here.
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub result: TxnResult,
}

/// `ControlRecordType` and `EndTransactionMarker` versions Kafka writes.
const CONTROL_KEY_VERSION: i16 = 0;
const END_TXN_MARKER_VERSION: i16 = 0;
/// The one record: length, attributes, timestampDelta, offsetDelta,
/// keyLength, 4-byte key, valueLength, 6-byte value, header count.
const RECORD_BODY_BYTES: usize = 1 + 1 + 1 + 1 + 4 + 1 + 6 + 1;
const RECORD_BYTES: usize = 1 + RECORD_BODY_BYTES;
/// Bytes of a marker batch.
pub const MARKER_BATCH_BYTES: usize = HEADER_BYTES + RECORD_BYTES;
/// Kafka's `RecordBatch.NO_SEQUENCE`: markers carry none.
const NO_SEQUENCE: i32 = -1;

const _: () = assert!(RECORD_BODY_BYTES < 64, "the length fits a one-byte varint");

/// The control batch for `marker`, at offset 0 (the log assigns it), with
/// both timestamps at `timestamp_ms`.
pub fn marker_batch(marker: &TxnMarker, timestamp_ms: i64) -> Bytes {
    let mut out = vec![0u8; MARKER_BATCH_BYTES];
    let batch_length = (MARKER_BATCH_BYTES - LOG_OVERHEAD_BYTES) as i32;
    out[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[MAGIC_OFFSET] = MAGIC_V2 as u8;
    let attributes = ATTRIBUTE_CONTROL_BIT | ATTRIBUTE_TRANSACTIONAL_BIT;
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    // lastOffsetDelta stays 0: one record.
    batch::set_timestamps(&mut out, timestamp_ms, timestamp_ms);
    batch::set_producer(
        &mut out,
        marker.producer_id,
        marker.producer_epoch,
        NO_SEQUENCE,
    );
    out[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&1i32.to_be_bytes());
    let record = &mut out[HEADER_BYTES..];
    // Zigzag varints: 2n for non-negative n.
    record[0] = (RECORD_BODY_BYTES * 2) as u8;
    // attributes, timestampDelta and offsetDelta are 0.
    record[4] = 4 * 2;
    record[5..7].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    record[7..9].copy_from_slice(&marker.result.control_type().to_be_bytes());
    record[9] = 6 * 2;
    record[10..12].copy_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
    record[12..16].copy_from_slice(&marker.coordinator_epoch.to_be_bytes());
    // header count 0.
    batch::recompute_crc(&mut out);
    Bytes::from(out)
}

/// Kafka's LEADER_CHANGE control record type (KIP-595).
const LEADER_CHANGE_CONTROL_TYPE: i16 = 2;
/// A replicated partition's new log start offset (DeleteRecords), a type of
/// this broker's own: clients skip control batches of types they do not know.
const LOG_START_CONTROL_TYPE: i16 = 1000;
/// attributes, timestampDelta, offsetDelta, key length, key (4), value
/// length, header count; the value's bytes come on top.
const BROKER_CONTROL_BODY_BYTES: usize = 1 + 1 + 1 + 1 + 4 + 1 + 1;
/// The stored size of [`leader_change_batch`].
pub const LEADER_CHANGE_BATCH_BYTES: usize = HEADER_BYTES + 1 + BROKER_CONTROL_BODY_BYTES;

/// A new leader's first entry in a replicated partition: one LEADER_CHANGE
/// control record (no producer, no value) at `base_offset`, stamped with the
/// leader's epoch. Every replica builds the same bytes from the same two
/// numbers (no timestamp, -1), so replicas stay byte-identical.
pub fn leader_change_batch(base_offset: i64, leader_epoch: i32) -> Bytes {
    broker_control_batch(base_offset, leader_epoch, LEADER_CHANGE_CONTROL_TYPE, None)
}

/// A replicated partition's entry that moves its log start offset to
/// `log_start` on every replica once committed (DeleteRecords); the value
/// is the offset, big-endian.
pub fn log_start_batch(base_offset: i64, leader_epoch: i32, log_start: i64) -> Bytes {
    broker_control_batch(
        base_offset,
        leader_epoch,
        LOG_START_CONTROL_TYPE,
        Some(&log_start.to_be_bytes()),
    )
}

/// The log start offset a [`log_start_batch`] carries; `None` for any
/// other batch.
pub fn read_log_start(header: &BatchHeader, batch: &[u8]) -> Option<i64> {
    if !is_control(header) || header.producer_id != -1 {
        return None;
    }
    let section = records::records_section(header, batch).ok()?;
    let record = Records::new(header, &section).next()?.ok()?;
    let key = record.key.filter(|key| key.len() == 4)?;
    if i16::from_be_bytes([key[2], key[3]]) != LOG_START_CONTROL_TYPE {
        return None;
    }
    let value = record.value?;
    Some(i64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// One control record of a type of the broker's: no producer, and no
/// timestamp (-1), so it never ages a segment for retention.ms.
fn broker_control_batch(
    base_offset: i64,
    leader_epoch: i32,
    control_type: i16,
    value: Option<&[u8]>,
) -> Bytes {
    let value_bytes = value.map_or(0, <[u8]>::len);
    let body = BROKER_CONTROL_BODY_BYTES + value_bytes;
    debug_assert!(body < 64, "the length fits a one-byte varint");
    let total = HEADER_BYTES + 1 + body;
    let mut out = vec![0u8; total];
    let batch_length = (total - LOG_OVERHEAD_BYTES) as i32;
    out[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[MAGIC_OFFSET] = MAGIC_V2 as u8;
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
        .copy_from_slice(&ATTRIBUTE_CONTROL_BIT.to_be_bytes());
    batch::set_timestamps(&mut out, NO_TIMESTAMP, NO_TIMESTAMP);
    batch::set_producer(&mut out, -1, -1, NO_SEQUENCE);
    out[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&1i32.to_be_bytes());
    let record = &mut out[HEADER_BYTES..];
    // Zigzag varints: 2n for non-negative n, 1 for -1.
    record[0] = (body * 2) as u8;
    record[4] = 4 * 2;
    record[5..7].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    record[7..9].copy_from_slice(&control_type.to_be_bytes());
    match value {
        None => record[9] = 1,
        Some(value) => {
            record[9] = (value.len() * 2) as u8;
            record[10..10 + value.len()].copy_from_slice(value);
        }
    }
    batch::recompute_crc(&mut out);
    batch::set_base_offset(&mut out, base_offset);
    batch::set_partition_leader_epoch(&mut out, leader_epoch);
    Bytes::from(out)
}

/// Whether a batch is a control batch (markers and other broker records).
pub fn is_control(header: &BatchHeader) -> bool {
    header.attributes & ATTRIBUTE_CONTROL_BIT != 0
}

/// Whether a batch belongs to a transaction (data or marker).
pub fn is_transactional(header: &BatchHeader) -> bool {
    header.attributes & ATTRIBUTE_TRANSACTIONAL_BIT != 0
}

/// What a stored transaction marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredMarker {
    pub result: TxnResult,
    pub coordinator_epoch: i32,
}

/// Reads the marker of a control batch (`batch` is the whole, framed batch).
/// `Ok(None)` for a control batch of another type (Kafka's leader-change and
/// snapshot records), which transactions ignore.
pub fn read_marker(header: &BatchHeader, batch: &[u8]) -> Result<Option<StoredMarker>, Error> {
    debug_assert!(is_control(header));
    let section = records::records_section(header, batch)?;
    let Some(record) = Records::new(header, &section).next() else {
        return Ok(None);
    };
    let record = record?;
    let Some(key) = record.key.filter(|key| key.len() >= 4) else {
        return Ok(None);
    };
    let control_type = i16::from_be_bytes([key[2], key[3]]);
    let Some(result) = TxnResult::from_control_type(control_type) else {
        return Ok(None);
    };
    let coordinator_epoch = record
        .value
        .filter(|value| value.len() >= 6)
        .map_or(-1, |value| {
            i32::from_be_bytes([value[2], value[3], value[4], value[5]])
        });
    Ok(Some(StoredMarker {
        result,
        coordinator_epoch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn marker(result: TxnResult) -> TxnMarker {
        TxnMarker {
            producer_id: 42,
            producer_epoch: 3,
            coordinator_epoch: 7,
            result,
        }
    }

    #[test]
    fn a_log_start_batch_is_valid_and_reads_back_and_other_batches_carry_none() {
        let bytes = log_start_batch(17, 3, 1234);
        let header = BatchHeader::parse(&bytes).expect("header");
        header.validate(&bytes, 1 << 20).expect("valid");
        assert_eq!(header.total_bytes(), bytes.len());
        assert_eq!((header.base_offset, header.last_offset()), (17, 17));
        assert!(is_control(&header) && !is_transactional(&header));
        assert_eq!(read_log_start(&header, &bytes), Some(1234));
        assert_eq!(read_marker(&header, &bytes).expect("reads"), None);
        let change = leader_change_batch(17, 3);
        assert_eq!(change.len(), LEADER_CHANGE_BATCH_BYTES);
        let header = BatchHeader::parse(&change).expect("header");
        header.validate(&change, 1 << 20).expect("valid");
        assert_eq!(read_log_start(&header, &change), None);
        let decoded = RecordBatchDecoder::decode(&mut bytes.clone()).expect("decodes");
        assert_eq!(decoded.records.len(), 1);
        assert!(decoded.records[0].control);
    }

    #[test]
    fn a_marker_batch_is_valid_and_reads_back() {
        for result in [TxnResult::Abort, TxnResult::Commit] {
            let bytes = marker_batch(&marker(result), 1_000);
            let header = BatchHeader::parse(&bytes).expect("header");
            header.validate(&bytes, 1 << 20).expect("valid");
            assert_eq!(header.total_bytes(), bytes.len());
            assert!(matches!(
                batch::validate_all(&bytes, 1 << 20),
                Err(Error::ControlBatchFromClient)
            ));
            assert!(is_control(&header) && is_transactional(&header));
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (42, 3, -1)
            );
            let stored = read_marker(&header, &bytes)
                .expect("reads")
                .expect("a marker");
            assert_eq!(
                stored,
                StoredMarker {
                    result,
                    coordinator_epoch: 7
                }
            );
        }
    }

    #[test]
    fn kafka_protocol_decodes_the_marker_as_a_control_record() {
        let bytes = marker_batch(&marker(TxnResult::Commit), 1_000);
        let set = RecordBatchDecoder::decode(&mut bytes.clone()).expect("decodes");
        let record = &set.records[0];
        assert!(record.control && record.transactional);
        let key = record.key.as_deref().expect("key");
        assert_eq!(key, &[0, 0, 0, 1][..]);
        assert_eq!(
            record.value.as_deref().expect("value"),
            &[0, 0, 0, 0, 0, 7][..]
        );
    }
}
