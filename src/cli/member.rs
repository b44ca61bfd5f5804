//! `topic consume --group G` as a member of the group: JoinGroup (with
//! KIP-394's member id round), SyncGroup (the leader assigns with Kafka's
//! range assignor), Heartbeat while reading, OffsetCommit under the
//! member's generation, LeaveGroup on the way out. It speaks the consumer
//! protocol (`protocol_type` "consumer"), so it shares a group with Java,
//! librdkafka or any other Kafka consumer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::committed::{self, Generation, Offsets};
use super::error::{check, CliError};
use super::session::{group_id, topic_name, Session, Target};

/// The versions of the membership requests this client speaks.
mod versions {
    pub const JOIN_GROUP: (i16, i16) = (1, 7);
    pub const SYNC_GROUP: (i16, i16) = (1, 5);
    pub const HEARTBEAT: (i16, i16) = (1, 4);
    pub const LEAVE_GROUP: (i16, i16) = (1, 4);
}

const PROTOCOL_TYPE: &str = "consumer";
/// Kafka's RangeAssignor, which every consumer client offers.
const RANGE_ASSIGNOR: &str = "range";
/// The consumer protocol's subscription and assignment, version 0.
const CONSUMER_PROTOCOL_VERSION: i16 = 0;
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How long the coordinator waits for every member to rejoin.
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
/// A third of the session timeout, as Kafka's clients default to.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(3_000);
/// JoinGroup rounds (MEMBER_ID_REQUIRED, a rebalance under way) before giving up.
const JOIN_ATTEMPTS_MAX: usize = 10;

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The member keeps its partitions.
    Stays,
    /// The group rebalances: commit and rejoin.
    Rebalance,
}

/// This client's membership of one group, reading one topic.
pub struct Member {
    group: String,
    coordinator: i32,
    topic: String,
    member_id: String,
    generation: i32,
    last_beat: Instant,
}

impl Member {
    /// Joins `group` subscribed to `topic`; the member and its partitions of `topic`.
    pub fn join(
        session: &mut Session,
        group: &str,
        topic: &str,
    ) -> Result<(Member, Vec<i32>), CliError> {
        let mut member = Member {
            group: group.to_string(),
            coordinator: session.coordinator(group)?,
            topic: topic.to_string(),
            member_id: String::new(),
            generation: -1,
            last_beat: Instant::now(),
        };
        let partitions = member.rejoin(session)?;
        Ok((member, partitions))
    }

    /// Joins again (after a rebalance began) and returns the new partitions.
    pub fn rejoin(&mut self, session: &mut Session) -> Result<Vec<i32>, CliError> {
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let joined = self.join_once(session)?;
            let code = ResponseError::try_from_code(joined.error_code);
            match code {
                // KIP-394: the first join only hands out the member id.
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                _ => check(joined.error_code, None, || {
                    format!("joining group {}", self.group)
                })?,
            }
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                assign(session, &joined.members)?
            } else {
                Vec::new()
            };
            let protocol = joined.protocol_name.clone();
            let synced =
                session.call(Target::Node(self.coordinator), versions::SYNC_GROUP, |_| {
                    SyncGroupRequest::default()
                        .with_group_id(group_id(&self.group))
                        .with_generation_id(self.generation)
                        .with_member_id(StrBytes::from_string(self.member_id.clone()))
                        .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
                        .with_protocol_name(protocol)
                        .with_assignments(assignments)
                })?;
            if synced.error_code == ResponseError::RebalanceInProgress.code() {
                continue;
            }
            check(synced.error_code, None, || {
                format!("syncing group {}", self.group)
            })?;
            self.last_beat = Instant::now();
            return assigned_partitions(&synced.assignment, &self.topic);
        }
        Err(CliError::Answer(format!(
            "group {} kept rebalancing: no assignment after {JOIN_ATTEMPTS_MAX} joins",
            self.group
        )))
    }

    fn join_once(
        &self,
        session: &mut Session,
    ) -> Result<kafka_protocol::messages::JoinGroupResponse, CliError> {
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_string(self.topic.clone())]);
        let metadata = consumer_protocol_bytes(&subscription)?;
        session.call(Target::Node(self.coordinator), versions::JOIN_GROUP, |_| {
            JoinGroupRequest::default()
                .with_group_id(group_id(&self.group))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(RANGE_ASSIGNOR))
                    .with_metadata(metadata)])
        })
    }

    /// Sends a heartbeat when one is due.
    pub fn heartbeat_if_due(&mut self, session: &mut Session) -> Result<Beat, CliError> {
        if self.last_beat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(Beat::Stays);
        }
        let response = session.call(Target::Node(self.coordinator), versions::HEARTBEAT, |_| {
            HeartbeatRequest::default()
                .with_group_id(group_id(&self.group))
                .with_generation_id(self.generation)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
        })?;
        self.last_beat = Instant::now();
        match ResponseError::try_from_code(response.error_code) {
            Some(error) if rebalancing(error) => Ok(Beat::Rebalance),
            _ => {
                check(response.error_code, None, || {
                    format!("heartbeat to group {}", self.group)
                })?;
                Ok(Beat::Stays)
            }
        }
    }

    /// Commits `offsets` under this member's generation; a commit refused
    /// because the group rebalances says so instead of failing.
    pub fn commit(&self, session: &mut Session, offsets: &Offsets) -> Result<Beat, CliError> {
        let generation = Generation {
            id: self.generation,
            member_id: &self.member_id,
        };
        match committed::commit_as(session, self.coordinator, &self.group, offsets, generation) {
            Ok(()) => Ok(Beat::Stays),
            Err(CliError::Kafka { error, .. }) if rebalancing(error) => Ok(Beat::Rebalance),
            Err(error) => Err(error),
        }
    }

    pub fn coordinator(&self) -> i32 {
        self.coordinator
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Leaves the group, so its partitions go to the other members at once.
    pub fn leave(&self, session: &mut Session) -> Result<(), CliError> {
        let response = session.call(
            Target::Node(self.coordinator),
            versions::LEAVE_GROUP,
            |version| {
                let request = LeaveGroupRequest::default().with_group_id(group_id(&self.group));
                let member_id = StrBytes::from_string(self.member_id.clone());
                // v3 (KIP-345) names the leaving members in a list.
                if version >= 3 {
                    request.with_members(vec![MemberIdentity::default().with_member_id(member_id)])
                } else {
                    request.with_member_id(member_id)
                }
            },
        )?;
        check(response.error_code, None, || {
            format!("leaving group {}", self.group)
        })
    }
}

/// An answer that means this member must join again.
fn rebalancing(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::RebalanceInProgress
            | ResponseError::IllegalGeneration
            | ResponseError::UnknownMemberId
    )
}

/// `[version: i16][message]`, the consumer protocol's layout.
fn consumer_protocol_bytes<M: Encodable>(message: &M) -> Result<Bytes, CliError> {
    let mut buffer = BytesMut::new();
    buffer.put_i16(CONSUMER_PROTOCOL_VERSION);
    message
        .encode(&mut buffer, CONSUMER_PROTOCOL_VERSION)
        .map_err(|error| CliError::Answer(format!("encoding the consumer protocol: {error}")))?;
    Ok(buffer.freeze())
}

/// Reads `[version: i16][message]`; a newer version than this client knows
/// is read as the newest it knows (the consumer protocol only adds fields).
fn decode_consumer_protocol<M: Decodable>(bytes: &Bytes, newest: i16) -> Result<M, CliError> {
    let bad =
        |what: String| CliError::Answer(format!("a malformed consumer protocol message: {what}"));
    let mut buffer = bytes.clone();
    if buffer.len() < 2 {
        return Err(bad(format!("{} bytes", buffer.len())));
    }
    let version = i16::from_be_bytes([buffer[0], buffer[1]]);
    let _ = buffer.split_to(2);
    M::decode(&mut buffer, version.clamp(0, newest)).map_err(|error| bad(error.to_string()))
}

/// This member's partitions of `topic` in a SyncGroup assignment.
fn assigned_partitions(assignment: &Bytes, topic: &str) -> Result<Vec<i32>, CliError> {
    if assignment.is_empty() {
        return Ok(Vec::new());
    }
    let assignment: ConsumerProtocolAssignment = decode_consumer_protocol(assignment, 3)?;
    let mut partitions: Vec<i32> = assignment
        .assigned_partitions
        .iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    partitions.sort_unstable();
    Ok(partitions)
}

/// The leader's work: every member's partitions with Kafka's range
/// assignor, over the topics the members subscribe to.
fn assign(
    session: &mut Session,
    members: &[JoinGroupResponseMember],
) -> Result<Vec<SyncGroupRequestAssignment>, CliError> {
    let mut subscribers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for member in members {
        let subscription: ConsumerProtocolSubscription =
            decode_consumer_protocol(&member.metadata, 3)?;
        for topic in subscription.topics {
            subscribers
                .entry(topic.to_string())
                .or_default()
                .push(member.member_id.to_string());
        }
    }
    let mut counts = BTreeMap::new();
    for topic in subscribers.keys() {
        // A topic that does not exist (yet) has no partitions to hand out.
        if let Ok(info) = session.topic(topic) {
            counts.insert(topic.clone(), info.partitions.len() as i32);
        }
    }
    let plan = range_assignment(&subscribers, &counts);
    members
        .iter()
        .map(|member| {
            let id = member.member_id.to_string();
            let topics = plan
                .get(&id)
                .into_iter()
                .flatten()
                .map(|(topic, partitions)| {
                    TopicPartition::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(partitions.clone())
                })
                .collect();
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(topics);
            Ok(SyncGroupRequestAssignment::default()
                .with_member_id(member.member_id.clone())
                .with_assignment(consumer_protocol_bytes(&assignment)?))
        })
        .collect()
}

/// member -> topic -> partitions.
type Plan = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// Kafka's RangeAssignor: per topic, the subscribers in member id order
/// each take a run of consecutive partitions, the first ones one more when
/// the partitions do not divide evenly.
fn range_assignment(
    subscribers: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> Plan {
    let mut plan = Plan::new();
    for (topic, members) in subscribers {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        let mut members = members.clone();
        members.sort();
        members.dedup();
        let share = count / members.len() as i32;
        let extra = count % members.len() as i32;
        let mut next = 0;
        for (i, member) in (0i32..).zip(&members) {
            let take = share + i32::from(i < extra);
            plan.entry(member.clone())
                .or_default()
                .insert(topic.clone(), (next..next + take).collect());
            next += take;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_gives_each_member_a_run_and_the_first_ones_the_rest() {
        let subscribers = BTreeMap::from([
            ("a".to_string(), vec!["m2".to_string(), "m1".to_string()]),
            ("b".to_string(), vec!["m1".to_string()]),
            ("missing".to_string(), vec!["m1".to_string()]),
        ]);
        let counts = BTreeMap::from([("a".to_string(), 5), ("b".to_string(), 2)]);
        let plan = range_assignment(&subscribers, &counts);
        assert_eq!(plan["m1"]["a"], vec![0, 1, 2]);
        assert_eq!(plan["m2"]["a"], vec![3, 4]);
        assert_eq!(plan["m1"]["b"], vec![0, 1]);
        assert!(!plan["m1"].contains_key("missing"));
    }

    #[test]
    fn an_assignment_round_trips_through_the_consumer_protocol() {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![2, 0]),
            TopicPartition::default()
                .with_topic(topic_name("other"))
                .with_partitions(vec![1]),
        ]);
        let bytes = consumer_protocol_bytes(&assignment).expect("encodes");
        assert_eq!(
            assigned_partitions(&bytes, "t").expect("decodes"),
            vec![0, 2]
        );
        assert!(assigned_partitions(&Bytes::from_static(&[0]), "t").is_err());
        assert_eq!(
            assigned_partitions(&Bytes::new(), "t").expect("empty"),
            Vec::<i32>::new()
        );
    }
}
