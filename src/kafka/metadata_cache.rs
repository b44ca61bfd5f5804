//! The encoded topic list of a Metadata answer for every topic, kept per
//! shard for its current topic table and the versions clients ask. With
//! 100,000 partitions, describing and encoding them is nearly all of the
//! answer's cost, and the table changes only with admin requests.
//!
//! The answer is sent in three pieces: the frame of an answer with no
//! topics, cut where its empty topic array is, with the cached array
//! between them (a vectored write, so nothing is copied).

use std::cell::RefCell;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::protocol::Encodable;

use super::Outcome;
use crate::shard::topics::TopicTable;

/// Versions kept at once (the clients of one fleet ask one or two).
const VERSIONS_CACHED_MAX: usize = 4;
/// The length prefix of a frame.
const LENGTH_PREFIX_BYTES: usize = 4;

struct Entry {
    /// Held, so that the table's address is not reused while cached.
    table: Arc<TopicTable>,
    version: i16,
    topics: Bytes,
}

thread_local! {
    static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of an empty topic array: a compact (varint) count from v9, an
/// i32 before.
fn empty_array_bytes(version: i16) -> usize {
    if version >= 9 {
        1
    } else {
        4
    }
}

/// Bytes after the topic array: cluster_authorized_operations (v8-v10)
/// and the tagged fields (v9+).
fn tail_bytes(version: i16) -> usize {
    let operations = if (8..=10).contains(&version) { 4 } else { 0 };
    let tagged = if version >= 9 { 1 } else { 0 };
    operations + tagged
}

/// The cached topic array of `table` at `version`, made by `describe` when
/// it is not cached yet.
pub fn topics_of(
    table: &Arc<TopicTable>,
    version: i16,
    describe: impl FnOnce() -> Vec<MetadataResponseTopic>,
) -> anyhow::Result<Bytes> {
    let cached = CACHE.with(|cache| {
        cache
            .borrow()
            .iter()
            .find(|e| e.version == version && Arc::ptr_eq(&e.table, table))
            .map(|e| e.topics.clone())
    });
    if let Some(topics) = cached {
        return Ok(topics);
    }
    let topics = encode_topics(describe(), version)?;
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        // Entries of an older table are of no more use.
        cache.retain(|e| Arc::ptr_eq(&e.table, table));
        if cache.len() >= VERSIONS_CACHED_MAX {
            cache.remove(0);
        }
        cache.push(Entry {
            table: table.clone(),
            version,
            topics: topics.clone(),
        });
    });
    Ok(topics)
}

/// The encoded topic array (count and entries) of `topics` at `version`.
fn encode_topics(topics: Vec<MetadataResponseTopic>, version: i16) -> anyhow::Result<Bytes> {
    let empty = MetadataResponse::default();
    let start = empty.compute_size(version)? - empty_array_bytes(version) - tail_bytes(version);
    let full = empty.with_topics(topics);
    let mut buffer = BytesMut::with_capacity(full.compute_size(version)?);
    full.encode(&mut buffer, version)?;
    let end = buffer.len() - tail_bytes(version);
    Ok(buffer.freeze().slice(start..end))
}

/// Puts `topics` in place of the empty topic array of `frame`, the one
/// piece of an encoded answer with no topics, at `version`.
pub fn splice(frame: Outcome, topics: Bytes, version: i16) -> Outcome {
    let Outcome::Respond(pieces) = frame else {
        return frame;
    };
    let [frame] = <[Bytes; 1]>::try_from(pieces).unwrap_or_else(|pieces| {
        // encode_response makes one piece; anything else is sent as made.
        [pieces.concat().into()]
    });
    let (empty, tail) = (empty_array_bytes(version), tail_bytes(version));
    if frame.len() < LENGTH_PREFIX_BYTES + empty + tail {
        return Outcome::Close("a Metadata answer is shorter than its fixed fields".into());
    }
    let body = frame.len() - LENGTH_PREFIX_BYTES - empty + topics.len();
    let Ok(body) = i32::try_from(body) else {
        return Outcome::Close("a Metadata answer is over 2 GiB".into());
    };
    let cut = frame.len() - tail - empty;
    let mut head = BytesMut::with_capacity(cut);
    head.put_i32(body);
    head.extend_from_slice(&frame[LENGTH_PREFIX_BYTES..cut]);
    Outcome::Respond(vec![
        head.freeze(),
        topics,
        frame.slice(frame.len() - tail..),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::{Decodable, StrBytes};

    fn topic(name: &str, partitions: i32) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(super::super::metadata::topic_name(name)))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_replica_nodes(vec![BrokerId(0)])
                    })
                    .collect(),
            )
    }

    #[test]
    fn a_spliced_answer_decodes_as_the_whole_one_at_every_version() {
        for version in 0..=12i16 {
            let topics = vec![topic("a", 3), topic("b", 1)];
            let whole = MetadataResponse::default()
                .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str("c")))
                .with_topics(topics.clone());
            let mut expected = BytesMut::new();
            whole.encode(&mut expected, version).expect("encodes");
            let array = encode_topics(topics, version).expect("encodes");
            let mut empty = BytesMut::new();
            let without = whole.clone().with_topics(Vec::new());
            empty.put_i32(without.compute_size(version).expect("sizes") as i32);
            without.encode(&mut empty, version).expect("encodes");
            let Outcome::Respond(pieces) =
                splice(Outcome::Respond(vec![empty.freeze()]), array, version)
            else {
                panic!("v{version}: not an answer");
            };
            let joined = pieces.concat();
            assert_eq!(
                joined[..4],
                ((joined.len() - 4) as i32).to_be_bytes(),
                "v{version}: the length prefix counts the topics"
            );
            assert_eq!(&joined[4..], &expected[..], "v{version}");
            let mut bytes = Bytes::from(joined).slice(4..);
            let decoded = MetadataResponse::decode(&mut bytes, version).expect("decodes");
            assert_eq!(decoded.topics.len(), 2, "v{version}");
        }
    }
}
