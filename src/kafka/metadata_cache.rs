//! The encoded topic list of a Metadata answer for every topic, kept per
//! shard for the versions clients ask. With 100,000 partitions, describing
//! and encoding them is nearly all of the answer's cost, and the table
//! changes only with admin requests.
//!
//! Each topic's encoding is kept across changes of the table: a new table
//! encodes only the topics that are new or changed (a changed topic is a new
//! `TopicInfo`), and the array is the kept encodings laid end to end. A
//! topic's partitions differ only in their index, so one partition is
//! encoded and the others are copies of it with their index written in.
//!
//! The answer is sent in three pieces: the frame of an answer with no
//! topics, cut where its empty topic array is, with the cached array
//! between them (a vectored write, so nothing is copied).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::protocol::Encodable;

use super::Outcome;
use crate::shard::topics::{TopicInfo, TopicTable};

/// Versions kept at once (the clients of one fleet ask one or two).
const VERSIONS_CACHED_MAX: usize = 4;
/// The length prefix of a frame.
const LENGTH_PREFIX_BYTES: usize = 4;
/// Where a partition's index is in its encoding: after its i16 error code,
/// at every version.
const PARTITION_INDEX_AT: std::ops::Range<usize> = 2..6;

/// How a topic of the table is described: the topic without partitions,
/// and each partition by its index.
pub struct Describe<'a> {
    pub topic: &'a dyn Fn(&TopicInfo) -> MetadataResponseTopic,
    pub partition: &'a dyn Fn(i32) -> MetadataResponsePartition,
}

struct Entry {
    version: i16,
    /// The table `topics` was made for (held, so that its address is not
    /// reused while cached).
    table: Arc<TopicTable>,
    topics: Bytes,
    /// Each topic's encoding (a slice of `topics`) by name, with the topic
    /// it was made from.
    by_name: HashMap<Arc<str>, (Arc<TopicInfo>, Bytes)>,
}

thread_local! {
    static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of an empty array: a compact (varint) count from v9, an i32 before.
fn empty_array_bytes(version: i16) -> usize {
    if version >= 9 {
        1
    } else {
        4
    }
}

/// Puts the count of an array of `len` entries.
fn put_array_len(buffer: &mut BytesMut, len: usize, version: i16) -> anyhow::Result<()> {
    if version >= 9 {
        let mut n = u32::try_from(len + 1)?;
        while n >= 0x80 {
            buffer.put_u8((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        buffer.put_u8(n as u8);
    } else {
        buffer.put_i32(i32::try_from(len)?);
    }
    Ok(())
}

/// Bytes after the topic array: cluster_authorized_operations (v8-v10)
/// and the tagged fields (v9+).
fn tail_bytes(version: i16) -> usize {
    let operations = if (8..=10).contains(&version) { 4 } else { 0 };
    let tagged = if version >= 9 { 1 } else { 0 };
    operations + tagged
}

/// Bytes of a topic after its partition array: topic_authorized_operations
/// (v8+) and the tagged fields (v9+).
fn topic_tail_bytes(version: i16) -> usize {
    let operations = if version >= 8 { 4 } else { 0 };
    let tagged = if version >= 9 { 1 } else { 0 };
    operations + tagged
}

/// The cached topic array of `table` at `version`; topics not encoded yet
/// are described by `describe`.
pub fn topics_of(
    table: &Arc<TopicTable>,
    version: i16,
    describe: Describe<'_>,
) -> anyhow::Result<Bytes> {
    let kept = CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let at = cache.iter().position(|e| e.version == version)?;
        if Arc::ptr_eq(&cache[at].table, table) {
            return Some(Ok(cache[at].topics.clone()));
        }
        Some(Err(cache.remove(at)))
    });
    let known = match kept {
        Some(Ok(topics)) => return Ok(topics),
        Some(Err(entry)) => entry.by_name,
        None => HashMap::new(),
    };
    let entry = encode_table(table, version, &describe, known)?;
    let topics = entry.topics.clone();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= VERSIONS_CACHED_MAX {
            cache.remove(0);
        }
        cache.push(entry);
    });
    Ok(topics)
}

/// The topic array of `table` at `version`, taking each unchanged topic's
/// encoding from `known`.
fn encode_table(
    table: &Arc<TopicTable>,
    version: i16,
    describe: &Describe<'_>,
    known: HashMap<Arc<str>, (Arc<TopicInfo>, Bytes)>,
) -> anyhow::Result<Entry> {
    let mut encoded = Vec::new();
    let mut template = None;
    for topic in table.iter() {
        let bytes = match known.get(&topic.name) {
            Some((was, bytes)) if Arc::ptr_eq(was, topic) => bytes.clone(),
            _ => {
                if template.is_none() {
                    template = Some(PartitionTemplate::new(describe.partition, version)?);
                }
                let template = template.as_ref().expect("made above");
                encode_topic(topic, version, describe, template)?
            }
        };
        encoded.push((topic.clone(), bytes));
    }
    drop(known);
    let total: usize = encoded.iter().map(|(_, bytes)| bytes.len()).sum();
    let mut buffer = BytesMut::with_capacity(LENGTH_PREFIX_BYTES + 1 + total);
    put_array_len(&mut buffer, encoded.len(), version)?;
    let mut ranges = Vec::with_capacity(encoded.len());
    for (_, bytes) in &encoded {
        let start = buffer.len();
        buffer.extend_from_slice(bytes);
        ranges.push(start..buffer.len());
    }
    let topics = buffer.freeze();
    let by_name = encoded
        .into_iter()
        .zip(ranges)
        .map(|((topic, _), range)| (topic.name.clone(), (topic, topics.slice(range))))
        .collect();
    Ok(Entry {
        version,
        table: table.clone(),
        topics,
        by_name,
    })
}

/// One partition encoded, to be copied for the others with their index
/// written in; `None` when the description does not encode that way.
struct PartitionTemplate {
    version: i16,
    bytes: Option<Vec<u8>>,
}

impl PartitionTemplate {
    fn new(
        partition: &dyn Fn(i32) -> MetadataResponsePartition,
        version: i16,
    ) -> anyhow::Result<PartitionTemplate> {
        let encode = |index: i32| -> anyhow::Result<Vec<u8>> {
            let mut buffer = BytesMut::new();
            partition(index).encode(&mut buffer, version)?;
            Ok(buffer.to_vec())
        };
        let (zero, other) = (encode(0)?, encode(i32::MAX)?);
        let mut expected = zero.clone();
        let fits = zero.len() >= PARTITION_INDEX_AT.end && zero[PARTITION_INDEX_AT] == [0; 4];
        if fits {
            expected[PARTITION_INDEX_AT].copy_from_slice(&i32::MAX.to_be_bytes());
        }
        Ok(PartitionTemplate {
            version,
            bytes: (fits && expected == other).then_some(zero),
        })
    }

    fn put(
        &self,
        buffer: &mut BytesMut,
        partition: &dyn Fn(i32) -> MetadataResponsePartition,
        index: i32,
    ) -> anyhow::Result<()> {
        match &self.bytes {
            Some(bytes) => {
                let start = buffer.len();
                buffer.extend_from_slice(bytes);
                let at = start + PARTITION_INDEX_AT.start..start + PARTITION_INDEX_AT.end;
                buffer[at].copy_from_slice(&index.to_be_bytes());
            }
            None => partition(index).encode(buffer, self.version)?,
        }
        Ok(())
    }
}

/// One topic's entry of the topic array, with all its partitions.
fn encode_topic(
    topic: &TopicInfo,
    version: i16,
    describe: &Describe<'_>,
    template: &PartitionTemplate,
) -> anyhow::Result<Bytes> {
    let head = (describe.topic)(topic);
    let count = topic.partition_count();
    let per_partition = template.bytes.as_ref().map_or(0, Vec::len);
    let mut buffer =
        BytesMut::with_capacity(head.compute_size(version)? + 4 + per_partition * count as usize);
    head.encode(&mut buffer, version)?;
    // The topic's empty partition array is just before its tail.
    let cut = buffer
        .len()
        .checked_sub(topic_tail_bytes(version) + empty_array_bytes(version))
        .ok_or_else(|| anyhow::anyhow!("a topic is shorter than its fixed fields"))?;
    let tail = buffer[cut + empty_array_bytes(version)..].to_vec();
    buffer.truncate(cut);
    put_array_len(&mut buffer, count as usize, version)?;
    for index in 0..count {
        template.put(&mut buffer, describe.partition, index)?;
    }
    buffer.extend_from_slice(&tail);
    Ok(buffer.freeze())
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
    use super::super::metadata::{
        describe_topic, single_broker_partition, topic_without_partitions,
    };
    use super::*;
    use crate::ids::ShardId;
    use crate::topic_config::TopicConfig;
    use kafka_protocol::messages::MetadataResponse;
    use kafka_protocol::protocol::{Decodable, StrBytes};

    /// Partition counts around the one- and two-byte compact counts.
    const PARTITION_COUNTS: [usize; 6] = [0, 1, 3, 127, 128, 300];

    fn topic(name: &str, partitions: usize) -> TopicInfo {
        TopicInfo {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partition_shards: vec![ShardId(0); partitions],
            config: TopicConfig::defaults(),
            roles: None,
        }
    }

    fn table(topics: &[(&str, usize)]) -> Arc<TopicTable> {
        Arc::new(TopicTable::from_topics(
            topics.iter().map(|&(name, count)| topic(name, count)),
        ))
    }

    fn encode(table: &Arc<TopicTable>, version: i16, known: KnownTopics) -> Entry {
        let describe = Describe {
            topic: &|t| topic_without_partitions(t, version),
            partition: &|index| single_broker_partition(index, version),
        };
        encode_table(table, version, &describe, known).expect("encodes")
    }

    type KnownTopics = HashMap<Arc<str>, (Arc<TopicInfo>, Bytes)>;

    /// The topic array as the protocol crate encodes the described topics.
    fn expected_array(table: &TopicTable, version: i16) -> Bytes {
        let topics: Vec<_> = table
            .iter()
            .map(|t| describe_topic(t, None, version))
            .collect();
        let mut array = BytesMut::new();
        let mut response = BytesMut::new();
        MetadataResponse::default()
            .with_topics(topics)
            .encode(&mut response, version)
            .expect("encodes");
        let mut empty = BytesMut::new();
        MetadataResponse::default()
            .encode(&mut empty, version)
            .expect("encodes");
        let start = empty.len() - empty_array_bytes(version) - tail_bytes(version);
        array.extend_from_slice(&response[start..response.len() - tail_bytes(version)]);
        array.freeze()
    }

    #[test]
    fn the_array_is_the_protocol_encoding_of_every_topic_at_every_version() {
        let counts: Vec<(String, usize)> = PARTITION_COUNTS
            .iter()
            .enumerate()
            .map(|(i, &count)| (format!("topic-{i}"), count))
            .collect();
        let names: Vec<(&str, usize)> = counts.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        let table = table(&names);
        for version in 0..=12i16 {
            let partition = |index| single_broker_partition(index, version);
            let template = PartitionTemplate::new(&partition, version).expect("encodes");
            assert!(
                template.bytes.is_some(),
                "v{version}: partitions are copies"
            );
            let entry = encode(&table, version, HashMap::new());
            assert_eq!(entry.topics, expected_array(&table, version), "v{version}");
        }
    }

    #[test]
    fn only_new_and_changed_topics_are_encoded_again() {
        let version = 12;
        let old = table(&[("kept", 2), ("changed", 2)]);
        let mut known = encode(&old, version, HashMap::new()).by_name;
        let kept = old.get("kept").expect("listed").clone();
        // Bytes no encoding makes: in the array only where they were kept.
        let marker = Bytes::from_static(b"kept bytes");
        known.insert("kept".into(), (kept.clone(), marker.clone()));
        if let Some((_, bytes)) = known.get_mut("changed") {
            *bytes = Bytes::from_static(b"stale bytes");
        }
        // A change keeps the `Arc` of an unchanged topic and makes new ones.
        let new = Arc::new(TopicTable::from_shared([
            kept,
            Arc::new(topic("changed", 5)),
            Arc::new(topic("new", 1)),
        ]));
        let entry = encode(&new, version, known);
        let fresh = encode(&new, version, HashMap::new());
        assert_eq!(entry.by_name["kept"].1, marker);
        assert_eq!(entry.by_name["changed"].1, fresh.by_name["changed"].1);
        assert_eq!(entry.by_name["new"].1, fresh.by_name["new"].1);
        let mut expected = BytesMut::new();
        put_array_len(&mut expected, 3, version).expect("fits");
        for name in ["changed", "kept", "new"] {
            expected.extend_from_slice(&entry.by_name[name].1);
        }
        assert_eq!(entry.topics, expected.freeze(), "the topics in name order");
    }

    fn named_topic(name: &str, partitions: i32) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(super::super::metadata::topic_name(name)))
            .with_partitions(
                (0..partitions)
                    .map(|p| single_broker_partition(p, 12))
                    .collect(),
            )
    }

    #[test]
    fn a_spliced_answer_decodes_as_the_whole_one_at_every_version() {
        for version in 0..=12i16 {
            let topics = vec![named_topic("a", 3), named_topic("b", 1)];
            let whole = MetadataResponse::default()
                .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str("c")))
                .with_topics(topics.clone());
            let mut expected = BytesMut::new();
            whole.encode(&mut expected, version).expect("encodes");
            let start = {
                let mut empty = BytesMut::new();
                let without = whole.clone().with_topics(Vec::new());
                without.encode(&mut empty, version).expect("encodes");
                empty.len() - empty_array_bytes(version) - tail_bytes(version)
            };
            let array =
                Bytes::copy_from_slice(&expected[start..expected.len() - tail_bytes(version)]);
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
