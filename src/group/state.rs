//! A group's in-memory state: members, generation, the classic protocol's
//! state machine states, and protocol selection. Synchronous; the
//! coordinator drives the transitions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use glommio::channels::local_channel::LocalSender;
use indexmap::IndexMap;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, JoinGroupResponse, SyncGroupResponse,
};
use kafka_protocol::protocol::Decodable;

use super::record::{GroupValue, OffsetValue};

/// The classic group protocol's states (Kafka's GroupState).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; the group may still hold offsets.
    Empty,
    /// Waiting for members to (re)join before the next generation.
    PreparingRebalance,
    /// The generation is formed; waiting for the leader's SyncGroup.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
    /// Being deleted.
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Set while the member's JoinGroup waits for the rebalance to complete.
    pub join_waiter: Option<LocalSender<JoinGroupResponse>>,
    /// Set while the member's SyncGroup waits for the leader's assignment.
    pub sync_waiter: Option<LocalSender<SyncGroupResponse>>,
    pub heartbeat_deadline: Instant,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub fn is_awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }
}

/// The join-completion timer of a rebalance in progress.
#[derive(Debug, Clone, Copy)]
pub struct JoinTimer {
    /// Distinguishes this timer from older ones still sleeping.
    pub epoch: u64,
    /// `Some(remaining_ms)` while in the initial delay (group.initial.rebalance.delay.ms):
    /// the join cannot complete early and each expiry with new members extends it.
    pub initial_remaining_ms: Option<u64>,
}

pub struct StoredOffset {
    pub value: OffsetValue,
    /// Log sequence of the record that wrote it; an older write never replaces a newer one.
    pub seq: u64,
}

pub struct Group {
    pub id: String,
    /// Distinguishes this group from a deleted one of the same id.
    pub incarnation: u64,
    pub state: GroupState,
    pub state_timestamp_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// In join order: the first member becomes leader when there is none.
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id (KIP-345).
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not rejoined yet (KIP-394).
    pub pending_members: HashSet<String>,
    pub offsets: BTreeMap<(String, i32), StoredOffset>,
    pub join_timer: Option<JoinTimer>,
    pub new_member_added: bool,
}

impl Group {
    pub fn new(id: String, incarnation: u64, now_ms: i64) -> Group {
        Group {
            id,
            incarnation,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashSet::new(),
            offsets: BTreeMap::new(),
            join_timer: None,
            new_member_added: false,
        }
    }

    pub fn value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
        }
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Members plus those still completing the member-id round trip.
    pub fn size(&self) -> usize {
        self.members.len() + self.pending_members.len()
    }

    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(Member::is_awaiting_join)
    }

    /// The longest rebalance timeout among the members: how long a join waits.
    pub fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> BTreeSet<&str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return BTreeSet::new();
        };
        let mut candidates: BTreeSet<&str> =
            first.protocols.iter().map(|(n, _)| n.as_str()).collect();
        for member in members {
            candidates.retain(|c| member.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// Whether a member with these protocols may join (Kafka's supportsProtocols).
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// Each member votes for its most preferred candidate; the most votes wins,
    /// ties going to the earlier joined member's preference. `None` when the
    /// members have nothing in common (cannot happen after `supports_protocols`).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for member in self.members.values() {
            let Some((vote, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n.as_str()))
            else {
                continue;
            };
            match votes.iter_mut().find(|(name, _)| name == vote) {
                Some((_, count)) => *count += 1,
                None => votes.push((vote, 1)),
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// Topics the members subscribe to, for consumer groups whose metadata
    /// parses as ConsumerProtocolSubscription; `None` when unknown.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            let subscription = decode_subscription(&member.metadata_for(protocol))?;
            topics.extend(subscription.topics.iter().map(|t| t.as_str().to_string()));
        }
        Some(topics)
    }
}

/// The newest ConsumerProtocolSubscription version this code decodes; newer
/// versions only add fields, so they are read as this one.
const SUBSCRIPTION_VERSION_MAX: i16 = 3;

fn decode_subscription(metadata: &Bytes) -> Option<ConsumerProtocolSubscription> {
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    if version < 0 {
        return None;
    }
    let _ = bytes::Buf::get_i16(&mut buf);
    ConsumerProtocolSubscription::decode(&mut buf, version.min(SUBSCRIPTION_VERSION_MAX)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::new()))
                .collect(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            heartbeat_deadline: Instant::now(),
        }
    }

    #[test]
    fn protocol_selection_takes_the_most_voted_common_protocol() {
        let mut group = Group::new("g".into(), 1, 0);
        group.protocol_type = Some("consumer".into());
        group
            .members
            .insert("a".into(), member("a", &["cooperative-sticky", "range"]));
        group
            .members
            .insert("b".into(), member("b", &["range", "roundrobin"]));
        group
            .members
            .insert("c".into(), member("c", &["roundrobin", "range"]));
        // Only "range" is common to all three.
        assert_eq!(group.select_protocol().as_deref(), Some("range"));
        assert!(group.supports_protocols("consumer", &[("range".into(), Bytes::new())]));
        assert!(!group.supports_protocols("consumer", &[("roundrobin".into(), Bytes::new())]));
        assert!(!group.supports_protocols("connect", &[("range".into(), Bytes::new())]));
    }

    #[test]
    fn subscribed_topics_are_read_from_consumer_metadata() {
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("orders")]);
        let mut metadata = bytes::BytesMut::new();
        metadata.extend_from_slice(&1i16.to_be_bytes());
        subscription.encode(&mut metadata, 1).unwrap();
        let mut group = Group::new("g".into(), 1, 0);
        group.protocol_type = Some("consumer".into());
        group.protocol_name = Some("range".into());
        let mut m = member("a", &["range"]);
        m.protocols = vec![("range".into(), metadata.freeze())];
        group.members.insert("a".into(), m);
        let topics = group.subscribed_topics().unwrap();
        assert!(topics.contains("orders"));
    }
}
