//! The records inside one v2 batch: its compression codec, the records
//! section decompressed (bounded), and a walk over each record's leading
//! fields without copying keys, values or headers.
//!
//! Record layout (Kafka `DefaultRecord`), varints zigzag-encoded:
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//! keyLength varint | key | valueLength varint | value | headerCount varint | headers...
//! ```

use std::borrow::Cow;
use std::io::Read;

use super::batch::{BatchHeader, ATTRIBUTE_COMPRESSION_MASK, BATCH_BYTES_LIMIT, HEADER_BYTES};
use super::error::{CorruptReason, Error};

/// The most bytes a batch's records may decompress to: no more than storage
/// would hold as one uncompressed batch.
pub const DECOMPRESSED_BYTES_MAX: usize = BATCH_BYTES_LIMIT;
/// Snappy's largest expansion: a 3-byte copy element writes at most 64 bytes.
/// A block that claims more than this many times its size is corrupt, so its
/// claimed length never sizes an allocation on its own.
const SNAPPY_EXPANSION_MAX: usize = 22;
/// The xerial framing Kafka's Java client writes around snappy blocks
/// (magic, version 1, compatible version 1).
const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Bytes of a varint (i32) and a varlong (i64) at most.
const VARINT_BYTES_MAX: usize = 5;
const VARLONG_BYTES_MAX: usize = 10;

/// The compression codec of a batch (attributes bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    pub fn from_attributes(attributes: i16) -> Result<Codec, Error> {
        match attributes & ATTRIBUTE_COMPRESSION_MASK {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            code => Err(corrupt(CorruptReason::UnknownCompression(code))),
        }
    }

    pub fn code(self) -> i16 {
        self as i16
    }
}

fn corrupt(reason: CorruptReason) -> Error {
    Error::CorruptBatch(reason)
}

fn malformed(what: &'static str) -> Error {
    corrupt(CorruptReason::MalformedRecord(what))
}

/// One record's offset and timestamp, as a consumer would see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// The records section of a whole, framed batch: borrowed when uncompressed,
/// otherwise decompressed into one buffer of at most [`DECOMPRESSED_BYTES_MAX`].
pub fn records_section<'a>(header: &BatchHeader, batch: &'a [u8]) -> Result<Cow<'a, [u8]>, Error> {
    let section = batch
        .get(HEADER_BYTES..header.total_bytes())
        .ok_or(Error::Truncated {
            needed: header.total_bytes(),
            available: batch.len(),
        })?;
    match Codec::from_attributes(header.attributes)? {
        Codec::None => Ok(Cow::Borrowed(section)),
        codec => decompress(codec, section, DECOMPRESSED_BYTES_MAX).map(Cow::Owned),
    }
}

/// Decompresses a records section, refusing output beyond `limit` bytes.
pub fn decompress(codec: Codec, compressed: &[u8], limit: usize) -> Result<Vec<u8>, Error> {
    let failed = || corrupt(CorruptReason::DecompressionFailed(codec.code()));
    match codec {
        Codec::None => read_bounded(compressed, limit, codec),
        // Java's GZIPInputStream reads concatenated members; so does MultiGzDecoder.
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(compressed), limit, codec),
        Codec::Lz4 => {
            let decoder = lz4::Decoder::new(compressed).map_err(|_| failed())?;
            read_bounded(decoder, limit, codec)
        }
        Codec::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(compressed).map_err(|_| failed())?;
            read_bounded(decoder, limit, codec)
        }
        Codec::Snappy => decompress_snappy(compressed, limit),
    }
}

/// Reads a decoder to its end; the buffer grows with real output only.
fn read_bounded(reader: impl Read, limit: usize, codec: Codec) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| corrupt(CorruptReason::DecompressionFailed(codec.code())))?;
    if out.len() > limit {
        return Err(corrupt(CorruptReason::DecompressedBeyondLimit));
    }
    Ok(out)
}

/// Kafka's snappy: xerial framing (`[u32 length][raw block]`...), or one raw
/// block when the magic is absent, as snappy-java's SnappyInputStream reads it.
fn decompress_snappy(compressed: &[u8], limit: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let Some(mut rest) = compressed.strip_prefix(SNAPPY_XERIAL_HEADER.as_slice()) else {
        snappy_block(compressed, &mut out, limit)?;
        return Ok(out);
    };
    while !rest.is_empty() {
        let (length, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(CorruptReason::DecompressionFailed(Codec::Snappy.code())))?;
        let length = u32::from_be_bytes(*length) as usize;
        let block = after
            .get(..length)
            .ok_or_else(|| corrupt(CorruptReason::DecompressionFailed(Codec::Snappy.code())))?;
        snappy_block(block, &mut out, limit)?;
        rest = &after[length..];
    }
    Ok(out)
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Error> {
    let failed = || corrupt(CorruptReason::DecompressionFailed(Codec::Snappy.code()));
    let claimed = snap::raw::decompress_len(block).map_err(|_| failed())?;
    if claimed > block.len().saturating_mul(SNAPPY_EXPANSION_MAX) {
        return Err(failed());
    }
    let start = out.len();
    if start.saturating_add(claimed) > limit {
        return Err(corrupt(CorruptReason::DecompressedBeyondLimit));
    }
    out.resize(start + claimed, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|_| failed())?;
    out.truncate(start + written);
    Ok(())
}

/// Walks the records of one batch's (decompressed) records section. Each item
/// is a record's offset and timestamp; a record that does not fit its length,
/// a count that disagrees with the header, or bytes left over are errors.
pub struct RecordIter<'a> {
    section: &'a [u8],
    position: usize,
    records_left: i32,
    base_offset: i64,
    base_timestamp: i64,
    /// KIP-32: with LogAppendTime every record carries the batch's maxTimestamp.
    log_append_time: Option<i64>,
}

impl<'a> RecordIter<'a> {
    pub fn new(header: &BatchHeader, section: &'a [u8]) -> RecordIter<'a> {
        RecordIter {
            section,
            position: 0,
            records_left: header.record_count.max(0),
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            log_append_time: header.is_log_append_time().then_some(header.max_timestamp),
        }
    }

    fn next_record(&mut self) -> Result<RecordMeta, Error> {
        let mut cursor = Cursor::new(&self.section[self.position..]);
        let length = cursor.varint()?;
        let length = usize::try_from(length).map_err(|_| malformed("negative record length"))?;
        let body = cursor.take(length)?;
        self.position += cursor.position;
        let (timestamp_delta, offset_delta) = record_body(body)?;
        Ok(RecordMeta {
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp_ms: self
                .log_append_time
                .unwrap_or(self.base_timestamp.wrapping_add(timestamp_delta)),
        })
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<RecordMeta, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.records_left == 0 {
            if self.position == self.section.len() {
                return None;
            }
            // Kafka: "Incorrect declared batch size, records still remaining".
            self.position = self.section.len();
            return Some(Err(malformed("bytes after the last record")));
        }
        self.records_left -= 1;
        let record = self.next_record();
        if record.is_err() {
            self.records_left = 0;
            self.position = self.section.len();
        }
        Some(record)
    }
}

/// Checks that one record's body holds exactly its fields, and returns its
/// (timestampDelta, offsetDelta). Keys, values and headers are skipped, not read.
fn record_body(body: &[u8]) -> Result<(i64, i32), Error> {
    let mut cursor = Cursor::new(body);
    cursor.take(1)?; // attributes, unused in v2
    let timestamp_delta = cursor.varlong()?;
    let offset_delta = cursor.varint()?;
    cursor.nullable_bytes()?; // key
    cursor.nullable_bytes()?; // value
    let headers = cursor.varint()?;
    if headers < 0 {
        return Err(malformed("negative header count"));
    }
    // Each header takes at least two bytes, so the loop ends with the body.
    for _ in 0..headers {
        if cursor.nullable_bytes()?.is_none() {
            return Err(malformed("null header key"));
        }
        cursor.nullable_bytes()?;
    }
    if cursor.position != body.len() {
        return Err(malformed("bytes after the record's headers"));
    }
    Ok((timestamp_delta, offset_delta))
}

/// A bounds-checked reader of Kafka's zigzag varints.
struct Cursor<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, position: 0 }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| malformed("field beyond the record"))?;
        let bytes = &self.buf[self.position..end];
        self.position = end;
        Ok(bytes)
    }

    fn unsigned(&mut self, bytes_max: usize) -> Result<u64, Error> {
        let mut value = 0u64;
        for i in 0..bytes_max {
            let byte = *self
                .buf
                .get(self.position)
                .ok_or_else(|| malformed("varint beyond the record"))?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint too long"))
    }

    fn varlong(&mut self) -> Result<i64, Error> {
        let raw = self.unsigned(VARLONG_BYTES_MAX)?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    fn varint(&mut self) -> Result<i32, Error> {
        let raw = self.unsigned(VARINT_BYTES_MAX)?;
        let raw = u32::try_from(raw).map_err(|_| malformed("varint beyond 32 bits"))?;
        Ok((raw >> 1) as i32 ^ -((raw & 1) as i32))
    }

    /// A varint length and that many bytes; -1 is null.
    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, Error> {
        match self.varint()? {
            -1 => Ok(None),
            len if len < 0 => Err(malformed("negative length")),
            len => self.take(len as usize).map(Some),
        }
    }
}

/// Checks every record of a batch against its header: the walk ends exactly
/// at the end of the section after `recordCount` records.
pub fn validate_records(header: &BatchHeader, section: &[u8]) -> Result<(), Error> {
    RecordIter::new(header, section).try_for_each(|record| record.map(|_| ()))
}

/// ListOffsets by timestamp inside one batch: the first record at or after
/// `min_offset` whose timestamp is at least `timestamp_ms` (Kafka's
/// `LogSegment.findOffsetByTimestamp`).
pub fn first_at_or_after(
    header: &BatchHeader,
    batch: &[u8],
    timestamp_ms: i64,
    min_offset: i64,
) -> Result<Option<RecordMeta>, Error> {
    if header.is_log_append_time() {
        // Every record has the batch's timestamp: no need to decompress.
        return Ok(first_offset_from(header, min_offset)
            .filter(|_| header.max_timestamp >= timestamp_ms)
            .map(|offset| RecordMeta {
                offset,
                timestamp_ms: header.max_timestamp,
            }));
    }
    let section = records_section(header, batch)?;
    for record in RecordIter::new(header, &section) {
        let record = record?;
        if record.offset >= min_offset && record.timestamp_ms >= timestamp_ms {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// KIP-734 (MAX_TIMESTAMP) inside one batch: the first record at or after
/// `min_offset` holding the batch's largest timestamp.
pub fn first_with_max_timestamp(
    header: &BatchHeader,
    batch: &[u8],
    min_offset: i64,
) -> Result<Option<RecordMeta>, Error> {
    if header.is_log_append_time() {
        return Ok(
            first_offset_from(header, min_offset).map(|offset| RecordMeta {
                offset,
                timestamp_ms: header.max_timestamp,
            }),
        );
    }
    let section = records_section(header, batch)?;
    let mut best: Option<RecordMeta> = None;
    for record in RecordIter::new(header, &section) {
        let record = record?;
        if record.offset >= min_offset && best.is_none_or(|b| record.timestamp_ms > b.timestamp_ms)
        {
            best = Some(record);
        }
    }
    Ok(best)
}

fn first_offset_from(header: &BatchHeader, min_offset: i64) -> Option<i64> {
    (header.last_offset() >= min_offset).then(|| header.base_offset.max(min_offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

    /// `count` records with timestamps base + 10*i (i = 0, 1, ...), and a key,
    /// a value and a header each.
    fn encoded(count: usize, compression: Compression, timestamps: &[i64]) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 100 + i as i64,
                sequence: 100 + i as i32,
                timestamp: timestamps
                    .get(i)
                    .copied()
                    .unwrap_or(BASE_TIMESTAMP_MS + 10 * i as i64),
                key: Some(Bytes::from(format!("key-{i}"))),
                value: (i % 3 != 0).then(|| Bytes::from(vec![b'v'; 50 + i])),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encodes");
        buf.freeze()
    }

    fn walk(batch: &[u8]) -> Result<Vec<RecordMeta>, Error> {
        let header = BatchHeader::parse(batch)?;
        let section = records_section(&header, batch)?;
        RecordIter::new(&header, &section).collect()
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_walks_to_the_same_offsets_and_timestamps() {
        for compression in CODECS {
            let batch = encoded(40, compression, &[]);
            let records = walk(&batch).expect("walks");
            let expected: Vec<RecordMeta> = (0..40)
                .map(|i| RecordMeta {
                    offset: 100 + i,
                    timestamp_ms: BASE_TIMESTAMP_MS + 10 * i,
                })
                .collect();
            assert_eq!(records, expected, "{compression:?}");
        }
    }

    #[test]
    fn lookup_finds_the_first_record_at_or_after_the_timestamp() {
        for compression in CODECS {
            let batch = encoded(40, compression, &[]);
            let header = BatchHeader::parse(&batch).expect("header");
            let at = |t: i64, min: i64| {
                first_at_or_after(&header, &batch, t, min)
                    .expect("lookup")
                    .map(|r| r.offset)
            };
            assert_eq!(at(BASE_TIMESTAMP_MS, 0), Some(100));
            assert_eq!(at(BASE_TIMESTAMP_MS + 200, 0), Some(120));
            assert_eq!(at(BASE_TIMESTAMP_MS + 205, 0), Some(121));
            assert_eq!(at(BASE_TIMESTAMP_MS + 390, 0), Some(139));
            assert_eq!(at(BASE_TIMESTAMP_MS + 391, 0), None);
            // Records below the log start offset are never the answer.
            assert_eq!(at(BASE_TIMESTAMP_MS, 130), Some(130));
        }
    }

    #[test]
    fn max_timestamp_is_the_first_record_holding_it() {
        let t = BASE_TIMESTAMP_MS;
        let timestamps = [t + 5, t + 90, t + 7, t + 90, t + 1];
        for compression in CODECS {
            let batch = encoded(5, compression, &timestamps);
            let header = BatchHeader::parse(&batch).expect("header");
            let max = first_with_max_timestamp(&header, &batch, 0).expect("walks");
            assert_eq!(
                max,
                Some(RecordMeta {
                    offset: 101,
                    timestamp_ms: t + 90
                }),
                "{compression:?}"
            );
            let max = first_with_max_timestamp(&header, &batch, 102).expect("walks");
            assert_eq!(max.map(|r| r.offset), Some(103), "{compression:?}");
        }
    }

    #[test]
    fn log_append_time_gives_every_record_the_batch_timestamp() {
        let mut batch = encoded(10, Compression::Lz4, &[]).to_vec();
        super::super::batch::set_log_append_time(&mut batch, 5_000);
        let header = BatchHeader::parse(&batch).expect("header");
        let found = first_at_or_after(&header, &batch, 4_000, 103).expect("lookup");
        assert_eq!(
            found,
            Some(RecordMeta {
                offset: 103,
                timestamp_ms: 5_000
            })
        );
        assert_eq!(
            first_at_or_after(&header, &batch, 5_001, 0).expect("lookup"),
            None
        );
        assert!(walk(&batch)
            .expect("walks")
            .iter()
            .all(|r| r.timestamp_ms == 5_000));
    }

    /// Every truncation and every single-byte change of an uncompressed batch's
    /// records gives records or an error, never a panic.
    #[test]
    fn damaged_records_are_errors_not_panics() {
        let batch = encoded(6, Compression::None, &[]);
        let header = BatchHeader::parse(&batch).expect("header");
        let section = &batch[HEADER_BYTES..];
        for cut in 0..section.len() {
            assert!(
                validate_records(&header, &section[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        for at in 0..section.len() {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                let mut damaged = section.to_vec();
                damaged[at] = value;
                let _ = validate_records(&header, &damaged);
            }
        }
        let mut trailing = section.to_vec();
        trailing.push(0);
        assert!(validate_records(&header, &trailing).is_err());
    }

    #[test]
    fn a_varint_longer_than_five_bytes_is_refused() {
        let mut cursor = Cursor::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(cursor.varint().is_err());
        let mut cursor = Cursor::new(&[0xff, 0xff, 0xff, 0xff, 0x1f]);
        assert!(cursor.varint().is_err(), "beyond 32 bits");
        let mut cursor = Cursor::new(&[0x01]);
        assert_eq!(cursor.varint().expect("varint"), -1);
    }

    #[test]
    fn a_record_count_larger_than_the_records_is_an_error() {
        let batch = encoded(3, Compression::None, &[]);
        let mut header = BatchHeader::parse(&batch).expect("header");
        header.record_count = 4;
        assert!(validate_records(&header, &batch[HEADER_BYTES..]).is_err());
        header.record_count = 2;
        assert!(validate_records(&header, &batch[HEADER_BYTES..]).is_err());
    }

    #[test]
    fn garbage_under_every_codec_is_an_error() {
        let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 % 256) as u8).collect();
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            assert!(decompress(codec, &garbage, 1 << 20).is_err(), "{codec:?}");
            // Empty input may decode to nothing; it must not panic.
            let _ = decompress(codec, &[], 1 << 20);
        }
        let mut framed = SNAPPY_XERIAL_HEADER.to_vec();
        framed.extend_from_slice(&1000u32.to_be_bytes());
        framed.extend_from_slice(b"short");
        assert!(decompress(Codec::Snappy, &framed, 1 << 20).is_err());
    }

    #[test]
    fn output_beyond_the_limit_is_refused() {
        let zeros = vec![0u8; 64 * 1024];
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encoded(20, compression, &[]);
            let header = BatchHeader::parse(&batch).expect("header");
            let codec = Codec::from_attributes(header.attributes).expect("codec");
            let plain = decompress(codec, &batch[HEADER_BYTES..], 1 << 20).expect("fits");
            assert!(matches!(
                decompress(codec, &batch[HEADER_BYTES..], plain.len() - 1),
                Err(Error::CorruptBatch(CorruptReason::DecompressedBeyondLimit))
            ));
        }
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&zeros)
            .expect("compresses");
        assert!(matches!(
            decompress(Codec::Snappy, &compressed, 1024),
            Err(Error::CorruptBatch(CorruptReason::DecompressedBeyondLimit))
        ));
    }

    #[test]
    fn a_snappy_block_claiming_an_impossible_length_is_refused_before_allocating() {
        // Claims 2^31 bytes from a 6-byte block.
        let block = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        assert!(matches!(
            decompress(Codec::Snappy, &block, usize::MAX),
            Err(Error::CorruptBatch(CorruptReason::DecompressionFailed(2)))
        ));
    }

    proptest::proptest! {
        /// Arbitrary records bytes under any codec bits and record count give
        /// records or an error, never a panic.
        #[test]
        fn arbitrary_records_sections_never_panic(
            section in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            record_count in -2i32..64,
            attributes in 0i16..16,
            timestamp_ms in proptest::prelude::any::<i64>(),
        ) {
            let template = encoded(1, Compression::None, &[]);
            let mut header = BatchHeader::parse(&template).expect("header");
            header.record_count = record_count;
            header.attributes = attributes;
            header.batch_length = (HEADER_BYTES - super::super::batch::LOG_OVERHEAD_BYTES
                + section.len()) as i32;
            let batch = [&template[..HEADER_BYTES], &section[..]].concat();
            let _ = first_at_or_after(&header, &batch, timestamp_ms, 0);
            let _ = first_with_max_timestamp(&header, &batch, 0);
            if let Ok(section) = records_section(&header, &batch) {
                let _ = validate_records(&header, &section);
            }
        }
    }

    #[test]
    fn unknown_codec_bits_are_corrupt() {
        for code in 5..=7 {
            assert!(Codec::from_attributes(code).is_err());
        }
    }
}
