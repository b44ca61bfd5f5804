//! The fuzz targets of `fuzz/` as bounded proptests: arbitrary bytes, and
//! near-valid inputs (a valid header before a garbage body, a valid batch or
//! file with one byte flipped), through the same `ringlog::fuzzing` entry
//! points. Each must end in `Ok` or `Err`, never panic, and never ask the
//! allocator for more than its input justifies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DescribeConfigsRequest, FetchRequest, JoinGroupRequest,
    MetadataRequest, OffsetCommitRequest, ProduceRequest, RequestHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use ringlog::fuzzing;
use ringlog::storage::batch;
use ringlog::storage::index::SegmentIndex;
use ringlog::storage::meta::PartitionMeta;
use ringlog::storage::{FilePosition, Offset};

/// Cases per property: enough to reach every decoder's branches in a few
/// seconds of a debug build on two cores.
const CASES: u32 = 512;
/// A decoded request may hold a few hundred bytes of structs per wire byte
/// (each array element takes at least one byte); anything above this is a
/// length taken on trust.
const ALLOCATION_BYTES_PER_INPUT_BYTE_MAX: usize = 1024;
const ALLOCATION_BYTES_SLACK: usize = 1 << 20;

/// The system allocator, remembering the largest request made on each thread.
struct LargestAllocation;

thread_local! {
    static LARGEST_BYTES: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.with(|largest| largest.set(largest.get().max(layout.size())));
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.with(|largest| largest.set(largest.get().max(layout.size())));
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_BYTES.with(|largest| largest.set(largest.get().max(new_size)));
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs one decoder on `input` and checks the largest allocation it made.
fn decode_bounded(decoder: fn(&[u8]) -> fuzzing::Verdict, input: &[u8]) -> fuzzing::Verdict {
    LARGEST_BYTES.with(|largest| largest.set(0));
    let verdict = decoder(input);
    let largest = LARGEST_BYTES.with(Cell::get);
    let bound = ALLOCATION_BYTES_PER_INPUT_BYTE_MAX * input.len() + ALLOCATION_BYTES_SLACK;
    assert!(
        largest <= bound,
        "an input of {} bytes made an allocation of {largest} bytes",
        input.len()
    );
    verdict
}

fn request_frame_input(frame: &[u8]) -> fuzzing::Verdict {
    fuzzing::request_frame(Bytes::copy_from_slice(frame))
}

/// The advertised (API, version) pairs, as an index into `advertised_versions`.
fn advertised() -> impl Strategy<Value = (ApiKey, i16)> {
    let pairs: Vec<_> = fuzzing::advertised_versions().collect();
    proptest::sample::select(pairs)
}

/// A request header as a client writes it for `key` at `version`.
fn header_bytes(key: ApiKey, version: i16, client_id: &str) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(client_id.to_string().into()));
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, key.request_header_version(version))
        .expect("a header encodes");
    frame
}

/// One v2 batch of `record_count` empty records, with a correct CRC.
fn valid_batch(records: &[u8], record_count: i32) -> Vec<u8> {
    let mut batch = vec![0u8; batch::HEADER_BYTES];
    batch.extend_from_slice(records);
    let length = (batch.len() - batch::LOG_OVERHEAD_BYTES) as i32;
    batch[batch::BATCH_LENGTH_OFFSET..][..4].copy_from_slice(&length.to_be_bytes());
    batch[batch::MAGIC_OFFSET] = batch::MAGIC_V2 as u8;
    batch[batch::LAST_OFFSET_DELTA_OFFSET..][..4]
        .copy_from_slice(&(record_count - 1).to_be_bytes());
    batch[batch::RECORD_COUNT_OFFSET..][..4].copy_from_slice(&record_count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[batch::ATTRIBUTES_OFFSET..]);
    batch[batch::CRC_OFFSET..][..4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// `request` after a client's header, or `None` at a version that cannot
/// carry one of its fields.
fn encoded<T: Encodable>(key: ApiKey, version: i16, request: &T) -> Option<Vec<u8>> {
    let mut frame = header_bytes(key, version, "populated");
    request.encode(&mut frame, version).ok()?;
    Some(frame.to_vec())
}

fn name(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

/// Requests with two elements in every array they carry, at every
/// advertised version of their API that can encode them.
fn populated_requests() -> Vec<(ApiKey, i16, Vec<u8>)> {
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![
            TopicProduceData::default().with_partition_data(vec![
                PartitionProduceData::default().with_records(Some(Bytes::from_static(b"batch"))),
                PartitionProduceData::default().with_index(1),
            ]);
            2
        ]);
    let fetch = FetchRequest::default().with_topics(vec![
        FetchTopic::default().with_partitions(
            vec![FetchPartition::default().with_fetch_offset(7); 2]
        );
        2
    ]);
    let metadata =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default(); 2]));
    let create_topics = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_assignments(vec![
                CreatableReplicaAssignment::default()
                    .with_broker_ids(vec![0.into(), 1.into()]);
                2
            ])
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(name("retention.ms"))
                    .with_value(Some(name("1000")));
                2
            ]);
        2
    ]);
    let offset_commit = OffsetCommitRequest::default().with_topics(vec![
        OffsetCommitRequestTopic::default().with_partitions(vec![
            OffsetCommitRequestPartition::default()
                .with_committed_offset(3)
                .with_committed_metadata(Some(name("m")));
            2
        ]);
        2
    ]);
    let join_group = JoinGroupRequest::default().with_protocols(vec![
        JoinGroupRequestProtocol::default()
            .with_name(name("range"))
            .with_metadata(Bytes::from_static(b"meta"));
        2
    ]);
    let sync_group = SyncGroupRequest::default().with_assignments(vec![
        SyncGroupRequestAssignment::default()
            .with_assignment(Bytes::from_static(b"assignment"));
        2
    ]);
    let describe_configs = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_configuration_keys(Some(vec![name("retention.ms"); 2]));
        2
    ]);
    let mut requests = Vec::new();
    for (key, version) in fuzzing::advertised_versions() {
        let frame = match key {
            ApiKey::Produce => encoded(key, version, &produce),
            ApiKey::Fetch => encoded(key, version, &fetch),
            ApiKey::Metadata => encoded(key, version, &metadata),
            ApiKey::CreateTopics => encoded(key, version, &create_topics),
            ApiKey::OffsetCommit => encoded(key, version, &offset_commit),
            ApiKey::JoinGroup => encoded(key, version, &join_group),
            ApiKey::SyncGroup => encoded(key, version, &sync_group),
            ApiKey::DescribeConfigs => encoded(key, version, &describe_configs),
            _ => None,
        };
        if let Some(frame) = frame {
            requests.push((key, version, frame));
        }
    }
    requests
}

#[test]
fn populated_requests_decode_at_every_version_that_carries_them() {
    let requests = populated_requests();
    for key in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::CreateTopics,
        ApiKey::JoinGroup,
    ] {
        let versions = fuzzing::advertised_versions()
            .filter(|(k, _)| *k == key)
            .count();
        let encoded = requests.iter().filter(|(k, _, _)| *k == key).count();
        assert_eq!(
            encoded, versions,
            "{key:?}: every advertised version encodes"
        );
    }
    for (key, version, frame) in &requests {
        assert_eq!(
            decode_bounded(request_frame_input, frame),
            Ok(()),
            "{key:?} v{version}"
        );
    }
}

fn flip(bytes: &mut [u8], at: usize, mask: u8) {
    if !bytes.is_empty() {
        let at = at % bytes.len();
        bytes[at] ^= mask.max(1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn frame_check_takes_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_bounded(fuzzing::frame, &input);
    }

    #[test]
    fn request_decoders_take_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_bounded(fuzzing::request, &input);
    }

    #[test]
    fn request_frames_of_any_api_and_version_are_split_or_refused(
        key in -2i16..80,
        version in -1i16..20,
        rest in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut frame = BytesMut::new();
        frame.put_i16(key);
        frame.put_i16(version);
        frame.put_slice(&rest);
        let _ = decode_bounded(request_frame_input, &frame);
    }

    #[test]
    fn request_decoders_take_a_valid_header_before_a_garbage_body(
        (key, version) in advertised(),
        client_id in "[a-z0-9-]{0,16}",
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut frame = header_bytes(key, version, &client_id);
        frame.put_slice(&body);
        let _ = decode_bounded(request_frame_input, &frame);
    }

    #[test]
    fn request_decoders_take_huge_lengths_anywhere_in_the_body(
        (key, version) in advertised(),
        body in proptest::collection::vec(any::<u8>(), 0..128),
        at in any::<usize>(),
        length in prop_oneof![Just(i32::MAX), Just(0x7fff_fff0), 1i32 << 20..i32::MAX],
        varint in any::<bool>(),
    ) {
        // A signed or varint length claiming far more than the frame holds,
        // spliced where an array, string or bytes length may be read.
        let mut body = body;
        let at = at % (body.len() + 1);
        let claim = if varint {
            vec![0xff, 0xff, 0xff, 0xff, 0x0f]
        } else {
            length.to_be_bytes().to_vec()
        };
        body.splice(at..at, claim);
        let mut frame = header_bytes(key, version, "c");
        frame.put_slice(&body);
        let _ = decode_bounded(request_frame_input, &frame);
    }

    #[test]
    fn populated_requests_take_one_byte_flipped_or_a_cut(
        choice in any::<proptest::sample::Index>(),
        at in any::<usize>(),
        mask in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let requests = populated_requests();
        let (_, _, valid) = choice.get(&requests);
        let mut frame = valid.clone();
        if cut {
            frame.truncate(at % (frame.len() + 1));
        } else {
            flip(&mut frame, at, mask);
        }
        let _ = decode_bounded(request_frame_input, &frame);
    }

    #[test]
    fn batch_view_takes_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_bounded(fuzzing::batch, &input);
    }

    #[test]
    fn batch_view_takes_a_valid_batch_with_one_byte_flipped(
        records in proptest::collection::vec(any::<u8>(), 0..64),
        record_count in 1i32..8,
        at in any::<usize>(),
        mask in any::<u8>(),
    ) {
        let valid = valid_batch(&records, record_count);
        let as_given = |payload: &[u8]| [&[0u8][..], payload].concat();
        prop_assert_eq!(decode_bounded(fuzzing::batch, &as_given(&valid)), Ok(()));
        let mut flipped = valid.clone();
        flip(&mut flipped, at, mask);
        let _ = decode_bounded(fuzzing::batch, &as_given(&flipped));
        // With its CRC made right again, the flip reaches the checks behind it.
        let _ = decode_bounded(fuzzing::batch, &[&[1u8][..], &flipped].concat());
        // The CRC covers attributes..end: a flip there is always caught.
        let at = at % valid.len();
        if at >= batch::ATTRIBUTES_OFFSET {
            let header = batch::BatchHeader::parse(&flipped).expect("the header is there");
            prop_assert!(header.validate(&flipped, batch::BATCH_BYTES_LIMIT).is_err());
        }
    }

    #[test]
    fn stored_decoders_take_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_bounded(fuzzing::stored, &input);
    }

    #[test]
    fn stored_decoders_take_valid_files_with_one_byte_flipped(
        entries in 1usize..16,
        at in any::<usize>(),
        mask in any::<u8>(),
    ) {
        let mut index = SegmentIndex::default();
        for batch in 0..entries {
            index.on_batch(Offset(batch as i64 * 10), batch as i64, FilePosition(batch as u64 * 100), 100, 1);
        }
        let segment_bytes = entries as u64 * 100;
        let offsets = index.encode_offsets(Offset(0), segment_bytes, Offset(entries as i64 * 10)).expect("encodes");
        let times = index.encode_times(Offset(0), segment_bytes).expect("encodes");
        prop_assert!(SegmentIndex::decode(&offsets, &times, Offset(0), segment_bytes).is_some());
        let mut flipped = offsets.clone();
        flip(&mut flipped, at, mask);
        let mut input = vec![0u8];
        input.extend_from_slice(&(flipped.len() as u32).to_le_bytes());
        input.extend_from_slice(&flipped);
        input.extend_from_slice(&times);
        let _ = decode_bounded(fuzzing::stored, &input);

        let meta = PartitionMeta::new(Offset(5), Offset(9), 1, true);
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&meta).expect("encodes");
        prop_assert_eq!(PartitionMeta::decode(&bytes), Some(meta));
        let mut flipped = bytes.to_vec();
        flip(&mut flipped, at, mask);
        let mut input = vec![1u8];
        input.extend_from_slice(&flipped);
        let _ = decode_bounded(fuzzing::stored, &input);
        // The CRC covers every field: a flipped archive never reads back as valid but different.
        if let Some(read) = PartitionMeta::decode(&flipped) {
            prop_assert_eq!(read, meta);
        }
    }
}
