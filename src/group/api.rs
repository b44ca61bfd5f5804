//! The coordinator's requests and answers, in its own types. The broker
//! fills them from the wire (per API version) and maps the answers back;
//! the coordinator never sees a protocol version.

use bytes::Bytes;

use super::error::GroupError;
use super::state::GroupState;
use super::ClientInfo;
use crate::ids::PartitionId;
use crate::storage::Offset;

/// One protocol a member supports (for consumers, an assignor), in the
/// member's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
    /// For consumer groups: the topics `metadata` subscribes to, decoded by
    /// the broker from ConsumerProtocolSubscription; `None` when unknown.
    /// OffsetDelete and offset expiry need them, as in Kafka.
    pub subscribed_topics: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// KIP-345 static membership (JoinGroup v5+); `None` for dynamic members.
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: i32,
    /// `None` where the request has none (JoinGroup v0): the session timeout serves.
    pub rebalance_timeout_ms: Option<i32>,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// KIP-394 (JoinGroup v4+): a new dynamic member first gets its member id
    /// with MEMBER_ID_REQUIRED and joins again with it.
    pub member_id_required: bool,
    pub client: ClientInfo,
}

/// A member as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The member's metadata for the selected protocol.
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAnswer {
    pub error: Option<GroupError>,
    /// -1 with an error.
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// KIP-814: a returning static leader keeps the current assignment.
    pub skip_assignment: bool,
    pub member_id: String,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinAnswer {
    pub fn refused(error: GroupError, member_id: &str) -> JoinAnswer {
        JoinAnswer {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// The assignment the leader computed for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAssignment {
    pub member_id: String,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// SyncGroup v5+: the protocol the client expects; `None` checks nothing.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Sent by the leader only.
    pub assignments: Vec<MemberAssignment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncAnswer {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncAnswer {
    pub fn refused(error: GroupError) -> SyncAnswer {
        SyncAnswer {
            error: Some(error),
            ..SyncAnswer::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
}

/// A member leaving, named by member id, by group.instance.id, or both.
#[derive(Debug, Clone)]
pub struct LeavingMember {
    /// Empty to name a static member by its group.instance.id alone.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LeaveRequest {
    pub group_id: String,
    pub members: Vec<LeavingMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveAnswer {
    /// Stops the whole request; `members` is then empty.
    pub error: Option<GroupError>,
    /// One outcome per member of the request, in its order.
    pub members: Vec<Option<GroupError>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Empty unless the group is Stable, as in Kafka.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// GROUP_ID_NOT_FOUND for a group that does not exist (its state is then Dead).
    pub error: Option<GroupError>,
    /// `None` when the request was refused before the group was looked up.
    pub state: Option<GroupState>,
    pub protocol_type: String,
    /// The selected protocol, while Stable.
    pub protocol_data: String,
    pub members: Vec<DescribedMember>,
}

impl GroupDescription {
    pub fn without_group(group_id: &str, error: GroupError) -> GroupDescription {
        GroupDescription {
            group_id: group_id.to_string(),
            error: Some(error),
            state: None,
            protocol_type: String::new(),
            protocol_data: String::new(),
            members: Vec::new(),
        }
    }
}

/// One group's committed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group_id: String,
    pub topic: String,
    pub partition: PartitionId,
    pub offset: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
    /// KIP-848's name for the protocol the group speaks.
    pub group_type: &'static str,
}

#[derive(Debug, Clone)]
pub struct CommittedPartition {
    pub partition: PartitionId,
    pub offset: Offset,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommittedTopic {
    pub name: String,
    pub partitions: Vec<CommittedPartition>,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1 for a standalone consumer (no group membership).
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// OffsetCommit v2-4 may set the offsets' retention; KIP-211 removed that
    /// in v5. `None`: the broker's offsets retention applies.
    pub retention_ms: Option<i64>,
    pub topics: Vec<CommittedTopic>,
}

/// TxnOffsetCommit: offsets a transaction commits, pending until its marker.
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    /// The group, member and offsets, checked as OffsetCommit checks them.
    pub commit: CommitRequest,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Partitions of one topic, as OffsetFetch and OffsetDelete name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub name: String,
    pub partitions: Vec<PartitionId>,
}

/// The outcome for each partition of one topic, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOutcome {
    pub name: String,
    pub partitions: Vec<PartitionOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOutcome {
    pub partition: PartitionId,
    pub error: Option<GroupError>,
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub group_id: String,
    /// `None` fetches every offset the group has.
    pub topics: Option<Vec<TopicPartitions>>,
    /// KIP-447: wait for pending transactional offsets.
    pub require_stable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: PartitionId,
    /// -1 when nothing is committed.
    pub offset: Offset,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedTopic {
    pub name: String,
    pub partitions: Vec<FetchedOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedGroup {
    pub group_id: String,
    pub error: Option<GroupError>,
    /// In request order when the request named topics.
    pub topics: Vec<FetchedTopic>,
}

#[derive(Debug, Clone)]
pub struct DeleteOffsetsRequest {
    pub group_id: String,
    pub topics: Vec<TopicPartitions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOffsetsAnswer {
    /// Stops the whole request; `topics` is then empty.
    pub error: Option<GroupError>,
    pub topics: Vec<TopicOutcome>,
}

impl DeleteOffsetsAnswer {
    pub fn refused(error: GroupError) -> DeleteOffsetsAnswer {
        DeleteOffsetsAnswer {
            error: Some(error),
            topics: Vec::new(),
        }
    }
}
