//! A group's in-memory state: members, generation, the classic protocol's
//! state machine states, and protocol selection. Synchronous; the
//! coordinator drives the transitions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use glommio::channels::local_channel::LocalSender;
use indexmap::IndexMap;

use super::api::{JoinAnswer, Protocol, SyncAnswer};
use super::record::{GroupValue, MemberValue, OffsetValue};
use crate::ids::PartitionId;

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
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    /// Set while the member's JoinGroup waits for the rebalance to complete.
    pub join_waiter: Option<LocalSender<JoinAnswer>>,
    /// Set while the member's SyncGroup waits for the leader's assignment.
    pub sync_waiter: Option<LocalSender<SyncAnswer>>,
    pub heartbeat_deadline: Instant,
}

impl Member {
    pub fn protocol(&self, name: &str) -> Option<&Protocol> {
        self.protocols.iter().find(|p| p.name == name)
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocol(protocol).is_some()
    }

    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocol(protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    pub fn same_protocols(&self, protocols: &[Protocol]) -> bool {
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
    pub offsets: BTreeMap<(String, PartitionId), StoredOffset>,
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

    /// What the log keeps of the group: with its members once Stable.
    pub fn value(&self) -> GroupValue {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let members = if stable {
            self.members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    metadata: m.metadata_for(protocol).to_vec(),
                    subscribed_topics: m
                        .protocol(protocol)
                        .and_then(|p| p.subscribed_topics.clone()),
                    assignment: m.assignment.to_vec(),
                })
                .collect()
        } else {
            Vec::new()
        };
        GroupValue {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            leader: if stable { self.leader.clone() } else { None },
            members,
        }
    }

    /// Takes back a Stable group's members from the log (a coordinator that
    /// took the group over, or restarted): each has a full session from
    /// `now` to heartbeat here, as in Kafka.
    pub fn restore_members(&mut self, value: GroupValue, now: Instant) {
        let Some(protocol) = value
            .protocol_name
            .clone()
            .filter(|_| !value.members.is_empty())
        else {
            return;
        };
        for stored in value.members {
            if let Some(instance) = &stored.group_instance_id {
                self.static_members
                    .insert(instance.clone(), stored.member_id.clone());
            }
            let member = Member {
                member_id: stored.member_id.clone(),
                group_instance_id: stored.group_instance_id,
                client_id: stored.client_id,
                client_host: stored.client_host,
                session_timeout_ms: stored.session_timeout_ms,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                protocols: vec![Protocol {
                    name: protocol.clone(),
                    metadata: Bytes::from(stored.metadata),
                    subscribed_topics: stored.subscribed_topics,
                }],
                assignment: Bytes::from(stored.assignment),
                join_waiter: None,
                sync_waiter: None,
                heartbeat_deadline: now
                    + std::time::Duration::from_millis(stored.session_timeout_ms.max(0) as u64),
            };
            self.members.insert(stored.member_id, member);
        }
        self.protocol_name = Some(protocol);
        self.leader = value.leader;
        self.state = GroupState::Stable;
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
            first.protocols.iter().map(|p| p.name.as_str()).collect();
        for member in members {
            candidates.retain(|c| member.supports(c));
        }
        candidates
    }

    /// Whether a member with these protocols may join (Kafka's supportsProtocols).
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    /// Each member votes for its most preferred candidate; the most votes wins,
    /// ties going to the earlier joined member's preference. `None` when the
    /// members have nothing in common (cannot happen after `supports_protocols`).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for member in self.members.values() {
            let Some(vote) = member
                .protocols
                .iter()
                .map(|p| p.name.as_str())
                .find(|n| candidates.contains(n))
            else {
                continue;
            };
            match votes.iter_mut().find(|(name, _)| *name == vote) {
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

    /// Topics the members subscribe to, for consumer groups whose members'
    /// subscriptions are known; `None` when unknown.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            let subscribed = member.protocol(protocol)?.subscribed_topics.as_ref()?;
            topics.extend(subscribed.iter().cloned());
        }
        Some(topics)
    }
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
            protocols: protocols.iter().map(|p| protocol(p, None)).collect(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            heartbeat_deadline: Instant::now(),
        }
    }

    fn protocol(name: &str, subscribed_topics: Option<&[&str]>) -> Protocol {
        Protocol {
            name: name.into(),
            metadata: Bytes::new(),
            subscribed_topics: subscribed_topics
                .map(|topics| topics.iter().map(|t| t.to_string()).collect()),
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
        assert!(group.supports_protocols("consumer", &[protocol("range", None)]));
        assert!(!group.supports_protocols("consumer", &[protocol("roundrobin", None)]));
        assert!(!group.supports_protocols("connect", &[protocol("range", None)]));
    }

    #[test]
    fn subscribed_topics_are_those_of_the_selected_protocol() {
        let mut group = Group::new("g".into(), 1, 0);
        group.protocol_type = Some("consumer".into());
        group.protocol_name = Some("range".into());
        let mut m = member("a", &[]);
        m.protocols = vec![
            protocol("range", Some(&["orders"])),
            protocol("roundrobin", Some(&["payments"])),
        ];
        group.members.insert("a".into(), m);
        let topics = group.subscribed_topics().expect("known subscription");
        assert_eq!(topics.into_iter().collect::<Vec<_>>(), vec!["orders"]);
        let mut unknown = member("b", &["range"]);
        unknown.protocols = vec![protocol("range", None)];
        group.members.insert("b".into(), unknown);
        assert_eq!(group.subscribed_topics(), None);
    }
}
