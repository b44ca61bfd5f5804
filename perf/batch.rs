//! The generator's RecordBatch v2: encoded once and patched in place.
//!
//! The generator must not spend its core on encoding: a batch of fixed-size
//! records is encoded once (with the shared `BatchBuilder`), and per send
//! only the stamped values, the timestamps and the CRC change, through the
//! storage module's header layout. Compressed batches are re-encoded per
//! send instead (see `encode_batch`).

use std::ops::Range;

use anyhow::{bail, ensure, Result};
use bytes::Bytes;
use kafka_protocol::records::Compression;
use ringlog::client::{BatchBuilder, BatchOptions};
use ringlog::storage::batch::{self as layout, BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};

/// Most records one generated batch may hold.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;
/// Largest generated batch; Kafka's default `message.max.bytes` is about 1 MiB,
/// brokers may accept more, but a single batch beyond this is not a realistic load.
pub const BATCH_BYTES_MAX: usize = 64 << 20;
/// Fewest bytes a record adds beside its value (length, attributes,
/// timestamp and offset deltas, null key, value length, header count).
const RECORD_OVERHEAD_BYTES_MIN: usize = 7;

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

/// Record `index`'s value: filler, then (when `run_id` is given and the
/// value has room) the due time and the run id over its first bytes.
fn write_value(value: &mut [u8], index: usize, run_id: Option<u64>, due_ns: u64) {
    fill_value(value, index as u64 + 0x9E37_79B9_7F4A_7C15);
    if let Some(id) = run_id {
        if value.len() >= STAMP_BYTES {
            value[0..8].copy_from_slice(&due_ns.to_le_bytes());
            value[8..16].copy_from_slice(&id.to_le_bytes());
        }
    }
}

/// Encodes `record_count` generated records, all at `timestamp_ms`. Slow
/// (allocates): per send only with `--compression` other than none.
pub fn encode_batch(
    record_count: usize,
    value_bytes: usize,
    compression: Compression,
    timestamp_ms: i64,
    run_id: Option<u64>,
    mut due_ns: impl FnMut(usize) -> u64,
) -> Result<Bytes> {
    let options = BatchOptions {
        compression,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::with_capacity(options, record_count);
    let mut value = vec![0u8; value_bytes];
    for i in 0..record_count {
        write_value(&mut value, i, run_id, due_ns(i));
        builder.push(None, Some(Bytes::copy_from_slice(&value)), timestamp_ms);
    }
    Ok(builder.encode()?)
}

impl BatchTemplate {
    /// Encodes an uncompressed v2 batch; values are filled and, when
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
        let too_large =
            format!("batch exceeds {BATCH_BYTES_MAX} bytes; use fewer records per batch");
        // Refuse before encoding what cannot fit, whatever the varint sizes.
        ensure!(
            HEADER_BYTES + record_count * (value_bytes + RECORD_OVERHEAD_BYTES_MIN)
                <= BATCH_BYTES_MAX,
            "{too_large}"
        );
        let bytes = encode_batch(
            record_count,
            value_bytes,
            Compression::None,
            timestamp_ms,
            run_id,
            |_| 0,
        )?
        .to_vec();
        ensure!(bytes.len() <= BATCH_BYTES_MAX, "{too_large}");
        let mut value_positions = Vec::with_capacity(record_count);
        for_each_value_range(&bytes, |_, value| value_positions.push(value.start as u32))?;
        ensure!(
            value_positions.len() == record_count,
            "encoded batch holds {} values, expected {record_count}",
            value_positions.len()
        );
        Ok(Self {
            bytes,
            value_positions,
        })
    }
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
    layout::set_timestamps(batch, timestamp_ms, timestamp_ms);
    layout::recompute_crc(batch);
}

/// An idempotent producer's fields for each send (KIP-98): its id and
/// epoch, and a sequence per partition that moves on by the batch's records.
pub struct Sequencer {
    producer_id: i64,
    epoch: i16,
    next_sequences: Vec<i32>,
    /// Mark every batch transactional (KIP-98 attribute bit 4).
    transactional: bool,
}

impl Sequencer {
    pub fn new(producer_id: i64, epoch: i16, partitions: usize) -> Sequencer {
        Sequencer {
            producer_id,
            epoch,
            next_sequences: vec![0; partitions],
            transactional: false,
        }
    }

    /// A sequencer whose batches are transactional.
    pub fn transactional(mut self) -> Sequencer {
        self.transactional = true;
        self
    }

    pub fn producer(&self) -> (i64, i16) {
        (self.producer_id, self.epoch)
    }

    /// Writes the fields for a send to partition slot `slot`, and the CRC
    /// (hardware CRC-32C over the batch: a few microseconds per 100 KB).
    pub fn set_next(&mut self, batch: &mut [u8], slot: usize) {
        let sequence = &mut self.next_sequences[slot];
        layout::set_producer(batch, self.producer_id, self.epoch, *sequence);
        if self.transactional {
            let at = layout::ATTRIBUTES_OFFSET;
            let attributes = i16::from_be_bytes([batch[at], batch[at + 1]])
                | layout::ATTRIBUTE_TRANSACTIONAL_BIT;
            batch[at..at + 2].copy_from_slice(&attributes.to_be_bytes());
        }
        layout::recompute_crc(batch);
        let records = i32::from_be_bytes(
            batch[layout::RECORD_COUNT_OFFSET..layout::RECORD_COUNT_OFFSET + 4]
                .try_into()
                .expect("a batch holds its 4-byte record count"),
        );
        *sequence = ringlog::storage::producer_state::increment_sequence(*sequence, records);
    }
}

/// The header of the batch at the start of `buf`. `Ok(None)` when the
/// batch is incomplete (a fetch response may end with a partial batch).
pub fn complete_batch(buf: &[u8]) -> Result<Option<BatchHeader>> {
    let header = match BatchHeader::parse(buf) {
        Ok(header) => header,
        Err(ringlog::storage::Error::Truncated { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    ensure!(
        header.batch_length >= (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32,
        "batch length {} too small",
        header.batch_length
    );
    if buf.len() < header.total_bytes() {
        return Ok(None);
    }
    Ok(Some(header))
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

/// Calls `each(offset_delta, value_range)` for every record of an
/// uncompressed batch that has a value.
fn for_each_value_range(batch: &[u8], mut each: impl FnMut(i64, Range<usize>)) -> Result<()> {
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
            each(offset_delta, at..value_end);
        }
        at = end;
    }
    Ok(())
}

/// Calls `each(offset_delta, value)` for every record of an uncompressed batch.
pub fn for_each_value(batch: &[u8], mut each: impl FnMut(i64, &[u8])) -> Result<()> {
    for_each_value_range(batch, |offset_delta, value| {
        each(offset_delta, &batch[value])
    })
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
            let crc = BatchHeader::parse(&t.bytes).unwrap().crc;
            assert_eq!(crc, layout::compute_crc(&t.bytes));
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
    fn sequenced_batches_keep_a_valid_crc_and_count_on_per_partition() {
        let mut template = BatchTemplate::build(7, 20, None, 1).unwrap();
        let mut sequencer = Sequencer::new(42, 3, 2);
        for expected in [0, 7, 14] {
            sequencer.set_next(&mut template.bytes, 1);
            let header = BatchHeader::parse(&template.bytes).unwrap();
            header
                .validate(&template.bytes, 1 << 20)
                .expect("CRC fixed");
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (42, 3, expected)
            );
        }
        sequencer.set_next(&mut template.bytes, 0);
        assert_eq!(
            BatchHeader::parse(&template.bytes).unwrap().base_sequence,
            0
        );
    }

    #[test]
    fn view_reads_header_and_reports_partial_batch_as_incomplete() {
        let t = BatchTemplate::build(10, 50, None, 0).unwrap();
        let v = complete_batch(&t.bytes).unwrap().unwrap();
        assert_eq!(
            (
                v.base_offset,
                v.last_offset(),
                v.record_count,
                v.compression_code() != 0,
                v.total_bytes()
            ),
            (0, 9, 10, false, t.bytes.len())
        );
        assert_eq!(complete_batch(&t.bytes[..t.bytes.len() - 1]).unwrap(), None);
        assert_eq!(complete_batch(&t.bytes[..30]).unwrap(), None);
    }

    #[test]
    fn compressed_batches_decode_with_kafka_protocol() {
        for c in [
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            let b = encode_batch(50, 100, c, 5, Some(RUN_ID_MAGIC | 1), |i| i as u64).unwrap();
            let v = complete_batch(&b).unwrap().unwrap();
            assert!(v.compression_code() != 0);
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
