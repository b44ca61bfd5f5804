//! The one RecordBatch v2 builder for tools and tests: records in, the bytes
//! a producer sends out, through kafka-protocol's encoder (every compression).
//!
//! The broker never encodes records (it stores the bytes it was sent), so
//! this lives with the client, not in `storage`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::ClientError;

/// The batch-wide fields a producer chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    pub compression: Compression,
    /// -1: not an idempotent producer.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the first record; -1 without idempotence.
    pub base_sequence: i32,
    /// A transactional producer's batch (KIP-98 attribute bit 4).
    pub transactional: bool,
}

impl Default for BatchOptions {
    /// What a plain (non-idempotent) producer sends, uncompressed.
    fn default() -> Self {
        BatchOptions {
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        }
    }
}

/// Collects records, then encodes them as one v2 batch.
#[derive(Debug, Clone, Default)]
pub struct BatchBuilder {
    options: BatchOptions,
    records: Vec<Record>,
}

impl BatchBuilder {
    pub fn new(options: BatchOptions) -> Self {
        BatchBuilder {
            options,
            records: Vec::new(),
        }
    }

    pub fn with_capacity(options: BatchOptions, records: usize) -> Self {
        BatchBuilder {
            options,
            records: Vec::with_capacity(records),
        }
    }

    /// Appends a record; its offset delta is its position in the batch.
    pub fn push(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp_ms: i64,
    ) -> &mut Self {
        self.push_with_headers(key, value, timestamp_ms, Default::default())
    }

    /// Appends a record with headers.
    pub fn push_with_headers(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp_ms: i64,
        headers: indexmap::IndexMap<StrBytes, Option<Bytes>>,
    ) -> &mut Self {
        let offset_delta = self.records.len() as i32;
        self.records.push(Record {
            transactional: self.options.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: self.options.producer_id,
            producer_epoch: self.options.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(offset_delta),
            // kafka-protocol starts a new batch wherever `offset - sequence`
            // changes and takes the base sequence from the first record:
            // counting from base_sequence keeps one batch (-1: none).
            sequence: self.options.base_sequence.wrapping_add(offset_delta),
            timestamp: timestamp_ms,
            key,
            value,
            headers,
        });
        self
    }

    /// The records pushed so far, as kafka-protocol sees them.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The encoded batch. An empty builder gives no bytes.
    pub fn encode(&self) -> Result<Bytes, ClientError> {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &self.records,
            &RecordEncodeOptions {
                version: 2,
                compression: self.options.compression,
            },
        )
        .map_err(|error| ClientError::EncodeBatch(format!("{error:#}")))?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{validate_all, BatchHeader};
    use kafka_protocol::records::RecordBatchDecoder;

    fn three_records(options: BatchOptions) -> Bytes {
        let mut builder = BatchBuilder::new(options);
        for i in 0..3u8 {
            builder.push(
                Some(Bytes::from(vec![i])),
                Some(Bytes::from(vec![i; 40])),
                100 + i64::from(i),
            );
        }
        builder.encode().expect("encodes")
    }

    #[test]
    fn every_compression_gives_one_valid_batch_with_the_chosen_fields() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let options = BatchOptions {
                compression,
                producer_id: 7,
                producer_epoch: 2,
                base_sequence: 40,
                transactional: false,
            };
            let batch = three_records(options);
            assert_eq!(validate_all(&batch, 1 << 20).expect("valid"), 1);
            let header = BatchHeader::parse(&batch).expect("header");
            assert_eq!(header.compression_code(), compression as i16);
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (7, 2, 40)
            );
            assert_eq!(
                (
                    header.base_timestamp,
                    header.max_timestamp,
                    header.record_count
                ),
                (100, 102, 3)
            );
            let set = RecordBatchDecoder::decode(&mut batch.clone()).expect("decodes");
            assert_eq!(set.records[2].value.as_deref(), Some(&[2u8; 40][..]));
        }
    }

    #[test]
    fn a_transactional_batch_has_the_transactional_bit() {
        let options = BatchOptions {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
            ..BatchOptions::default()
        };
        let header = BatchHeader::parse(&three_records(options)).expect("header");
        assert_eq!(
            header.attributes & crate::storage::batch::ATTRIBUTE_TRANSACTIONAL_BIT,
            crate::storage::batch::ATTRIBUTE_TRANSACTIONAL_BIT
        );
    }

    #[test]
    fn a_plain_producer_batch_has_no_producer_id_or_sequence() {
        let header = BatchHeader::parse(&three_records(BatchOptions::default())).expect("header");
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (-1, -1, -1)
        );
    }
}
