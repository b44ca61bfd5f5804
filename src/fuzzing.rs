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
use crate::kafka::api::{ApiVisitor, KafkaApi};
use crate::kafka::request_shape::{self, ShapeError};
use crate::kafka::{self, Outcome, Request, SUPPORTED_APIS};
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
/// what the socket delivered. Frames are reassembled until the input ends in
/// an incomplete frame or a length is refused.
pub fn frame(data: &[u8]) -> Verdict {
    let Some((limit, mut stream)) = data.split_first_chunk::<2>() else {
        return Err("no limit".into());
    };
    let limit = usize::from(u16::from_be_bytes(*limit));
    let mut reader = frame::FrameReader::new(limit);
    while !stream.is_empty() {
        let into = reader.unfilled();
        assert!(!into.is_empty(), "the reader always asks for a byte");
        let n = into.len().min(stream.len());
        into[..n].copy_from_slice(&stream[..n]);
        stream = &stream[n..];
        match reader.filled(n) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= limit, "a frame beyond the limit was taken");
            }
            Ok(None) => {}
            Err(error) => return Err(error.to_string()),
        }
        assert!(
            reader.buffered_capacity() <= limit,
            "never buffer more than one frame"
        );
        assert!(
            reader.wanted() <= frame::LENGTH_PREFIX_BYTES + limit,
            "never ask for more than one frame"
        );
    }
    Ok(())
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
        session: Rc::new(kafka::session::Session::new(
            0,
            Rc::from("/fuzz"),
            Some(crate::security::Principal::anonymous()),
        )),
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

/// Decodes a body as the API's registered handler does.
struct DecodeAsHandler<'a> {
    key: ApiKey,
    request: &'a Request,
}

impl ApiVisitor for DecodeAsHandler<'_> {
    type Output = Result<(), Outcome>;

    fn visit<A: KafkaApi>(self) -> Result<(), Outcome> {
        let decoded = self.request.decode::<A::Body>().map(drop);
        // ApiVersions' body is not decoded, so there is no walk to compare.
        if A::KEY != ApiKey::ApiVersions {
            assert_walk_matches_decoder::<A::Body>(self.key, self.request, decoded.is_ok());
        }
        decoded
    }
}

/// Decodes the body as the API's handler does.
pub fn decode_body(key: ApiKey, request: &Request) -> Result<(), Outcome> {
    kafka::visit_api(key, DecodeAsHandler { key, request })
        .unwrap_or_else(|| Err(Outcome::Close(format!("{key:?} is not served"))))
}

/// The length walk and kafka-protocol's decoder must read the same fields:
/// where both accept a body they stop at the same byte, and a body the walk
/// finds malformed (other than by a length beyond the frame, which the
/// decoder would reserve memory for) the decoder refuses too.
fn assert_walk_matches_decoder<T: Decodable>(key: ApiKey, request: &Request, decoded: bool) {
    let version = request.version();
    let mut body = request.body.clone();
    match request_shape::check_body(key, version, &request.body) {
        Ok(walked) if decoded => {
            T::decode(&mut body, version).expect("the body decoded once already");
            assert_eq!(
                walked,
                body.len(),
                "{key:?} v{version}: walk and decoder disagree"
            );
        }
        Ok(_) | Err(ShapeError::LengthBeyondFrame { .. }) => {}
        Err(error) => assert!(
            T::decode(&mut body, version).is_err(),
            "{key:?} v{version}: the walk refused ({error}) a body the decoder accepts"
        ),
    }
}

/// A produce payload: the first byte says whether to give the first batch a
/// correct CRC (so the checks behind it are reached), the rest is the payload
/// through the RecordBatch v2 header view, its checks, and the walk over
/// back-to-back batches that recovery and fetch use.
pub fn batch(data: &[u8]) -> Verdict {
    let Some((&mode, payload)) = data.split_first() else {
        return Err("no mode".into());
    };
    if mode & 1 == 0 {
        return batch_payload(payload);
    }
    let mut payload = payload.to_vec();
    if let Ok(header) = BatchHeader::parse(&payload) {
        let end = header.total_bytes().min(payload.len());
        if end > batch::ATTRIBUTES_OFFSET {
            let crc = crc32c::crc32c(&payload[batch::ATTRIBUTES_OFFSET..end]);
            payload[batch::CRC_OFFSET..][..4].copy_from_slice(&crc.to_be_bytes());
        }
    }
    batch_payload(&payload)
}

fn batch_payload(data: &[u8]) -> Verdict {
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
    use kafka_protocol::protocol::Encodable;

    /// A frame holding `T::default()` at `version` with a v1/v2 header.
    fn default_request_frame<T: Default + Encodable>(key: ApiKey, version: i16) -> Bytes {
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

    /// The frame of a default request of each registered API.
    struct DefaultFrame {
        key: ApiKey,
        version: i16,
    }

    impl ApiVisitor for DefaultFrame {
        type Output = Bytes;

        fn visit<A: KafkaApi>(self) -> Bytes {
            default_request_frame::<A::Body>(self.key, self.version)
        }
    }

    fn default_frame(key: ApiKey, version: i16) -> Bytes {
        kafka::visit_api(key, DefaultFrame { key, version })
            .unwrap_or_else(|| panic!("{key:?} is advertised but not registered"))
    }

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
