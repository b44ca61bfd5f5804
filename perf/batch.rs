//! Kafka RecordBatch v2 built by hand, once, and patched in place.
//!
//! The generator must not spend its core on encoding: a batch of fixed-size
//! records is laid out once, and per send only the stamped values, the
//! timestamps and the CRC change. Compressed batches go through
//! kafka-protocol's encoder instead (see `encode_compressed`).

use anyhow::{bail, ensure, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

// Byte offsets inside a v2 batch header (Kafka's DefaultRecordBatch layout).
pub const BASE_OFFSET_AT: usize = 0;
pub const BATCH_LENGTH_AT: usize = 8;
pub const LEADER_EPOCH_AT: usize = 12;
pub const MAGIC_AT: usize = 16;
pub const CRC_AT: usize = 17;
pub const ATTRIBUTES_AT: usize = 21;
pub const LAST_OFFSET_DELTA_AT: usize = 23;
pub const FIRST_TIMESTAMP_AT: usize = 27;
pub const MAX_TIMESTAMP_AT: usize = 35;
pub const PRODUCER_ID_AT: usize = 43;
pub const PRODUCER_EPOCH_AT: usize = 51;
pub const BASE_SEQUENCE_AT: usize = 53;
pub const RECORD_COUNT_AT: usize = 57;
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD_BYTES: usize = 12;

/// Most records one generated batch may hold.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;
/// Largest generated batch; Kafka's default `message.max.bytes` is about 1 MiB,
/// brokers may accept more, but a single batch beyond this is not a realistic load.
pub const BATCH_BYTES_MAX: usize = 64 << 20;

/// A stamped value starts with the due time (unix ns, LE) and the run id (LE).
pub const STAMP_BYTES: usize = 16;
/// High 32 bits of every run id: marks values written by this generator.
pub const RUN_ID_MAGIC: u64 = 0x524C_5046 << 32; // "RLPF"

/// A batch of `record_count` records with null keys, `value_bytes`-byte values
/// and no headers, plus where each value starts, so values can be re-stamped.
#[derive(Debug, Clone)]
pub struct BatchTemplate {
    pub bytes: Vec<u8>,
    pub value_positions: Vec<u32>,
}

fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

fn put_varint(out: &mut Vec<u8>, v: i32) {
    let mut u = zigzag32(v);
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

fn varint_len(v: i32) -> usize {
    let mut u = zigzag32(v);
    let mut n = 1;
    while u >= 0x80 {
        u >>= 7;
        n += 1;
    }
    n
}

/// Deterministic filler: text-like bytes so compression has realistic work,
/// not all zeros (which compress absurdly well).
pub fn fill_value(value: &mut [u8], seed: u64) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 ,.:{}\"";
    let mut x = seed | 1;
    for b in value.iter_mut() {
        // xorshift64: cheap and good enough for filler.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = ALPHABET[(x % ALPHABET.len() as u64) as usize];
    }
}

impl BatchTemplate {
    /// Lays out an uncompressed v2 batch; values are filled and, when
    /// `run_id` is given, carry the run id after the (zero) due time.
    pub fn build(
        record_count: usize,
        value_bytes: usize,
        run_id: Option<u64>,
        timestamp_ms: i64,
    ) -> Result<Self> {
        ensure!(
            (1..=BATCH_RECORDS_MAX).contains(&record_count),
            "records per batch must be 1..={BATCH_RECORDS_MAX}"
        );
        ensure!(
            value_bytes <= i32::MAX as usize / 2,
            "record size too large"
        );
        let value_len = i32::try_from(value_bytes)?;
        let mut bytes = Vec::with_capacity(HEADER_BYTES + record_count * (value_bytes + 12));
        bytes.resize(HEADER_BYTES, 0);
        let mut value_positions = Vec::with_capacity(record_count);
        let mut filler = vec![0u8; value_bytes];
        for i in 0..record_count {
            let offset_delta = i as i32;
            // attributes + timestampDelta(0) + offsetDelta + keyLength(-1) + valueLength + value + headerCount(0)
            let body =
                1 + 1 + varint_len(offset_delta) + 1 + varint_len(value_len) + value_bytes + 1;
            put_varint(&mut bytes, i32::try_from(body)?);
            bytes.push(0); // record attributes (unused)
            put_varint(&mut bytes, 0); // timestampDelta
            put_varint(&mut bytes, offset_delta);
            put_varint(&mut bytes, -1); // null key
            put_varint(&mut bytes, value_len);
            value_positions.push(u32::try_from(bytes.len())?);
            fill_value(&mut filler, i as u64 + 0x9E37_79B9_7F4A_7C15);
            if let Some(id) = run_id {
                if value_bytes >= STAMP_BYTES {
                    filler[8..16].copy_from_slice(&id.to_le_bytes());
                }
            }
            bytes.extend_from_slice(&filler);
            put_varint(&mut bytes, 0); // no headers
            ensure!(
                bytes.len() <= BATCH_BYTES_MAX,
                "batch exceeds {BATCH_BYTES_MAX} bytes; use fewer records per batch"
            );
        }
        let total = bytes.len();
        let h = &mut bytes[..HEADER_BYTES];
        h[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&0i64.to_be_bytes());
        h[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
            .copy_from_slice(&((total - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
        h[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        h[MAGIC_AT] = 2;
        h[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&0i16.to_be_bytes());
        h[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&((record_count - 1) as i32).to_be_bytes());
        h[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&(-1i64).to_be_bytes());
        h[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&(-1i16).to_be_bytes());
        h[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        h[RECORD_COUNT_AT..RECORD_COUNT_AT + 4]
            .copy_from_slice(&(record_count as i32).to_be_bytes());
        set_timestamps(&mut bytes, timestamp_ms);
        update_crc(&mut bytes);
        Ok(Self {
            bytes,
            value_positions,
        })
    }
}

pub fn set_timestamps(batch: &mut [u8], timestamp_ms: i64) {
    batch[FIRST_TIMESTAMP_AT..FIRST_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
}

/// CRC-32C over attributes..end, as KIP-98 defines for magic 2.
pub fn update_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Writes each record's due time (unix ns) into its value, the timestamps,
/// and the CRC. `due_ns(i)` gives record i's due time.
pub fn stamp(
    batch: &mut [u8],
    value_positions: &[u32],
    timestamp_ms: i64,
    mut due_ns: impl FnMut(usize) -> u64,
) {
    for (i, &pos) in value_positions.iter().enumerate() {
        let pos = pos as usize;
        batch[pos..pos + 8].copy_from_slice(&due_ns(i).to_le_bytes());
    }
    set_timestamps(batch, timestamp_ms);
    update_crc(batch);
}

/// A compressed batch through kafka-protocol's encoder. Slow (allocates),
/// used only with `--compression` other than none.
pub fn encode_compressed(
    record_count: usize,
    value_bytes: usize,
    compression: Compression,
    timestamp_ms: i64,
    run_id: Option<u64>,
    mut due_ns: impl FnMut(usize) -> u64,
) -> Result<Bytes> {
    let mut records = Vec::with_capacity(record_count);
    let mut value = vec![0u8; value_bytes];
    for i in 0..record_count {
        fill_value(&mut value, i as u64 + 0x9E37_79B9_7F4A_7C15);
        if let Some(id) = run_id {
            if value_bytes >= STAMP_BYTES {
                value[0..8].copy_from_slice(&due_ns(i).to_le_bytes());
                value[8..16].copy_from_slice(&id.to_le_bytes());
            }
        }
        records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes;
            // this keeps one batch and a base sequence of -1 (no idempotence).
            sequence: i as i32 - 1,
            timestamp: timestamp_ms,
            key: None,
            value: Some(Bytes::copy_from_slice(&value)),
            headers: Default::default(),
        });
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}

/// One batch header as the consumer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchView {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: i32,
    pub compressed: bool,
    /// Total bytes of the batch including baseOffset and batchLength.
    pub total_bytes: usize,
}

/// Reads the header of the batch at the start of `buf`. `Ok(None)` when the
/// batch is incomplete (a fetch response may end with a partial batch).
pub fn view(buf: &[u8]) -> Result<Option<BatchView>> {
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    let be_i32 = |at: usize| i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let base_offset = i64::from_be_bytes(buf[0..8].try_into()?);
    let batch_length = be_i32(BATCH_LENGTH_AT);
    ensure!(
        batch_length >= (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32,
        "batch length {batch_length} too small"
    );
    let total_bytes = batch_length as usize + LOG_OVERHEAD_BYTES;
    if buf.len() < total_bytes {
        return Ok(None);
    }
    if buf[MAGIC_AT] != 2 {
        bail!("unsupported record batch magic {}", buf[MAGIC_AT]);
    }
    let attributes = i16::from_be_bytes([buf[ATTRIBUTES_AT], buf[ATTRIBUTES_AT + 1]]);
    Ok(Some(BatchView {
        base_offset,
        last_offset: base_offset + i64::from(be_i32(LAST_OFFSET_DELTA_AT)),
        record_count: be_i32(RECORD_COUNT_AT),
        compressed: attributes & 0x07 != 0,
        total_bytes,
    }))
}

fn read_varint(buf: &[u8], at: &mut usize) -> Result<i64> {
    let mut result: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&b) = buf.get(*at) else {
            bail!("varint runs past the batch")
        };
        *at += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        ensure!(shift < 64, "varint too long");
    }
    Ok(((result >> 1) as i64) ^ -((result & 1) as i64))
}

/// Calls `each(offset_delta, value)` for every record of an uncompressed batch.
pub fn for_each_value(batch: &[u8], mut each: impl FnMut(i64, &[u8])) -> Result<()> {
    let mut at = HEADER_BYTES;
    while at < batch.len() {
        let length = read_varint(batch, &mut at)?;
        ensure!(length >= 0, "negative record length");
        let end = at + length as usize;
        ensure!(end <= batch.len(), "record runs past the batch");
        at += 1; // attributes
        read_varint(batch, &mut at)?; // timestampDelta
        let offset_delta = read_varint(batch, &mut at)?;
        let key_len = read_varint(batch, &mut at)?;
        if key_len > 0 {
            at += key_len as usize;
        }
        let value_len = read_varint(batch, &mut at)?;
        if value_len >= 0 {
            let value_end = at + value_len as usize;
            ensure!(value_end <= end, "value runs past the record");
            each(offset_delta, &batch[at..value_end]);
        }
        at = end;
    }
    Ok(())
}

/// The due time stamped in a value, if this generator wrote it.
pub fn stamped_due_ns(value: &[u8], run_id: Option<u64>) -> Option<u64> {
    if value.len() < STAMP_BYTES {
        return None;
    }
    let id = u64::from_le_bytes(value[8..16].try_into().ok()?);
    let matches = match run_id {
        Some(expected) => id == expected,
        None => id & 0xFFFF_FFFF_0000_0000 == RUN_ID_MAGIC,
    };
    if !matches {
        return None;
    }
    Some(u64::from_le_bytes(value[0..8].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn built_batch_has_a_valid_crc32c_and_decodes_with_kafka_protocol() {
        for (count, size) in [
            (1, 0),
            (1, 100),
            (64, 100),
            (65, 100),
            (1000, 100),
            (10, 1024),
            (3, 20000),
        ] {
            let t = BatchTemplate::build(count, size, Some(RUN_ID_MAGIC | 7), 1_700_000_000_000)
                .unwrap();
            let crc = u32::from_be_bytes(t.bytes[CRC_AT..CRC_AT + 4].try_into().unwrap());
            assert_eq!(crc, crc32c::crc32c(&t.bytes[ATTRIBUTES_AT..]));
            let mut buf = Bytes::from(t.bytes.clone());
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), count);
            for (i, r) in set.records.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.key, None);
                assert_eq!(r.timestamp, 1_700_000_000_000);
                assert_eq!(r.value.as_ref().unwrap().len(), size);
            }
        }
    }

    #[test]
    fn stamping_keeps_the_batch_valid_and_values_carry_due_times() {
        let run = RUN_ID_MAGIC | 42;
        let mut t = BatchTemplate::build(200, 100, Some(run), 0).unwrap();
        stamp(&mut t.bytes, &t.value_positions, 1_234, |i| {
            1_000_000 + i as u64
        });
        let mut buf = Bytes::from(t.bytes.clone());
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        for (i, r) in set.records.iter().enumerate() {
            assert_eq!(r.timestamp, 1_234);
            assert_eq!(
                stamped_due_ns(r.value.as_ref().unwrap(), Some(run)),
                Some(1_000_000 + i as u64)
            );
        }
        let mut seen = 0;
        for_each_value(&t.bytes, |delta, value| {
            assert_eq!(stamped_due_ns(value, None), Some(1_000_000 + delta as u64));
            assert_eq!(stamped_due_ns(value, Some(run + 1)), None);
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, 200);
    }

    #[test]
    fn view_reads_header_and_reports_partial_batch_as_incomplete() {
        let t = BatchTemplate::build(10, 50, None, 0).unwrap();
        let v = view(&t.bytes).unwrap().unwrap();
        assert_eq!(
            v,
            BatchView {
                base_offset: 0,
                last_offset: 9,
                record_count: 10,
                compressed: false,
                total_bytes: t.bytes.len()
            }
        );
        assert_eq!(view(&t.bytes[..t.bytes.len() - 1]).unwrap(), None);
        assert_eq!(view(&t.bytes[..30]).unwrap(), None);
    }

    #[test]
    fn compressed_batches_decode_with_kafka_protocol() {
        for c in [
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            let b = encode_compressed(50, 100, c, 5, Some(RUN_ID_MAGIC | 1), |i| i as u64).unwrap();
            let v = view(&b).unwrap().unwrap();
            assert!(v.compressed);
            assert_eq!(v.record_count, 50);
            let set = RecordBatchDecoder::decode(&mut b.clone()).unwrap();
            assert_eq!(set.records.len(), 50);
            assert_eq!(
                stamped_due_ns(set.records[3].value.as_ref().unwrap(), None),
                Some(3)
            );
        }
    }
}
