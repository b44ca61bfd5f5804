//! Broker-side recompression for a topic's `compression.type` (what Kafka's
//! `LogValidator` does when the topic codec differs from the producer's).
//!
//! A batch is rebuilt from its own bytes: the 61-byte header is kept (base
//! offset, producer id/epoch, base sequence, timestamps, timestamp type,
//! transactional bit), the records section is decompressed (bounded), every
//! record is checked, and the same record bytes are compressed with the topic
//! codec; then `batchLength`, the codec bits and the CRC are rewritten.
//! Records are never decoded into values and re-encoded one by one, so they
//! come out byte-identical.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::batch::{
    BatchHeader, BatchIter, ATTRIBUTES_OFFSET, ATTRIBUTE_COMPRESSION_MASK, ATTRIBUTE_CONTROL_BIT,
    BATCH_LENGTH_OFFSET, CRC_OFFSET, HEADER_BYTES, LOG_OVERHEAD_BYTES,
};
use super::error::{CorruptReason, Error};
use super::records::{self, Codec};

/// `records` as the topic stores them: returned as it is (no copy) when every
/// batch already has `target`'s codec or is a control batch; otherwise a new
/// buffer in which the other batches are recompressed. Each rebuilt batch must
/// still fit `max_message_bytes` (Kafka checks the size again after it
/// recompresses). `records` must have passed `batch::validate_all`.
pub fn to_codec(records: Bytes, target: Codec, max_message_bytes: usize) -> Result<Bytes, Error> {
    if !needs_recompression(&records, target)? {
        return Ok(records);
    }
    let mut out = BytesMut::with_capacity(records.len());
    for item in BatchIter::new(&records) {
        let (header, range) = item?;
        let batch = &records[range];
        if keeps_codec(&header, target) {
            out.extend_from_slice(batch);
            continue;
        }
        let start = out.len();
        recompress_batch(&header, batch, target, &mut out)?;
        let size = out.len() - start;
        if size > max_message_bytes {
            return Err(Error::MessageTooLarge {
                size,
                max: max_message_bytes.min(u32::MAX as usize) as u32,
            });
        }
    }
    Ok(out.freeze())
}

fn needs_recompression(records: &[u8], target: Codec) -> Result<bool, Error> {
    for item in BatchIter::new(records) {
        let (header, _) = item?;
        if !keeps_codec(&header, target) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Control batches (transaction markers) are never recompressed, as in Kafka.
fn keeps_codec(header: &BatchHeader, target: Codec) -> bool {
    header.attributes & ATTRIBUTE_CONTROL_BIT != 0 || header.compression_code() == target.code()
}

/// Appends `batch` rebuilt with `target`'s codec to `out`.
fn recompress_batch(
    header: &BatchHeader,
    batch: &[u8],
    target: Codec,
    out: &mut BytesMut,
) -> Result<(), Error> {
    let section = records::records_section(header, batch)?;
    // Kafka's LogValidator reads every record of a batch it recompresses.
    records::validate_records(header, &section)?;
    let head: &[u8; HEADER_BYTES] = batch
        .get(..HEADER_BYTES)
        .and_then(|h| h.try_into().ok())
        .ok_or(Error::Truncated {
            needed: HEADER_BYTES,
            available: batch.len(),
        })?;
    build_batch(head, &section, target, out)
}

/// Appends to `out` a batch made of the header `head` (every field but
/// `batchLength`, the codec bits and the CRC already as wanted) and the
/// records section `section` compressed with `target`; then writes those
/// three fields. The one place stored batches are rebuilt: recompression
/// here, and compaction, which drops records from a batch.
pub fn build_batch(
    head: &[u8; HEADER_BYTES],
    section: &[u8],
    target: Codec,
    out: &mut BytesMut,
) -> Result<(), Error> {
    let start = out.len();
    out.extend_from_slice(head);
    compress_into(target, section, out)?;
    let rebuilt = &mut out[start..];
    let batch_length = i32::try_from(rebuilt.len() - LOG_OVERHEAD_BYTES)
        .map_err(|_| Error::CorruptBatch(CorruptReason::DecompressedBeyondLimit))?;
    rebuilt[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]
        .copy_from_slice(&batch_length.to_be_bytes());
    let attributes = i16::from_be_bytes([head[ATTRIBUTES_OFFSET], head[ATTRIBUTES_OFFSET + 1]]);
    let attributes = (attributes & !ATTRIBUTE_COMPRESSION_MASK) | target.code();
    rebuilt[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&rebuilt[ATTRIBUTES_OFFSET..]);
    rebuilt[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Compresses a records section with kafka-protocol's codecs (the framing
/// and levels Kafka clients use: xerial snappy, LZ4 frames, zstd level 3).
fn compress_into(target: Codec, section: &[u8], out: &mut BytesMut) -> Result<(), Error> {
    let plain = |buf: &mut BytesMut| -> anyhow::Result<()> {
        buf.extend_from_slice(section);
        Ok(())
    };
    let compressed = match target {
        Codec::None => {
            out.extend_from_slice(section);
            Ok(())
        }
        Codec::Gzip => Gzip::compress(out, plain),
        Codec::Snappy => Snappy::compress(out, plain),
        Codec::Lz4 => Lz4::compress(out, plain),
        Codec::Zstd => Zstd::compress(out, plain),
    };
    compressed.map_err(|_| Error::CompressionFailed(target.code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    const CODECS: [(Codec, Compression); 5] = [
        (Codec::None, Compression::None),
        (Codec::Gzip, Compression::Gzip),
        (Codec::Snappy, Compression::Snappy),
        (Codec::Lz4, Compression::Lz4),
        (Codec::Zstd, Compression::Zstd),
    ];

    fn records(count: usize, control: bool) -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                transactional: true,
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 4242,
                producer_epoch: 7,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: 17 + i as i32,
                timestamp: 1_700_000_000_000 + 3 * i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: (i % 4 != 1).then(|| Bytes::from(format!("value-{i}-{}", "ab".repeat(30)))),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_string(format!("h{i}")),
                    Some(Bytes::from_static(b"header")),
                )]
                .into_iter()
                .collect(),
            })
            .collect()
    }

    fn encode(records: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encodes");
        buf.freeze()
    }

    /// Everything but the compression and the CRC must survive: header fields
    /// and every record's offset, timestamp, key, value and headers.
    fn assert_same_batch(rebuilt: &[u8], original: &[u8], target: Codec) {
        let (new, old) = (
            BatchHeader::parse(rebuilt).expect("header"),
            BatchHeader::parse(original).expect("header"),
        );
        new.validate(rebuilt, usize::MAX)
            .expect("valid rebuilt batch");
        assert_eq!(new.compression_code(), target.code());
        assert_eq!(
            new.attributes & !ATTRIBUTE_COMPRESSION_MASK,
            old.attributes & !ATTRIBUTE_COMPRESSION_MASK
        );
        let same = |h: &BatchHeader| {
            (
                h.base_offset,
                h.partition_leader_epoch,
                h.last_offset_delta,
                h.base_timestamp,
                h.max_timestamp,
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.record_count,
            )
        };
        assert_eq!(same(&new), same(&old));
        let decode = |b: &[u8]| {
            RecordBatchDecoder::decode_all(&mut Bytes::copy_from_slice(b))
                .expect("decodes")
                .into_iter()
                .flat_map(|set| set.records)
                .collect::<Vec<_>>()
        };
        assert_eq!(decode(rebuilt), decode(original));
    }

    #[test]
    fn every_codec_converts_to_every_other_keeping_header_and_records() {
        for (from_codec, from) in CODECS {
            let original = encode(&records(25, false), from);
            for (target, _) in CODECS {
                let rebuilt = to_codec(original.clone(), target, usize::MAX)
                    .unwrap_or_else(|e| panic!("{from_codec:?} -> {target:?}: {e}"));
                assert_same_batch(&rebuilt, &original, target);
                if from_codec == target {
                    assert_eq!(rebuilt.as_ptr(), original.as_ptr(), "kept without a copy");
                }
            }
        }
    }

    #[test]
    fn uncompressed_target_stores_the_exact_records_section() {
        let plain = encode(&records(10, false), Compression::None);
        let gzip = encode(&records(10, false), Compression::Gzip);
        let rebuilt = to_codec(gzip, Codec::None, usize::MAX).expect("recompresses");
        assert_eq!(&rebuilt[HEADER_BYTES..], &plain[HEADER_BYTES..]);
    }

    #[test]
    fn control_batches_keep_their_codec() {
        let control = encode(&records(1, true), Compression::None);
        let rebuilt = to_codec(control.clone(), Codec::Zstd, usize::MAX).expect("kept");
        assert_eq!(rebuilt, control);
    }

    #[test]
    fn only_batches_of_another_codec_are_rebuilt_in_a_mixed_append() {
        let lz4 = encode(&records(5, false), Compression::Lz4);
        let gzip = encode(&records(6, false), Compression::Gzip);
        let both = Bytes::from([&lz4[..], &gzip[..]].concat());
        let rebuilt = to_codec(both, Codec::Lz4, usize::MAX).expect("recompresses");
        assert_eq!(
            &rebuilt[..lz4.len()],
            &lz4[..],
            "lz4 batch kept byte for byte"
        );
        assert_same_batch(&rebuilt[lz4.len()..], &gzip, Codec::Lz4);
    }

    #[test]
    fn a_rebuilt_batch_above_max_message_bytes_is_refused() {
        let zstd = encode(&records(50, false), Compression::Zstd);
        let limit = zstd.len() + 10;
        assert!(matches!(
            to_codec(zstd, Codec::None, limit),
            Err(Error::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn a_batch_whose_records_do_not_parse_is_corrupt() {
        let mut plain = encode(&records(3, false), Compression::None).to_vec();
        // The first record's length varint now claims more than the batch holds.
        plain[HEADER_BYTES] = 0x7e;
        let crc = crc32c::crc32c(&plain[ATTRIBUTES_OFFSET..]);
        plain[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            to_codec(Bytes::from(plain), Codec::Lz4, usize::MAX),
            Err(Error::CorruptBatch(CorruptReason::MalformedRecord(_)))
        ));
    }
}
