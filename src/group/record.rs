//! The keys and values the coordinator stores in its log, in an explicit
//! little-endian binary encoding.
//!
//! A key names what a value describes: a group (`Key::Group`) or one committed
//! offset (`Key::Offset`). Every value starts with a version byte so the
//! format can grow; a decoder refuses versions it does not know instead of
//! guessing.
//!
//! Strings are `u32` length + UTF-8 bytes; optional strings and timestamps use
//! a presence byte or `-1`.
//!
//! Written by hand rather than with rkyv: records are small, read once at
//! start-up (never in place), framed and CRC-checked by the log, and a plain
//! format with a version byte is easier to evolve and to check field by field.

use super::error::GroupLogError;
use crate::ids::PartitionId;
use crate::storage::Offset;

const KEY_KIND_GROUP: u8 = 1;
const KEY_KIND_OFFSET: u8 = 2;
const KEY_KIND_PENDING_OFFSET: u8 = 3;
const VALUE_VERSION: u8 = 1;
/// Group values from this version on carry a Stable group's members.
const GROUP_VALUE_VERSION: u8 = 2;

/// What a stored value describes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// The group exists, with the facts in [`GroupValue`].
    Group { group: String },
    /// The committed offset of one partition, in [`OffsetValue`].
    Offset {
        group: String,
        topic: String,
        partition: PartitionId,
    },
    /// An offset a transaction commits (TxnOffsetCommit), in [`OffsetValue`]:
    /// it becomes `Offset` when the transaction commits, and is dropped when
    /// it aborts (KIP-98).
    PendingOffset {
        group: String,
        producer_id: i64,
        topic: String,
        partition: PartitionId,
    },
}

/// A committed offset as stored (OffsetCommit's fields plus timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: Offset,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
    /// Set by OffsetCommit v2-v4 `retention_time_ms`; `None` uses the broker's retention.
    pub expire_timestamp_ms: Option<i64>,
}

/// The membership-independent facts of a group that survive a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// `None` for groups that only store offsets (standalone consumers).
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol_name: Option<String>,
    /// When the group entered its current state; offsets of an Empty group
    /// expire relative to it (KIP-211).
    pub state_timestamp_ms: i64,
    /// A Stable group's leader and members with their assignments, as
    /// Kafka's GroupMetadataValue keeps them, so a coordinator that takes
    /// the group over knows its members and they go on without rejoining.
    /// Empty for any other state.
    pub leader: Option<String>,
    pub members: Vec<MemberValue>,
}

/// One member of a Stable group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Its metadata for the group's protocol, and the topics it names.
    pub metadata: Vec<u8>,
    pub subscribed_topics: Option<Vec<String>>,
    pub assignment: Vec<u8>,
}

impl Key {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Key::Group { group } => {
                out.push(KEY_KIND_GROUP);
                put_str(&mut out, group);
            }
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                out.push(KEY_KIND_OFFSET);
                put_str(&mut out, group);
                put_str(&mut out, topic);
                out.extend_from_slice(&partition.get().to_le_bytes());
            }
            Key::PendingOffset {
                group,
                producer_id,
                topic,
                partition,
            } => {
                out.push(KEY_KIND_PENDING_OFFSET);
                put_str(&mut out, group);
                out.extend_from_slice(&producer_id.to_le_bytes());
                put_str(&mut out, topic);
                out.extend_from_slice(&partition.get().to_le_bytes());
            }
        }
        out
    }

    /// The group the key belongs to.
    pub fn group(&self) -> &str {
        match self {
            Key::Group { group } | Key::Offset { group, .. } | Key::PendingOffset { group, .. } => {
                group
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Key, GroupLogError> {
        let mut reader = Reader::new(bytes);
        let key = match reader.u8()? {
            KEY_KIND_GROUP => Key::Group {
                group: reader.string()?,
            },
            KEY_KIND_OFFSET => Key::Offset {
                group: reader.string()?,
                topic: reader.string()?,
                partition: PartitionId(reader.i32()?),
            },
            KEY_KIND_PENDING_OFFSET => Key::PendingOffset {
                group: reader.string()?,
                producer_id: reader.i64()?,
                topic: reader.string()?,
                partition: PartitionId(reader.i32()?),
            },
            kind => return Err(GroupLogError::Corrupt(format!("unknown key kind {kind}"))),
        };
        reader.finish()?;
        Ok(key)
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.push(VALUE_VERSION);
        out.extend_from_slice(&self.offset.get().to_le_bytes());
        out.extend_from_slice(&self.leader_epoch.to_le_bytes());
        put_opt_str(&mut out, self.metadata.as_deref());
        out.extend_from_slice(&self.commit_timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.expire_timestamp_ms.unwrap_or(-1).to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<OffsetValue, GroupLogError> {
        let mut reader = Reader::new(bytes);
        reader.version()?;
        let value = OffsetValue {
            offset: Offset(reader.i64()?),
            leader_epoch: reader.i32()?,
            metadata: reader.opt_string()?,
            commit_timestamp_ms: reader.i64()?,
            expire_timestamp_ms: Some(reader.i64()?).filter(|&ts| ts >= 0),
        };
        reader.finish()?;
        Ok(value)
    }
}

impl GroupValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.push(GROUP_VALUE_VERSION);
        put_opt_str(&mut out, self.protocol_type.as_deref());
        out.extend_from_slice(&self.generation.to_le_bytes());
        put_opt_str(&mut out, self.protocol_name.as_deref());
        out.extend_from_slice(&self.state_timestamp_ms.to_le_bytes());
        put_opt_str(&mut out, self.leader.as_deref());
        out.extend_from_slice(&(self.members.len() as u32).to_le_bytes());
        for member in &self.members {
            put_str(&mut out, &member.member_id);
            put_opt_str(&mut out, member.group_instance_id.as_deref());
            put_str(&mut out, &member.client_id);
            put_str(&mut out, &member.client_host);
            out.extend_from_slice(&member.session_timeout_ms.to_le_bytes());
            out.extend_from_slice(&member.rebalance_timeout_ms.to_le_bytes());
            put_bytes(&mut out, &member.metadata);
            match &member.subscribed_topics {
                None => out.push(0),
                Some(topics) => {
                    out.push(1);
                    out.extend_from_slice(&(topics.len() as u32).to_le_bytes());
                    for topic in topics {
                        put_str(&mut out, topic);
                    }
                }
            }
            put_bytes(&mut out, &member.assignment);
        }
        out
    }

    /// Decodes version 1 (no members) and version 2.
    pub fn decode(bytes: &[u8]) -> Result<GroupValue, GroupLogError> {
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != VALUE_VERSION && version != GROUP_VALUE_VERSION {
            return Err(GroupLogError::Corrupt(format!(
                "unknown group value version {version}"
            )));
        }
        let mut value = GroupValue {
            protocol_type: reader.opt_string()?,
            generation: reader.i32()?,
            protocol_name: reader.opt_string()?,
            state_timestamp_ms: reader.i64()?,
            leader: None,
            members: Vec::new(),
        };
        if version == GROUP_VALUE_VERSION {
            value.leader = reader.opt_string()?;
            let count = reader.u32()?;
            // Each member takes at least this many bytes: a count the record
            // cannot hold is refused before anything is allocated for it.
            const MEMBER_BYTES_MIN: usize = 4 + 1 + 4 + 4 + 4 + 4 + 4 + 1 + 4;
            if count as usize > reader.remaining() / MEMBER_BYTES_MIN {
                return Err(GroupLogError::Corrupt(format!(
                    "{count} members do not fit in the record"
                )));
            }
            value.members = Vec::with_capacity(count as usize);
            for _ in 0..count {
                value.members.push(MemberValue {
                    member_id: reader.string()?,
                    group_instance_id: reader.opt_string()?,
                    client_id: reader.string()?,
                    client_host: reader.string()?,
                    session_timeout_ms: reader.i32()?,
                    rebalance_timeout_ms: reader.i32()?,
                    metadata: reader.bytes()?.to_vec(),
                    subscribed_topics: reader.opt_strings()?,
                    assignment: reader.bytes()?.to_vec(),
                });
            }
        }
        reader.finish()?;
        Ok(value)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Bounded by the request size limit the member's metadata came in.
    debug_assert!(bytes.len() <= u32::MAX as usize);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths are bounded by the callers (group id, topic and metadata limits).
    debug_assert!(s.len() <= u32::MAX as usize);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// A bounds-checked cursor: every read checks the remaining length first.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], GroupLogError> {
        if self.bytes.len() < n {
            return Err(GroupLogError::Corrupt(format!(
                "record needs {n} more bytes, has {}",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GroupLogError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, GroupLogError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn i16(&mut self) -> Result<i16, GroupLogError> {
        Ok(i16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, GroupLogError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, GroupLogError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, GroupLogError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn version(&mut self) -> Result<(), GroupLogError> {
        match self.u8()? {
            VALUE_VERSION => Ok(()),
            version => Err(GroupLogError::Corrupt(format!(
                "unknown value version {version}"
            ))),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Length-prefixed bytes, borrowed.
    fn bytes(&mut self) -> Result<&'a [u8], GroupLogError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    pub(crate) fn string(&mut self) -> Result<String, GroupLogError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GroupLogError::Corrupt("string is not UTF-8".to_string()))
    }

    /// An optional list of strings, its count checked against what is left.
    fn opt_strings(&mut self) -> Result<Option<Vec<String>>, GroupLogError> {
        if self.u8()? == 0 {
            return Ok(None);
        }
        let count = self.u32()? as usize;
        if count > self.remaining() / 4 {
            return Err(GroupLogError::Corrupt(format!(
                "{count} strings do not fit in the record"
            )));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.string()?);
        }
        Ok(Some(out))
    }

    pub(crate) fn opt_string(&mut self) -> Result<Option<String>, GroupLogError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            flag => Err(GroupLogError::Corrupt(format!("bad presence flag {flag}"))),
        }
    }

    pub(crate) fn finish(&self) -> Result<(), GroupLogError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(GroupLogError::Corrupt(format!(
                "{} trailing bytes in record",
                self.bytes.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let keys = [
            Key::Group { group: "g".into() },
            Key::Offset {
                group: "grp".into(),
                topic: "t".into(),
                partition: PartitionId(7),
            },
        ];
        for key in keys {
            assert_eq!(Key::decode(&key.encode()).unwrap(), key);
        }
        let offset = OffsetValue {
            offset: Offset(42),
            leader_epoch: 3,
            metadata: Some("meta".into()),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: None,
        };
        assert_eq!(OffsetValue::decode(&offset.encode()).unwrap(), offset);
        let group = GroupValue {
            protocol_type: Some("consumer".into()),
            generation: 5,
            protocol_name: None,
            state_timestamp_ms: 77,
            leader: None,
            members: Vec::new(),
        };
        assert_eq!(GroupValue::decode(&group.encode()).unwrap(), group);
        let stable = GroupValue {
            protocol_name: Some("range".into()),
            leader: Some("m-1".into()),
            members: vec![MemberValue {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                metadata: vec![1, 2, 3],
                subscribed_topics: Some(vec!["t".into()]),
                assignment: vec![4, 5],
            }],
            ..group
        };
        let encoded = stable.encode();
        assert_eq!(GroupValue::decode(&encoded).unwrap(), stable);
        for len in 0..encoded.len() {
            assert!(GroupValue::decode(&encoded[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn a_version_1_group_value_decodes_without_members() {
        let mut v1 = vec![VALUE_VERSION];
        put_opt_str(&mut v1, Some("consumer"));
        v1.extend_from_slice(&3i32.to_le_bytes());
        put_opt_str(&mut v1, Some("range"));
        v1.extend_from_slice(&9i64.to_le_bytes());
        let value = GroupValue::decode(&v1).unwrap();
        assert_eq!(value.generation, 3);
        assert!(value.members.is_empty() && value.leader.is_none());
    }

    #[test]
    fn a_member_count_the_record_cannot_hold_is_refused() {
        let mut value = vec![GROUP_VALUE_VERSION];
        put_opt_str(&mut value, Some("consumer"));
        value.extend_from_slice(&1i32.to_le_bytes());
        put_opt_str(&mut value, Some("range"));
        value.extend_from_slice(&0i64.to_le_bytes());
        put_opt_str(&mut value, None);
        value.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(GroupValue::decode(&value).is_err());
    }

    #[test]
    fn truncated_or_padded_records_are_rejected() {
        let encoded = Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: PartitionId(1),
        }
        .encode();
        for len in 0..encoded.len() {
            assert!(Key::decode(&encoded[..len]).is_err());
        }
        let mut padded = encoded.clone();
        padded.push(0);
        assert!(Key::decode(&padded).is_err());
        let mut huge_len = vec![KEY_KIND_GROUP];
        huge_len.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Key::decode(&huge_len).is_err());
    }
}
