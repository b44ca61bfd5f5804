//! The record walk on every codec, lookups and malformed input.

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
