//! The record-level work of a cleaning, on batch bytes: filling the offset
//! map from dirty batches, and rewriting a batch to keep only the records
//! that are still the latest of their key.
//!
//! Transactions (KIP-98): the records of aborted transactions never enter
//! the map and are removed; markers are kept (Kafka removes them only once
//! the data before them is gone, keeping them is always correct).
//!
//! Batch boundaries stay: a batch whose records all survive is copied as it
//! is; a batch that lost records is rebuilt over the same header (base
//! offset, producer id, epoch, base sequence, base timestamp, attributes)
//! with the surviving records' bytes unchanged, its `recordCount`,
//! `lastOffsetDelta` and `maxTimestamp` set from them, recompressed with its
//! own codec and a new CRC.

use bytes::BytesMut;

use super::super::batch::{
    BatchHeader, ATTRIBUTE_CONTROL_BIT, HEADER_BYTES, LAST_OFFSET_DELTA_OFFSET,
    MAX_TIMESTAMP_OFFSET, RECORD_COUNT_OFFSET,
};
use super::super::control;
use super::super::error::Error;
use super::super::recompress;
use super::super::records::{self, Codec, RecordView, Records};
use super::super::txn_index::AbortedTxn;
use super::offset_map::{KeyHash, OffsetMap};

/// What decides whether a record stays.
pub struct Rules<'a> {
    pub map: &'a OffsetMap,
    /// Tombstones below this offset were already kept through a finished
    /// cleaning, which removed every older record of their key.
    pub tombstones_cleaned_below: i64,
    /// Tombstones with a timestamp below this are past `delete.retention.ms`.
    pub tombstone_horizon_ms: i64,
    /// `delete.retention.ms`, to say when a kept tombstone becomes removable.
    pub delete_retention_ms: i64,
    /// The log's aborted transactions: their batches are removed.
    pub aborted: &'a [AbortedTxn],
}

/// Whether `header`'s batch belongs to one of the `aborted` transactions.
pub fn is_aborted(header: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    control::is_transactional(header)
        && !control::is_control(header)
        && aborted.iter().any(|txn| {
            txn.producer_id == header.producer_id
                && txn.first_offset.get() <= header.base_offset
                && header.base_offset < txn.last_offset.get()
        })
}

impl Rules<'_> {
    fn keeps(&self, record: &RecordView<'_>) -> bool {
        // Kafka's cleaner drops records without a key: a compacted log has no
        // place for them (they predate a switch to compact).
        let Some(key) = record.key else {
            return false;
        };
        if self
            .map
            .get(KeyHash::of(key))
            .is_some_and(|latest| record.offset < latest)
        {
            return false;
        }
        let expired_tombstone = record.value.is_none()
            && record.offset < self.tombstones_cleaned_below
            && record.timestamp_ms < self.tombstone_horizon_ms;
        !expired_tombstone
    }
}

/// What rewriting one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub records_before: u64,
    pub records_after: u64,
    /// When the earliest tombstone kept becomes removable (ms), if any.
    pub tombstone_due_ms: Option<i64>,
}

fn is_control(header: &BatchHeader) -> bool {
    header.attributes & ATTRIBUTE_CONTROL_BIT != 0
}

/// Appends to `out` what survives of `batch` (one whole, checked batch):
/// the batch itself when every record stays, a rebuilt batch when some do,
/// nothing when none does. Control batches are kept as they are.
pub fn filter_batch(
    batch: &[u8],
    rules: &Rules<'_>,
    out: &mut BytesMut,
) -> Result<BatchOutcome, Error> {
    let header = BatchHeader::parse(batch)?;
    let count = u64::try_from(header.record_count).unwrap_or(0);
    let mut outcome = BatchOutcome {
        records_before: count,
        ..BatchOutcome::default()
    };
    if is_control(&header) {
        out.extend_from_slice(batch);
        outcome.records_after = count;
        return Ok(outcome);
    }
    if is_aborted(&header, rules.aborted) {
        return Ok(outcome);
    }
    let section = records::records_section(&header, batch)?;
    let mut kept: Vec<RecordView<'_>> = Vec::new();
    for record in Records::new(&header, &section) {
        let record = record?;
        if rules.keeps(&record) {
            if record.value.is_none() {
                let due = record
                    .timestamp_ms
                    .saturating_add(rules.delete_retention_ms);
                outcome.tombstone_due_ms =
                    Some(outcome.tombstone_due_ms.map_or(due, |d| d.min(due)));
            }
            kept.push(record);
        }
    }
    outcome.records_after = kept.len() as u64;
    if kept.len() as u64 == count {
        out.extend_from_slice(batch);
    } else if let Some(last) = kept.last() {
        rebuild(&header, batch, &kept, last.offset, out)?;
    }
    Ok(outcome)
}

/// The batch `batch` with only the `kept` records, in its own codec.
fn rebuild(
    header: &BatchHeader,
    batch: &[u8],
    kept: &[RecordView<'_>],
    last_offset: i64,
    out: &mut BytesMut,
) -> Result<(), Error> {
    let mut head = [0u8; HEADER_BYTES];
    head.copy_from_slice(&batch[..HEADER_BYTES]);
    let last_offset_delta = i32::try_from(last_offset - header.base_offset).unwrap_or(i32::MAX);
    head[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
        .copy_from_slice(&last_offset_delta.to_be_bytes());
    head[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4]
        .copy_from_slice(&(kept.len() as i32).to_be_bytes());
    if !header.is_log_append_time() {
        let max_timestamp = kept
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(header.max_timestamp);
        head[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&max_timestamp.to_be_bytes());
    }
    let mut section = Vec::with_capacity(kept.iter().map(|r| r.bytes.len()).sum());
    for record in kept {
        section.extend_from_slice(record.bytes);
    }
    let codec = Codec::from_attributes(header.attributes)?;
    recompress::build_batch(&head, &section, codec, out)
}

/// Records the keys of `batch` at or above `from_offset` in `map` (none of
/// an aborted transaction's: they must not hide older committed values). Returns
/// the offset of the first record that did not fit (the map is full), or
/// `None` when every record went in.
pub fn insert_batch(
    batch: &[u8],
    from_offset: i64,
    aborted: &[AbortedTxn],
    map: &mut OffsetMap,
) -> Result<Option<i64>, Error> {
    let header = BatchHeader::parse(batch)?;
    if is_control(&header) || header.last_offset() < from_offset || is_aborted(&header, aborted) {
        return Ok(None);
    }
    let section = records::records_section(&header, batch)?;
    for record in Records::new(&header, &section) {
        let record = record?;
        if record.offset < from_offset {
            continue;
        }
        if let Some(key) = record.key {
            if !map.insert(KeyHash::of(key), record.offset) {
                return Ok(Some(record.offset));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BatchBuilder, BatchOptions};
    use bytes::Bytes;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    fn batch(entries: &[(&str, Option<&str>)], compression: Compression, base: i64) -> Bytes {
        let mut builder = BatchBuilder::new(BatchOptions {
            compression,
            producer_id: 11,
            producer_epoch: 3,
            base_sequence: 40,
            transactional: false,
        });
        for (i, (key, value)) in entries.iter().enumerate() {
            builder.push(
                Some(Bytes::copy_from_slice(key.as_bytes())),
                value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                1000 + i as i64,
            );
        }
        let mut bytes = builder.encode().expect("encodes").to_vec();
        crate::storage::batch::set_base_offset(&mut bytes, base);
        Bytes::from(bytes)
    }

    fn rules(map: &OffsetMap) -> Rules<'_> {
        Rules {
            map,
            tombstones_cleaned_below: 0,
            tombstone_horizon_ms: i64::MIN,
            delete_retention_ms: 100,
            aborted: &[],
        }
    }

    #[test]
    fn a_batch_whose_records_all_survive_keeps_its_bytes() {
        let b = batch(&[("a", Some("1")), ("b", Some("2"))], Compression::Lz4, 10);
        let mut map = OffsetMap::new(1 << 20, 10);
        assert_eq!(insert_batch(&b, 0, &[], &mut map).expect("walks"), None);
        let mut out = BytesMut::new();
        filter_batch(&b, &rules(&map), &mut out).expect("filters");
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn superseded_records_are_removed_and_the_batch_rebuilt_in_its_codec() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let old = batch(
                &[
                    ("a", Some("1")),
                    ("b", Some("2")),
                    ("c", None),
                    ("d", Some("4")),
                ],
                compression,
                100,
            );
            let newer = batch(&[("a", Some("new")), ("d", Some("new"))], compression, 104);
            let mut map = OffsetMap::new(1 << 20, 10);
            insert_batch(&old, 0, &[], &mut map).expect("walks");
            insert_batch(&newer, 0, &[], &mut map).expect("walks");
            let mut out = BytesMut::new();
            let outcome = filter_batch(&old, &rules(&map), &mut out).expect("filters");
            assert_eq!((outcome.records_before, outcome.records_after), (4, 2));
            assert_eq!(outcome.tombstone_due_ms, Some(1002 + 100));
            let header = BatchHeader::parse(&out).expect("header");
            header
                .validate(&out, usize::MAX)
                .expect("valid rebuilt batch");
            assert_eq!(header.compression_code(), compression as i16);
            assert_eq!(
                (
                    header.base_offset,
                    header.last_offset_delta,
                    header.record_count
                ),
                (100, 2, 2)
            );
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (11, 3, 40)
            );
            assert_eq!(header.max_timestamp, 1002);
            let records = RecordBatchDecoder::decode(&mut out.clone().freeze())
                .expect("decodes")
                .records;
            let seen: Vec<_> = records
                .iter()
                .map(|r| (r.offset, r.key.clone(), r.value.clone()))
                .collect();
            assert_eq!(
                seen,
                vec![
                    (
                        101,
                        Some(Bytes::from_static(b"b")),
                        Some(Bytes::from_static(b"2"))
                    ),
                    (102, Some(Bytes::from_static(b"c")), None),
                ]
            );
            // The superseding batch stays whole; a fully superseded one goes.
            let mut out = BytesMut::new();
            filter_batch(&newer, &rules(&map), &mut out).expect("filters");
            assert_eq!(&out[..], &newer[..]);
            let gone = batch(&[("a", Some("0"))], compression, 50);
            let mut out = BytesMut::new();
            filter_batch(&gone, &rules(&map), &mut out).expect("filters");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn tombstones_go_only_once_cleaned_before_and_past_delete_retention() {
        let b = batch(&[("a", None), ("b", Some("x"))], Compression::None, 0);
        let map = OffsetMap::new(1 << 20, 10);
        let mut rules = rules(&map);
        rules.tombstone_horizon_ms = 5000;
        let mut out = BytesMut::new();
        filter_batch(&b, &rules, &mut out).expect("filters");
        assert_eq!(&out[..], &b[..], "not cleaned before: kept");
        rules.tombstones_cleaned_below = 2;
        let mut out = BytesMut::new();
        let outcome = filter_batch(&b, &rules, &mut out).expect("filters");
        assert_eq!(outcome.records_after, 1);
        assert_eq!(outcome.tombstone_due_ms, None);
        rules.tombstone_horizon_ms = 0;
        let mut out = BytesMut::new();
        filter_batch(&b, &rules, &mut out).expect("filters");
        assert_eq!(&out[..], &b[..], "inside delete.retention.ms: kept");
    }

    #[test]
    fn a_full_map_says_where_it_stopped() {
        let entries: Vec<(String, Option<&str>)> =
            (0..2000).map(|i| (format!("k{i}"), Some("v"))).collect();
        let refs: Vec<(&str, Option<&str>)> =
            entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let b = batch(&refs, Compression::None, 0);
        let mut map = OffsetMap::new(0, 0);
        let stopped = insert_batch(&b, 0, &[], &mut map).expect("walks");
        assert_eq!(stopped, Some(map.capacity() as i64));
    }
}
