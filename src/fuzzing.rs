//! Entry points to every decoder the broker runs on bytes it did not write
//! itself (the network) or may find damaged (the disk), for the fuzz targets
//! in `fuzz/` and the bounded proptests in `tests/decoders_fuzz.rs`.
//!
//! Each function takes arbitrary bytes and runs the broker's own decode path
//! on them. It returns `Ok` or `Err`; a panic, or an allocation larger than
//! the input justifies, is a bug in the decoder. The functions assert the
//! invariants their callers rely on, so a decoder that accepts something it
//! should not is a finding too.

use std::ops::RangeInclusive;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::group::record;
use crate::kafka::{self, request_shape, Outcome, Request, SUPPORTED_APIS};
use crate::net::frame;
use crate::shard::{topics, PartitionId};
use crate::storage::batch::{self, BatchHeader, BatchIter};
use crate::storage::index::SegmentIndex;
use crate::storage::meta::PartitionMeta;
use crate::storage::Offset;
use crate::topic_config::TopicConfig;

/// What a decoder said about an input; the message is only for reading.
pub type Verdict = Result<(), String>;

/// The frame check: the first two bytes choose the size limit, the rest is
/// what the socket delivered. Frames are split off until one is incomplete
/// or refused.
pub fn frame(data: &[u8]) -> Verdict {
    let Some((limit, stream)) = data.split_first_chunk::<2>() else {
        return Err("no limit".into());
    };
    let limit = usize::from(u16::from_be_bytes(*limit));
    let mut buffer = BytesMut::from(stream);
    loop {
        let before = buffer.len();
        match frame::take_frame(&mut buffer, limit) {
            Ok(Ok(frame)) => {
                assert!(frame.len() <= limit, "a frame beyond the limit was taken");
                assert_eq!(
                    buffer.len() + frame::LENGTH_PREFIX_BYTES + frame.len(),
                    before
                );
            }
            Ok(Err(needed)) => {
                assert!(needed > 0, "an incomplete frame needs at least one byte");
                assert!(
                    needed <= frame::LENGTH_PREFIX_BYTES + limit,
                    "never ask for more than one frame"
                );
                return Ok(());
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// Every (API, version) the broker advertises, in a fixed order.
pub fn advertised_versions() -> impl Iterator<Item = (ApiKey, i16)> {
    SUPPORTED_APIS
        .iter()
        .flat_map(|(key, versions): &(ApiKey, RangeInclusive<i16>)| {
            versions.clone().map(move |version| (*key, version))
        })
}

/// A request: the first byte chooses one of the advertised (API, version)
/// pairs, the rest is the frame after its API key and version (correlation
/// id, client id, tagged fields, body).
pub fn request(data: &[u8]) -> Verdict {
    let Some((&choice, rest)) = data.split_first() else {
        return Err("no API chosen".into());
    };
    let pairs = advertised_versions().count();
    let (key, version) = advertised_versions()
        .nth(usize::from(choice) % pairs)
        .expect("the index is below the number of pairs");
    let mut frame = BytesMut::with_capacity(4 + rest.len());
    frame.put_i16(key as i16);
    frame.put_i16(version);
    frame.put_slice(rest);
    request_frame(frame.freeze())
}

/// A whole request frame (without its length prefix) through the broker's
/// decode path: header, then the body as its handler decodes it.
pub fn request_frame(frame: Bytes) -> Verdict {
    let (key, header, body) = kafka::split_request(frame).map_err(describe)?;
    let request = Request {
        header,
        body,
        client_host: Rc::from("/fuzz"),
    };
    decode_body(key, &request).map_err(describe)
}

fn describe(outcome: Outcome) -> String {
    match outcome {
        Outcome::Close(reason) => reason,
        Outcome::Respond(_) => "answered without decoding".into(),
        Outcome::NoResponse => "no response".into(),
    }
}

/// Calls `$callback!` with every served API and the type its handler decodes
/// (ApiVersions reads no body: it is informational only).
macro_rules! with_request_types {
    ($callback:ident) => {
        $callback! {
            Produce => ProduceRequest,
            Fetch => FetchRequest,
            ListOffsets => ListOffsetsRequest,
            Metadata => MetadataRequest,
            OffsetCommit => OffsetCommitRequest,
            OffsetFetch => OffsetFetchRequest,
            FindCoordinator => FindCoordinatorRequest,
            JoinGroup => JoinGroupRequest,
            Heartbeat => HeartbeatRequest,
            LeaveGroup => LeaveGroupRequest,
            SyncGroup => SyncGroupRequest,
            DescribeGroups => DescribeGroupsRequest,
            ListGroups => ListGroupsRequest,
            CreateTopics => CreateTopicsRequest,
            DeleteTopics => DeleteTopicsRequest,
            DeleteRecords => DeleteRecordsRequest,
            DescribeConfigs => DescribeConfigsRequest,
            AlterConfigs => AlterConfigsRequest,
            CreatePartitions => CreatePartitionsRequest,
            DeleteGroups => DeleteGroupsRequest,
            IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
            OffsetDelete => OffsetDeleteRequest,
            DescribeCluster => DescribeClusterRequest,
        }
    };
}

macro_rules! decode_as_handler {
    ($($api:ident => $ty:ty,)*) => {
        /// Decodes the body as the API's handler does (`decode_or_close!`
        /// with the same type).
        pub fn decode_body(key: ApiKey, request: &Request) -> Result<(), Outcome> {
            match key {
                $(ApiKey::$api => {
                    let decoded = request.decode::<$ty>().map(drop);
                    if decoded.is_ok() {
                        assert_walk_matches_decoder::<$ty>(key, request);
                    }
                    decoded
                })*
                ApiKey::ApiVersions => Ok(()),
                other => Err(Outcome::Close(format!("{other:?} is not served"))),
            }
        }
    };
}
with_request_types!(decode_as_handler);

/// The length walk and kafka-protocol's decoder must read the same fields:
/// where both accept a body, they stop at the same byte.
fn assert_walk_matches_decoder<T: Decodable>(key: ApiKey, request: &Request) {
    let version = request.version();
    let walked = request_shape::check_body(key, version, &request.body)
        .expect("the walk accepted this body before it was decoded");
    let mut body = request.body.clone();
    T::decode(&mut body, version).expect("the body decoded once already");
    assert_eq!(
        walked,
        body.len(),
        "{key:?} v{version}: walk and decoder disagree"
    );
}

/// A produce payload: the RecordBatch v2 header view, its checks, and the
/// walk over back-to-back batches that recovery and fetch use.
pub fn batch(data: &[u8]) -> Verdict {
    let mut verdict = Ok(());
    match BatchHeader::parse(data) {
        Ok(header) => {
            if header.validate(data, batch::BATCH_BYTES_LIMIT).is_ok() {
                assert!(header.total_bytes() <= data.len(), "a valid batch fits");
                assert!(header.validate_framing(data.len(), data.len()).is_ok());
            }
        }
        Err(error) => verdict = Err(error.to_string()),
    }
    let mut end = 0;
    for item in BatchIter::new(data) {
        match item {
            Ok((header, range)) => {
                assert_eq!(range.start, end, "batches are back to back");
                assert_eq!(range.len(), header.total_bytes());
                end = range.end;
            }
            Err(_) => break,
        }
    }
    assert!(end <= data.len(), "the walk stays inside the buffer");
    if let Ok(count) = batch::validate_all(data, batch::BATCH_BYTES_LIMIT) {
        assert!(
            count > 0 && end == data.len(),
            "validated batches walk to the end"
        );
    }
    verdict
}

/// The broker's own files: the first byte chooses the decoder, the rest is
/// the file's bytes.
pub fn stored(data: &[u8]) -> Verdict {
    let Some((&choice, bytes)) = data.split_first() else {
        return Err("no decoder chosen".into());
    };
    match choice % 6 {
        0 => segment_index(bytes),
        1 => PartitionMeta::decode(bytes)
            .map(drop)
            .ok_or_else(|| "corrupt partition.meta".into()),
        2 => topic_registry(bytes),
        3 => record::Key::decode(bytes)
            .map(drop)
            .map_err(|e| e.to_string()),
        4 => record::OffsetValue::decode(bytes)
            .map(drop)
            .map_err(|e| e.to_string()),
        _ => record::GroupValue::decode(bytes)
            .map(drop)
            .map_err(|e| e.to_string()),
    }
}

/// `.index` and `.timeindex`: a 4-byte split point, then both files back to back.
fn segment_index(bytes: &[u8]) -> Verdict {
    let Some((split, files)) = bytes.split_first_chunk::<4>() else {
        return Err("no split point".into());
    };
    let split = (u32::from_le_bytes(*split) as usize).min(files.len());
    let (offsets, times) = files.split_at(split);
    for segment_bytes in [0, 1 << 20] {
        if let Some((index, next_offset)) =
            SegmentIndex::decode(offsets, times, Offset(0), segment_bytes)
        {
            assert!(next_offset >= Offset(0));
            assert!(index
                .offsets
                .iter()
                .all(|e| e.position.get() < segment_bytes));
        }
    }
    Ok(())
}

/// `topics.meta`: the first byte chooses the shard count.
fn topic_registry(bytes: &[u8]) -> Verdict {
    let Some((&shards, file)) = bytes.split_first() else {
        return Err("no shard count".into());
    };
    let shard_count = usize::from(shards % 8) + 1;
    let table = topics::decode_registry(file, shard_count, &TopicConfig::defaults())?;
    for topic in table.iter() {
        for partition in 0..topic.partition_count() {
            let owner = topic
                .shard_of(PartitionId(partition))
                .expect("every partition has an owner");
            assert!(owner.index() < shard_count);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Encodable, HeaderVersion};

    /// A frame holding `T::default()` at `version` with a v1/v2 header.
    fn default_request_frame<T: Default + Encodable + HeaderVersion>(
        key: ApiKey,
        version: i16,
    ) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, key.request_header_version(version))
            .expect("a default header encodes");
        T::default()
            .encode(&mut frame, version)
            .expect("a default request encodes");
        frame.freeze()
    }

    macro_rules! default_frame {
        ($($api:ident => $ty:ty,)*) => {
            fn default_frame(key: ApiKey, version: i16) -> Bytes {
                match key {
                    $(ApiKey::$api => default_request_frame::<$ty>(key, version),)*
                    ApiKey::ApiVersions => default_request_frame::<ApiVersionsRequest>(key, version),
                    other => panic!("{other:?} is advertised but not listed"),
                }
            }
        };
    }
    with_request_types!(default_frame);

    #[test]
    fn every_advertised_api_and_version_decodes_its_default_request() {
        for (key, version) in advertised_versions() {
            assert_eq!(
                request_frame(default_frame(key, version)),
                Ok(()),
                "{key:?} v{version}"
            );
        }
    }
}
