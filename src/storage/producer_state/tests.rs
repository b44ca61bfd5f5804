use super::snapshot::{self, SnapshotError};
use super::*;
use crate::storage::batch::{
    recompute_crc, ATTRIBUTES_OFFSET, ATTRIBUTE_TRANSACTIONAL_BIT, BASE_SEQUENCE_OFFSET,
    BATCH_LENGTH_OFFSET, HEADER_BYTES, LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD_BYTES, MAGIC_OFFSET,
    MAX_TIMESTAMP_OFFSET, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET, RECORD_COUNT_OFFSET,
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

/// A transactional batch (KIP-98 attribute bit 4).
fn txn_batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> Vec<u8> {
    let mut b = batch(producer_id, epoch, base_sequence, records);
    b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
        .copy_from_slice(&ATTRIBUTE_TRANSACTIONAL_BIT.to_be_bytes());
    recompute_crc(&mut b);
    b
}

fn marker(result: TxnResult, coordinator_epoch: i32) -> StoredMarker {
    StoredMarker {
        result,
        coordinator_epoch,
    }
}

/// Checks and applies a marker for `producer_id` at `offset`.
fn end_txn(
    table: &mut ProducerStateTable,
    producer_id: i64,
    epoch: i16,
    stored: StoredMarker,
    offset: i64,
) -> Result<Option<CompletedTxn>, ProducerError> {
    let (entry, completed) = table.check_marker(producer_id, epoch, stored, Offset(offset), 5)?;
    table.insert(producer_id, entry);
    Ok(completed)
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
    // Batch 0 was stored (the sequences before 59 all were), but its
    // offsets are gone: DUPLICATE_SEQUENCE_NUMBER, which clients take as
    // delivered.
    assert!(matches!(
        table.check(&batch(7, 0, 0, 10), Offset(999), None),
        Err(ProducerError::DuplicateSequence {
            last: 59,
            found: 0,
            ..
        })
    ));
    // A batch that reaches past the last stored sequence is out of order.
    assert!(matches!(
        table.check(&batch(7, 0, 55, 10), Offset(999), None),
        Err(ProducerError::OutOfOrderSequence {
            last: 59,
            found: 55,
            ..
        })
    ));
}

#[test]
fn a_retry_after_a_rebuild_from_a_snapshot_is_a_duplicate_sequence() {
    // A snapshot remembers each producer's last batch only.
    let mut table = ProducerStateTable::default();
    for i in 0..5 {
        append(&mut table, &batch(9, 0, i * 2, 2), i64::from(i) * 2).expect("in sequence");
    }
    let mut rebuilt = ProducerStateTable::default();
    let mut last_only = ProducerEntry::new(0);
    if let Some(last) = table.get(9).and_then(|e| e.last_batch()) {
        last_only.push(0, *last);
    }
    rebuilt.insert(9, last_only);
    for i in 0..4 {
        assert!(
            matches!(
                rebuilt.check(&batch(9, 0, i * 2, 2), Offset(999), None),
                Err(ProducerError::DuplicateSequence { last: 9, .. })
            ),
            "batch {i}"
        );
    }
    assert!(matches!(
        rebuilt.check(&batch(9, 0, 8, 2), Offset(999), None),
        Ok(AppendCheck::Duplicate(_))
    ));
    assert!(matches!(
        rebuilt.check(&batch(9, 0, 10, 1), Offset(999), None),
        Ok(AppendCheck::Fresh(_))
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

#[test]
fn a_transaction_is_open_from_its_first_batch_to_its_marker() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &txn_batch(1, 0, 0, 2), 10).expect("first txn batch");
    append(&mut table, &txn_batch(2, 0, 0, 1), 12).expect("second producer");
    append(&mut table, &txn_batch(1, 0, 2, 2), 13).expect("more of the first");
    assert_eq!(table.first_unstable_offset(), Some(Offset(10)));
    assert_eq!(
        table.get(1).and_then(|e| e.current_txn_first_offset),
        Some(Offset(10))
    );
    let completed = end_txn(&mut table, 1, 0, marker(TxnResult::Abort, 0), 15).expect("marker");
    assert_eq!(
        completed,
        Some(CompletedTxn {
            producer_id: 1,
            first_offset: Offset(10),
            last_offset: Offset(15),
            result: TxnResult::Abort
        })
    );
    assert_eq!(table.first_unstable_offset(), Some(Offset(12)));
    end_txn(&mut table, 2, 0, marker(TxnResult::Commit, 0), 16).expect("marker");
    assert_eq!(table.first_unstable_offset(), None);
    // Transactions V1: the same epoch continues its sequence in the next transaction.
    append(&mut table, &txn_batch(1, 0, 4, 1), 17).expect("next transaction");
    assert_eq!(table.first_unstable_offset(), Some(Offset(17)));
}

#[test]
fn a_marker_from_an_older_producer_or_coordinator_epoch_is_refused() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &txn_batch(1, 3, 0, 1), 0).expect("txn batch");
    end_txn(&mut table, 1, 3, marker(TxnResult::Commit, 5), 1).expect("marker");
    assert!(matches!(
        end_txn(&mut table, 1, 2, marker(TxnResult::Commit, 5), 2),
        Err(ProducerError::InvalidProducerEpoch {
            epoch: 2,
            current: 3,
            ..
        })
    ));
    assert!(matches!(
        end_txn(&mut table, 1, 3, marker(TxnResult::Abort, 4), 2),
        Err(ProducerError::CoordinatorFenced {
            found: 4,
            current: 5,
            ..
        })
    ));
    assert_eq!(table.get(1).map(|e| e.coordinator_epoch), Some(5));
}

#[test]
fn a_marker_with_a_bumped_epoch_fences_late_batches_and_restarts_sequences() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &txn_batch(1, 0, 0, 3), 0).expect("txn batch");
    // KIP-890: the coordinator ends the transaction with epoch + 1.
    end_txn(&mut table, 1, 1, marker(TxnResult::Commit, 0), 3).expect("marker");
    assert!(matches!(
        table.check(&txn_batch(1, 0, 3, 1), Offset(4), None),
        Err(ProducerError::InvalidProducerEpoch { .. })
    ));
    assert!(matches!(
        table.check(&txn_batch(1, 0, 0, 3), Offset(4), None),
        Err(ProducerError::InvalidProducerEpoch { .. })
    ));
    append(&mut table, &txn_batch(1, 1, 0, 1), 4).expect("the new epoch from 0");
}

#[test]
fn a_plain_batch_inside_an_open_transaction_is_refused() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &txn_batch(1, 0, 0, 1), 0).expect("txn batch");
    assert!(matches!(
        table.check(&batch(1, 0, 1, 1), Offset(1), None),
        Err(ProducerError::NotTransactional { producer_id: 1 })
    ));
}

#[test]
fn a_producer_with_an_open_transaction_does_not_expire() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &txn_batch(1, 0, 0, 1), 0).expect("open");
    append(&mut table, &batch(2, 0, 0, 1), 1).expect("plain");
    assert_eq!(table.expire(1_000 + 100, 100), 1);
    assert!(table.get(1).is_some());
}

#[test]
fn snapshots_keep_open_transactions_and_replay_ends_them() {
    let mut table = ProducerStateTable::default();
    append(&mut table, &txn_batch(1, 0, 0, 2), 4).expect("open");
    append(&mut table, &txn_batch(2, 0, 0, 2), 6).expect("open");
    end_txn(&mut table, 2, 0, marker(TxnResult::Abort, 3), 8).expect("marker");
    let mut loaded = snapshot::decode(&snapshot::encode(&table)).expect("decodes");
    assert_eq!(loaded.first_unstable_offset(), Some(Offset(4)));
    assert_eq!(loaded.get(2).map(|e| e.coordinator_epoch), Some(3));
    let marker_batch = crate::storage::control::marker_batch(
        &crate::storage::TxnMarker {
            producer_id: 1,
            producer_epoch: 0,
            coordinator_epoch: 3,
            result: TxnResult::Commit,
        },
        5,
    );
    let mut header = crate::storage::BatchHeader::parse(&marker_batch).expect("header");
    header.base_offset = 9;
    let completed = loaded.replay(&header, Some(marker(TxnResult::Commit, 3)));
    assert_eq!(
        completed.map(|c| (c.first_offset, c.last_offset)),
        Some((Offset(4), Offset(9)))
    );
    assert_eq!(loaded.first_unstable_offset(), None);
}
