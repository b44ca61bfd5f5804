//! Micro-benchmarks of the broker's hot paths: batch checksums and offset
//! assignment, Produce request decoding, Fetch response encoding, sparse
//! index building and lookups, recompression for a topic `compression.type`,
//! the record walk of a timestamp lookup, and the idempotent producer check. (Storage appends and reads:
//! benches/storage.rs.)
//!
//! Run: `cargo bench --bench hot_paths` (add a filter such as `crc32c` to run one group).

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use ringlog::client::{BatchBuilder, BatchOptions};
use ringlog::kafka::fetch_encode::{self, PartitionAnswer, TopicAnswer};
use ringlog::storage;
use ringlog::storage::index::SegmentIndex;

/// (records per batch, value bytes): the shapes the load generator uses.
const SHAPES: [(usize, usize); 3] = [(1000, 100), (100, 1024), (16, 1024)];
/// Kafka's default message.max.bytes is ~1 MiB; the bench batches stay under 2 MiB.
const MESSAGE_BYTES_MAX: usize = 2 << 20;

fn batch(records: usize, value_bytes: usize) -> Bytes {
    encoded_batch(records, value_bytes, Compression::None)
}

fn encoded_batch(records: usize, value_bytes: usize, compression: Compression) -> Bytes {
    let value = Bytes::from(
        (0..value_bytes)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let options = BatchOptions {
        compression,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::with_capacity(options, records);
    for _ in 0..records {
        builder.push(None, Some(value.clone()), 1_700_000_000_000);
    }
    builder
        .encode()
        .expect("encoding a bench batch cannot fail")
}

/// What the produce path does per batch: the storage engine's checks of
/// every batch (framing, magic, CRC-32C, counts), then the base offset
/// written in place (outside the CRC).
fn validate_and_assign(batch: &mut [u8], base_offset: i64) -> usize {
    let batches =
        storage::batch::validate_all(batch, MESSAGE_BYTES_MAX).expect("bench batch is valid");
    storage::batch::set_base_offset(batch, base_offset);
    batches
}

/// The producer-state check every append runs before staging (KIP-98):
/// a batch without a producer id, an idempotent one whose sequence moves
/// on each time (check, then commit), and a transactional one (which also
/// keeps its producer's open transaction).
fn bench_producer_check(c: &mut Criterion) {
    use storage::producer_state::{AppendCheck, ProducerStateTable};
    let mut group = c.benchmark_group("producer_state_check");
    let (records, value) = SHAPES[0];
    group.throughput(Throughput::Elements(records as u64));
    for (name, producer_id) in [("plain", -1i64), ("idempotent", 7), ("transactional", 8)] {
        let mut data = batch(records, value).to_vec();
        if name == "transactional" {
            let at = storage::batch::ATTRIBUTES_OFFSET;
            data[at..at + 2]
                .copy_from_slice(&storage::batch::ATTRIBUTE_TRANSACTIONAL_BIT.to_be_bytes());
        }
        let mut table = ProducerStateTable::default();
        let (mut next, mut sequence) = (0i64, 0i32);
        group.bench_function(format!("{name}_{records}x{value}B"), |b| {
            b.iter(|| {
                storage::batch::set_producer(&mut data, producer_id, 0, sequence);
                match table.check(black_box(&data), storage::Offset(next), None) {
                    Ok(AppendCheck::Fresh(updates)) => table.commit(updates),
                    other => panic!("bench batch refused: {other:?}"),
                }
                next += records as i64;
                sequence = storage::producer_state::increment_sequence(sequence, records as i32);
            })
        });
    }
    group.finish();
}

fn bench_crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for bytes in [1024usize, 16 << 10, 1 << 20] {
        let data: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(bytes), &data, |b, d| {
            b.iter(|| crc32c::crc32c(black_box(d)))
        });
    }
    group.finish();
}

fn bench_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_and_assign_offsets");
    for (records, value) in SHAPES {
        let mut data = batch(records, value).to_vec();
        group.throughput(Throughput::Elements(records as u64));
        group.bench_function(
            BenchmarkId::from_parameter(format!("{records}x{value}B")),
            |b| {
                let mut next = 0i64;
                b.iter(|| {
                    validate_and_assign(black_box(&mut data), next);
                    next += records as i64;
                })
            },
        );
    }
    group.finish();
}

fn produce_request(partitions: i32, records: usize, value: usize) -> ProduceRequest {
    let b = batch(records, value);
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(
                (0..partitions)
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(b.clone()))
                    })
                    .collect(),
            )])
}

fn bench_produce_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("produce_request_decode");
    for version in [7i16, 9] {
        for (partitions, records, value) in [(1, 1000, 100), (8, 100, 1024)] {
            let mut buf = BytesMut::new();
            produce_request(partitions, records, value)
                .encode(&mut buf, version)
                .expect("encodable");
            let encoded = buf.freeze();
            group.throughput(Throughput::Elements((partitions as usize * records) as u64));
            group.bench_function(
                BenchmarkId::new(
                    format!("v{version}"),
                    format!("{partitions}p_{records}x{value}B"),
                ),
                |b| {
                    b.iter(|| {
                        let mut frame = encoded.clone();
                        ProduceRequest::decode(black_box(&mut frame), version).expect("decodable")
                    })
                },
            );
        }
    }
    group.finish();
}

/// Fetch responses: the broker's piecewise encoder (record bytes are
/// referenced, not copied) next to kafka-protocol's (copies every byte).
fn bench_fetch_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch_response_encode");
    let version = 12i16;
    for (partitions, batches) in [(1usize, 16usize), (16, 4)] {
        let b = batch(100, 1024);
        let mut records = BytesMut::new();
        for _ in 0..batches {
            records.extend_from_slice(&b);
        }
        let records = records.freeze();
        let shape = format!("{partitions}p_{}KiB", records.len() >> 10);
        group.throughput(Throughput::Bytes((records.len() * partitions) as u64));

        let stored: Vec<Bytes> = (0..batches).map(|_| b.clone()).collect();
        group.bench_function(
            BenchmarkId::new(format!("ringlog_v{version}"), &shape),
            |bench| {
                bench.iter(|| {
                    let topics = [TopicAnswer {
                        name: "bench",
                        id: uuid::Uuid::nil(),
                        partitions: (0..partitions as i32)
                            .map(|p| PartitionAnswer {
                                index: p,
                                error_code: 0,
                                high_watermark: 1 << 20,
                                last_stable_offset: 1 << 20,
                                log_start_offset: 0,
                                aborted: None,
                                records: stored.clone(),
                                current_leader: None,
                            })
                            .collect(),
                    }];
                    black_box(fetch_encode::encode(
                        7,
                        version,
                        0,
                        0,
                        black_box(&topics),
                        &[],
                    ))
                })
            },
        );

        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("bench")))
                .with_partitions(
                    (0..partitions as i32)
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p)
                                .with_high_watermark(1 << 20)
                                .with_records(Some(records.clone()))
                        })
                        .collect(),
                )]);
        let mut out = BytesMut::with_capacity(records.len() * partitions + 4096);
        group.bench_function(
            BenchmarkId::new(format!("kafka_protocol_v{version}"), &shape),
            |bench| {
                bench.iter(|| {
                    out.clear();
                    black_box(&response)
                        .encode(&mut out, version)
                        .expect("encodable");
                    black_box(out.len())
                })
            },
        );
    }
    group.finish();
}

/// Sparse index: building it while appending, and the lookups a fetch does.
fn bench_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment_index");
    // A 1 GiB segment of 64 KiB batches indexed every 4 KiB: 16384 entries.
    const BATCHES: u64 = 16384;
    const BATCH_BYTES: u64 = 64 << 10;
    const RECORDS_PER_BATCH: i64 = 63;
    let build = || {
        let mut index = SegmentIndex::default();
        for i in 0..BATCHES {
            index.on_batch(
                storage::Offset(i as i64 * RECORDS_PER_BATCH),
                1_700_000_000_000 + i as i64,
                storage::FilePosition(i * BATCH_BYTES),
                BATCH_BYTES,
                4096,
            );
        }
        index
    };
    group.throughput(Throughput::Elements(BATCHES));
    group.bench_function("on_batch_16384", |b| b.iter(|| black_box(build())));
    let index = build();
    let last_offset = BATCHES as i64 * RECORDS_PER_BATCH;
    group.throughput(Throughput::Elements(1));
    let mut probe = 0i64;
    group.bench_function("position_for_offset", |b| {
        b.iter(|| {
            probe = (probe + 7919) % last_offset;
            black_box(index.position_for_offset(black_box(storage::Offset(probe))))
        })
    });
    let mut ts = 0i64;
    group.bench_function("position_for_timestamp", |b| {
        b.iter(|| {
            ts = (ts + 7919) % BATCHES as i64;
            black_box(index.position_for_timestamp(black_box(1_700_000_000_000 + ts)))
        })
    });
    group.finish();
}

/// What a topic `compression.type` costs per produced batch: a batch that
/// already has the topic codec is only scanned (kept without a copy); one of
/// another codec is decompressed, checked and recompressed. With the default
/// `producer` none of this runs.
fn bench_recompress(c: &mut Criterion) {
    use ringlog::storage::recompress;
    use ringlog::storage::records::Codec;
    let mut group = c.benchmark_group("recompress_100x1024B");
    group.throughput(Throughput::Elements(100));
    let lz4 = encoded_batch(100, 1024, Compression::Lz4);
    let gzip = encoded_batch(100, 1024, Compression::Gzip);
    let cases = [
        ("lz4_batch_to_lz4_topic_kept", &lz4, Codec::Lz4),
        ("gzip_batch_to_lz4_topic", &gzip, Codec::Lz4),
        ("gzip_batch_to_uncompressed_topic", &gzip, Codec::None),
    ];
    for (name, input, target) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                recompress::to_codec(black_box(input.clone()), target, MESSAGE_BYTES_MAX)
                    .expect("bench batch recompresses")
            })
        });
    }
    group.finish();
}

/// ListOffsets by timestamp inside the one batch the index points to: a walk
/// over all records of a 1000-record batch (no record reaches the timestamp),
/// plain and lz4.
fn bench_timestamp_lookup(c: &mut Criterion) {
    use ringlog::storage::records;
    let mut group = c.benchmark_group("timestamp_lookup_in_batch_1000x100B");
    group.throughput(Throughput::Elements(1000));
    for (name, compression) in [("none", Compression::None), ("lz4", Compression::Lz4)] {
        let batch = encoded_batch(1000, 100, compression);
        let header = storage::BatchHeader::parse(&batch).expect("bench batch header");
        group.bench_function(name, |b| {
            b.iter(|| {
                records::first_at_or_after(&header, black_box(&batch), header.max_timestamp + 1, 0)
                    .expect("bench batch walks")
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_producer_check,
    bench_recompress,
    bench_timestamp_lookup,
    bench_crc,
    bench_validate,
    bench_produce_decode,
    bench_fetch_encode,
    bench_index
);
criterion_main!(benches);
