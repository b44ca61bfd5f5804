use super::snapshot::{self, SnapshotError};
use super::*;
use crate::storage::batch::{
    recompute_crc, BASE_SEQUENCE_OFFSET, BATCH_LENGTH_OFFSET, HEADER_BYTES,
    LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD_BYTES, MAGIC_OFFSET, MAX_TIMESTAMP_OFFSET,
    PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET, RECORD_COUNT_OFFSET,
};

/// A header-only batch of `records` records from `producer_id`.
fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_BYTES];
    let put =
        |b: &mut Vec<u8>, at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(
        &mut b,
        BATCH_LENGTH_OFFSET,
        &((HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32).to_be_bytes(),
    );
    b[MAGIC_OFFSET] = 2;
    put(
        &mut b,
        LAST_OFFSET_DELTA_OFFSET,
        &(records - 1).to_be_bytes(),
    );
    put(&mut b, MAX_TIMESTAMP_OFFSET, &1_000i64.to_be_bytes());
    put(&mut b, PRODUCER_ID_OFFSET, &producer_id.to_be_bytes());
    put(&mut b, PRODUCER_EPOCH_OFFSET, &epoch.to_be_bytes());
    put(&mut b, BASE_SEQUENCE_OFFSET, &base_sequence.to_be_bytes());
    put(&mut b, RECORD_COUNT_OFFSET, &records.to_be_bytes());
    recompute_crc(&mut b);
    b
}

/// Checks and commits one append at `offset`.
fn append(
    table: &mut ProducerStateTable,
    bytes: &[u8],
    offset: i64,
) -> Result<AppendCheck, ProducerError> {
    let check = table.check(bytes, Offset(offset), None)?;
    if let AppendCheck::Fresh(updates) = &check {
        table.commit(updates.clone());
    }
    Ok(check)
}

#[test]
fn a_retry_of_any_of_the_last_five_batches_is_a_duplicate_with_its_offsets() {
    let mut table = ProducerStateTable::default();
    for i in 0..6 {
        append(&mut table, &batch(7, 0, i * 10, 10), i64::from(i) * 10).expect("in sequence");
    }
    // Batch 0 fell out of the window; batches 1..=5 are remembered.
    for i in 1..6 {
        let check = table.check(&batch(7, 0, i * 10, 10), Offset(999), None);
        let Ok(AppendCheck::Duplicate(found)) = check else {
            panic!("batch {i}: {check:?}");
        };
        assert_eq!(
            (found.first_offset, found.last_offset),
            (Offset(i64::from(i) * 10), Offset(i64::from(i) * 10 + 9))
        );
    }
    assert!(matches!(
        table.check(&batch(7, 0, 0, 10), Offset(999), None),
        Err(ProducerError::OutOfOrderSequence {
            last: 59,
            found: 0,
            ..
        })
    ));
}

#[test]
fn a_gap_is_out_of_order_and_an_older_epoch_is_fenced() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &batch(1, 3, 0, 5), 0).expect("first batch");
    assert!(matches!(
        table.check(&batch(1, 3, 6, 1), Offset(5), None),
        Err(ProducerError::OutOfOrderSequence {
            last: 4,
            found: 6,
            ..
        })
    ));
    assert!(matches!(
        table.check(&batch(1, 2, 5, 1), Offset(5), None),
        Err(ProducerError::InvalidProducerEpoch {
            epoch: 2,
            current: 3,
            ..
        })
    ));
    // KIP-360: a bumped epoch starts again at 0, and only there.
    assert!(matches!(
        table.check(&batch(1, 4, 5, 1), Offset(5), None),
        Err(ProducerError::OutOfOrderSequence { .. })
    ));
    append(&mut table, &batch(1, 4, 0, 1), 5).expect("new epoch at 0");
    assert_eq!(table.get(1).map(|e| e.epoch), Some(4));
}

#[test]
fn an_unknown_producer_must_start_at_sequence_zero() {
    let table = ProducerStateTable::default();
    assert!(matches!(
        table.check(&batch(9, 0, 42, 1), Offset(0), None),
        Err(ProducerError::UnknownProducerId { found: 42, .. })
    ));
    assert!(matches!(
        table.check(&batch(9, 0, -1, 1), Offset(0), None),
        Err(ProducerError::InvalidSequence { .. })
    ));
}

#[test]
fn sequences_wrap_at_i32_max() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &batch(1, 0, 0, 1), 0).expect("start");
    let mut entry = *table.get(1).expect("entry");
    entry.push(
        0,
        BatchMetadata {
            first_seq: i32::MAX - 9,
            last_seq: i32::MAX - 1,
            first_offset: Offset(1),
            last_offset: Offset(9),
            timestamp_ms: 0,
        },
    );
    table.insert(1, entry);
    // Three records from MAX: MAX, 0, 1.
    let wrapping = batch(1, 0, i32::MAX, 3);
    let Ok(AppendCheck::Fresh(updates)) = table.check(&wrapping, Offset(10), None) else {
        panic!("the wrap continues the sequence");
    };
    table.commit(updates);
    assert_eq!(
        table
            .get(1)
            .and_then(|e| e.last_batch())
            .map(|b| b.last_seq),
        Some(1)
    );
    append(&mut table, &batch(1, 0, 2, 1), 13).expect("after the wrap");
}

#[test]
fn batches_without_a_producer_id_are_not_tracked() {
    let table = ProducerStateTable::default();
    assert_eq!(
        table.check(&batch(-1, -1, -1, 3), Offset(0), None),
        Ok(AppendCheck::Fresh(Vec::new()))
    );
}

#[test]
fn several_batches_of_one_producer_in_one_append_are_checked_in_order() {
    let mut table = ProducerStateTable::default();
    let mut both = batch(5, 0, 0, 2);
    both.extend_from_slice(&batch(5, 0, 2, 2));
    append(&mut table, &both, 0).expect("two in sequence");
    assert_eq!(table.get(5).map(|e| e.batches().len()), Some(2));
    let mut gap = batch(5, 0, 4, 1);
    gap.extend_from_slice(&batch(5, 0, 9, 1));
    assert!(table.check(&gap, Offset(4), None).is_err());
    assert_eq!(
        table.get(5).map(|e| e.batches().len()),
        Some(2),
        "a refused append changes nothing"
    );
}

#[test]
fn expiry_forgets_producers_idle_for_the_expiration() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &batch(1, 0, 0, 1), 0).expect("start");
    assert_eq!(table.expire(1_000 + 99, 100), 0);
    assert_eq!(table.expire(1_000 + 100, 100), 1);
    assert!(table.is_empty());
}

#[test]
fn snapshots_round_trip_the_last_batch_of_each_producer() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &batch(1, 2, 0, 3), 0).expect("p1");
    append(&mut table, &batch(1, 2, 3, 4), 3).expect("p1 again");
    append(&mut table, &batch(8, 0, 0, 1), 7).expect("p8");
    let bytes = snapshot::encode(&table);
    let loaded = snapshot::decode(&bytes).expect("decodes");
    let p1 = loaded.get(1).expect("p1 kept");
    assert_eq!(p1.epoch, 2);
    assert_eq!(
        p1.batches(),
        &[BatchMetadata {
            first_seq: 3,
            last_seq: 6,
            first_offset: Offset(3),
            last_offset: Offset(6),
            timestamp_ms: 1_000
        }]
    );
    assert_eq!(loaded.len(), 2);
    let mut corrupt = bytes.clone();
    corrupt[12] ^= 1;
    assert_eq!(snapshot::decode(&corrupt), Err(SnapshotError::Crc));
    assert_eq!(snapshot::decode(&bytes[..5]), Err(SnapshotError::Truncated));
}

#[test]
fn snapshot_file_names_are_twenty_digit_offsets() {
    assert_eq!(
        snapshot::file_name(Offset(42)),
        "00000000000000000042.snapshot"
    );
    assert_eq!(
        snapshot::parse_file_name("00000000000000000042.snapshot"),
        Some(Offset(42))
    );
    assert_eq!(snapshot::parse_file_name("42.snapshot"), None);
    assert_eq!(snapshot::parse_file_name("00000000000000000042.log"), None);
}
