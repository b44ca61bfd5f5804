//! The records of a Fetch answer, as a consumer reads them: each complete
//! batch checked by storage's own checks (framing, CRC-32C, every record's
//! length, decompression bounded by [`DECOMPRESSED_BYTES_MAX`]), then decoded
//! by kafka-protocol's record decoder.
//!
//! A broker may end an answer with a partial batch (Kafka fills `max_bytes`
//! and cuts); it is left for the next fetch, as Kafka's consumers do.

use std::borrow::Cow;

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::ClientError;
use crate::storage::batch::{BatchHeader, BATCH_BYTES_LIMIT, HEADER_BYTES};
use crate::storage::records::{records_section, validate_records, DECOMPRESSED_BYTES_MAX};

const _: () = assert!(DECOMPRESSED_BYTES_MAX <= BATCH_BYTES_LIMIT);

/// What one fetched records field held.
#[derive(Debug, Default)]
pub struct FetchedRecords {
    /// Data records in offset order (control records of transactions dropped).
    pub records: Vec<Record>,
    /// The offset after the last complete batch, data or control: where the
    /// next fetch starts. `None` when no complete batch was there.
    pub next_offset: Option<i64>,
}

/// Decodes every complete batch of `records` (a partition's `records` field).
pub fn decode_fetched(records: &Bytes) -> Result<FetchedRecords, ClientError> {
    let mut fetched = FetchedRecords::default();
    let mut position = 0;
    while records.len() - position >= HEADER_BYTES {
        let rest = &records[position..];
        let header = BatchHeader::parse(rest).map_err(corrupt)?;
        if header.total_bytes() > rest.len() {
            break;
        }
        header.validate(rest, BATCH_BYTES_LIMIT).map_err(corrupt)?;
        let end = position + header.total_bytes();
        decode_batch(&header, records.slice(position..end), &mut fetched.records)?;
        fetched.next_offset = Some(header.last_offset() + 1);
        position = end;
    }
    Ok(fetched)
}

/// Appends the data records of one validated batch to `out`.
fn decode_batch(
    header: &BatchHeader,
    batch: Bytes,
    out: &mut Vec<Record>,
) -> Result<(), ClientError> {
    // The walk proves the record count fits the section before kafka-protocol
    // reserves room for that many records.
    let section = match records_section(header, &batch).map_err(corrupt)? {
        // Uncompressed: the records are the batch's own bytes, not a copy.
        Cow::Borrowed(_) => batch.slice(HEADER_BYTES..header.total_bytes()),
        Cow::Owned(decompressed) => Bytes::from(decompressed),
    };
    validate_records(header, &section).map_err(corrupt)?;
    let set = RecordBatchDecoder::decode_with_custom_compression(
        &mut batch.clone(),
        Some(|_: &mut Bytes, _| Ok(section.clone())),
    )
    .map_err(|error| ClientError::CorruptBatch(format!("{error:#}")))?;
    out.extend(set.records.into_iter().filter(|record| !record.control));
    Ok(())
}

fn corrupt(error: crate::storage::Error) -> ClientError {
    ClientError::CorruptBatch(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BatchBuilder, BatchOptions};
    use kafka_protocol::records::Compression;

    fn batch(base_offset: i64, values: &[&str], compression: Compression) -> Vec<u8> {
        let mut builder = BatchBuilder::new(BatchOptions {
            compression,
            ..BatchOptions::default()
        });
        for value in values {
            builder.push(
                Some(Bytes::from_static(b"k")),
                Some(Bytes::copy_from_slice(value.as_bytes())),
                1_000,
            );
        }
        let mut bytes = builder.encode().expect("encodes").to_vec();
        crate::storage::batch::set_base_offset(&mut bytes, base_offset);
        bytes
    }

    #[test]
    fn complete_batches_decode_and_a_cut_last_batch_is_left_for_the_next_fetch() {
        let mut answer = batch(10, &["a", "b"], Compression::None);
        answer.extend(batch(12, &["c"], Compression::Zstd));
        let third = batch(13, &["d"], Compression::None);
        answer.extend(&third[..third.len() - 5]);
        let fetched = decode_fetched(&Bytes::from(answer)).expect("decodes");
        let values: Vec<_> = fetched
            .records
            .iter()
            .map(|r| (r.offset, r.value.clone().expect("a value")))
            .collect();
        assert_eq!(
            values,
            vec![
                (10, Bytes::from_static(b"a")),
                (11, Bytes::from_static(b"b")),
                (12, Bytes::from_static(b"c"))
            ]
        );
        assert_eq!(fetched.next_offset, Some(13));
    }

    #[test]
    fn a_corrupt_batch_is_an_error_not_a_panic() {
        let mut answer = batch(0, &["a"], Compression::None);
        let last = answer.len() - 1;
        answer[last] ^= 0xff;
        assert!(matches!(
            decode_fetched(&Bytes::from(answer)),
            Err(ClientError::CorruptBatch(_))
        ));
        assert!(decode_fetched(&Bytes::from_static(&[0; 12]))
            .expect("too short for a batch")
            .records
            .is_empty());
    }
}
