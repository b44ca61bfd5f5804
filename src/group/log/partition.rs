//! The coordinator's log in a cluster: its records are Kafka records (key
//! and value as the coordinator encodes them; no value deletes the key) in
//! the internal offsets topic, one batch per flush and offsets partition,
//! appended through the partition's Raft group and acknowledged once
//! committed. The partition's leader replays it to rebuild its groups.

use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

use super::super::error::GroupLogError;
use super::super::record::Key;
use super::framing::Op;

/// Where the coordinator's records go in a cluster.
pub trait OffsetsPartitions {
    /// The offsets topic's partition count.
    fn partitions(&self) -> u32;
    /// Appends `batch` to offsets partition `partition`; resolves once the
    /// batch is committed, or with why it was not (this broker does not
    /// lead the partition any more, the partition is not here).
    fn append(&self, partition: u32, batch: Bytes) -> LocalBoxFuture<'static, Result<(), String>>;
}

/// The offsets partition of a record: that of the group its key names.
pub fn partition_of_key(key: &[u8], partitions: u32) -> Result<u32, GroupLogError> {
    Ok(crate::group::partition_for_group(
        Key::decode(key)?.group(),
        partitions,
    ))
}

/// One record batch holding `ops` in order.
pub fn encode_batch(ops: &[Op], now_ms: i64) -> Result<Bytes, GroupLogError> {
    let records: Vec<Record> = ops
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: NO_SEQUENCE,
            timestamp: now_ms,
            key: Some(Bytes::copy_from_slice(key)),
            value: value.as_deref().map(Bytes::copy_from_slice),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| GroupLogError::Corrupt(format!("encoding an offsets batch: {e}")))?;
    Ok(buf.freeze())
}

/// The records of stored batches, in order; control batches (Raft's own
/// entries, transaction markers) are skipped.
pub fn decode_batches(batches: &[Bytes]) -> Result<Vec<Op>, GroupLogError> {
    let mut ops = Vec::new();
    for batch in batches {
        let sets = RecordBatchDecoder::decode_all(&mut batch.clone())
            .map_err(|e| GroupLogError::Corrupt(format!("decoding an offsets batch: {e}")))?;
        for record in sets.into_iter().flat_map(|s| s.records) {
            if record.control {
                continue;
            }
            let Some(key) = record.key else {
                continue;
            };
            ops.push((key.to_vec(), record.value.map(|v| v.to_vec())));
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_to_its_ops_with_deletes() {
        let ops: Vec<Op> = vec![
            (b"k1".to_vec(), Some(b"v1".to_vec())),
            (b"k2".to_vec(), None),
            (b"k1".to_vec(), Some(Vec::new())),
        ];
        let batch = encode_batch(&ops, 1_000).unwrap();
        assert_eq!(decode_batches(&[batch.clone(), batch]).unwrap().len(), 6);
        let batch = encode_batch(&ops, 1_000).unwrap();
        assert_eq!(decode_batches(&[batch]).unwrap(), ops);
    }
}
