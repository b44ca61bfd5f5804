//! Micro-benchmarks of the broker's hot paths: batch checksums and offset
//! assignment, Produce request decoding, Fetch response encoding.
//!
//! Run: `cargo bench --bench hot_paths` (add a filter such as `crc32c` to run one group).

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// (records per batch, value bytes): the shapes the load generator uses.
const SHAPES: [(usize, usize); 3] = [(1000, 100), (100, 1024), (16, 1024)];
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORD_COUNT_AT: usize = 57;
const HEADER_BYTES: usize = 61;

fn batch(records: usize, value_bytes: usize) -> Bytes {
    let value = Bytes::from((0..value_bytes).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // offset - sequence constant keeps the encoder to one batch.
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encoding a plain batch cannot fail");
    buf.freeze()
}

/// What the produce path does per batch: check header fields and CRC-32C,
/// then write the base offset (outside the CRC) in place.
fn validate_and_assign(batch: &mut [u8], base_offset: i64) -> Result<i32, &'static str> {
    if batch.len() < HEADER_BYTES || batch[16] != 2 {
        return Err("not a v2 batch");
    }
    let length = i32::from_be_bytes(batch[8..12].try_into().map_err(|_| "short")?) as usize;
    if length + 12 != batch.len() {
        return Err("length mismatch");
    }
    let crc = u32::from_be_bytes(batch[CRC_AT..CRC_AT + 4].try_into().map_err(|_| "short")?);
    if crc != crc32c::crc32c(&batch[ATTRIBUTES_AT..]) {
        return Err("crc mismatch");
    }
    let count = i32::from_be_bytes(batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].try_into().map_err(|_| "short")?);
    let last_delta = i32::from_be_bytes(batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].try_into().map_err(|_| "short")?);
    if count != last_delta + 1 {
        return Err("count mismatch");
    }
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(count)
}

fn bench_crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for bytes in [1024usize, 16 << 10, 1 << 20] {
        let data: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(bytes), &data, |b, d| b.iter(|| crc32c::crc32c(black_box(d))));
    }
    group.finish();
}

fn bench_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_and_assign_offsets");
    for (records, value) in SHAPES {
        let mut data = batch(records, value).to_vec();
        group.throughput(Throughput::Elements(records as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{records}x{value}B")), |b| {
            let mut next = 0i64;
            b.iter(|| {
                let n = validate_and_assign(black_box(&mut data), next).expect("bench batch is valid");
                next += i64::from(n);
            })
        });
    }
    group.finish();
}

fn produce_request(partitions: i32, records: usize, value: usize) -> ProduceRequest {
    let b = batch(records, value);
    ProduceRequest::default().with_acks(1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench")))
        .with_partition_data((0..partitions).map(|p| PartitionProduceData::default().with_index(p).with_records(Some(b.clone()))).collect())])
}

fn bench_produce_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("produce_request_decode");
    for version in [7i16, 9] {
        for (partitions, records, value) in [(1, 1000, 100), (8, 100, 1024)] {
            let mut buf = BytesMut::new();
            produce_request(partitions, records, value).encode(&mut buf, version).expect("encodable");
            let encoded = buf.freeze();
            group.throughput(Throughput::Elements((partitions as usize * records) as u64));
            group.bench_function(BenchmarkId::new(format!("v{version}"), format!("{partitions}p_{records}x{value}B")), |b| {
                b.iter(|| {
                    let mut frame = encoded.clone();
                    ProduceRequest::decode(black_box(&mut frame), version).expect("decodable")
                })
            });
        }
    }
    group.finish();
}

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
        let response = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("bench")))
            .with_partitions(
                (0..partitions as i32)
                    .map(|p| PartitionData::default().with_partition_index(p).with_high_watermark(1 << 20).with_records(Some(records.clone())))
                    .collect(),
            )]);
        group.throughput(Throughput::Bytes((records.len() * partitions) as u64));
        let mut out = BytesMut::with_capacity(records.len() * partitions + 4096);
        group.bench_function(BenchmarkId::new(format!("v{version}"), format!("{partitions}p_{}KiB", records.len() >> 10)), |b| {
            b.iter(|| {
                out.clear();
                black_box(&response).encode(&mut out, version).expect("encodable");
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_crc, bench_validate, bench_produce_decode, bench_fetch_encode);
criterion_main!(benches);
