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

/// One record of a batch, borrowed from its (decompressed) records section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// `None` for a null value: a tombstone.
    pub value: Option<&'a [u8]>,
    /// The whole record as stored, its length varint included.
    pub bytes: &'a [u8],
}

impl RecordView<'_> {
    pub fn meta(&self) -> RecordMeta {
        RecordMeta {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Walks the records of one batch's (decompressed) records section. Each item
/// is a view of one record; a record that does not fit its length, a count
/// that disagrees with the header, or bytes left over are errors.
pub struct Records<'a> {
    section: &'a [u8],
    position: usize,
    records_left: i32,
    base_offset: i64,
    base_timestamp: i64,
    /// KIP-32: with LogAppendTime every record carries the batch's maxTimestamp.
    log_append_time: Option<i64>,
}

impl<'a> Records<'a> {
    pub fn new(header: &BatchHeader, section: &'a [u8]) -> Records<'a> {
        Records {
            section,
            position: 0,
            records_left: header.record_count.max(0),
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            log_append_time: header.is_log_append_time().then_some(header.max_timestamp),
        }
    }

    fn next_record(&mut self) -> Result<RecordView<'a>, Error> {
        let start = self.position;
        let mut cursor = Cursor::new(&self.section[start..]);
        let length = cursor.varint()?;
        let length = usize::try_from(length).map_err(|_| malformed("negative record length"))?;
        let body = cursor.take(length)?;
        self.position += cursor.position;
        let fields = record_body(body)?;
        Ok(RecordView {
            offset: self
                .base_offset
                .wrapping_add(i64::from(fields.offset_delta)),
            timestamp_ms: self
                .log_append_time
                .unwrap_or(self.base_timestamp.wrapping_add(fields.timestamp_delta)),
            key: fields.key,
            value: fields.value,
            bytes: &self.section[start..self.position],
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, Error>;

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

/// [`Records`] reduced to each record's offset and timestamp.
pub struct RecordIter<'a>(Records<'a>);

impl<'a> RecordIter<'a> {
    pub fn new(header: &BatchHeader, section: &'a [u8]) -> RecordIter<'a> {
        RecordIter(Records::new(header, section))
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<RecordMeta, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|r| r.map(|view| view.meta()))
    }
}

/// The fields of one record body that storage looks at.
struct RecordFields<'a> {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// Checks that one record's body holds exactly its fields, and returns the
/// ones storage uses. Headers are skipped, not read.
fn record_body(body: &[u8]) -> Result<RecordFields<'_>, Error> {
    let mut cursor = Cursor::new(body);
    cursor.take(1)?; // attributes, unused in v2
    let timestamp_delta = cursor.varlong()?;
    let offset_delta = cursor.varint()?;
    let key = cursor.nullable_bytes()?;
    let value = cursor.nullable_bytes()?;
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
    Ok(RecordFields {
        timestamp_delta,
        offset_delta,
        key,
        value,
    })
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

/// Whether any record of `records` (batches that passed
/// `batch::validate_all`) has a null key. Compacted topics refuse such
/// batches (Kafka's LogValidator: "Compacted topic cannot accept message
/// without key"). Control batches carry no user keys and are not looked into.
pub fn has_null_key(records: &[u8]) -> Result<bool, Error> {
    for item in super::batch::BatchIter::new(records) {
        let (header, range) = item?;
        if header.attributes & super::batch::ATTRIBUTE_CONTROL_BIT != 0 {
            continue;
        }
        let section = records_section(&header, &records[range])?;
        for record in Records::new(&header, &section) {
            if record?.key.is_none() {
                return Ok(true);
            }
        }
    }
    Ok(false)
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
mod tests;
