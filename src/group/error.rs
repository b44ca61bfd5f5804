//! Errors of the group coordinator and its log.
//!
//! [`GroupError`] is a protocol outcome (UNKNOWN_MEMBER_ID,
//! ILLEGAL_GENERATION, ...): the broker answers it as a Kafka error code.
//! [`GroupLogError`] is a failure of the coordinator itself: of its durable
//! log (I/O, corruption, back-pressure), a close, or its configuration.

use std::path::PathBuf;

/// Why the coordinator refused a request or a part of one, named after
/// Kafka's error codes for the group APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("this broker does not coordinate the group")]
    NotCoordinator,
    #[error("the group coordinator is not available")]
    CoordinatorNotAvailable,
    /// A new coordinator is still replaying the group's offsets partition.
    #[error("the group coordinator is loading the group")]
    CoordinatorLoadInProgress,
    #[error("the request timed out")]
    RequestTimedOut,
    #[error("unexpected server error")]
    UnknownServerError,
    #[error("the group id is invalid")]
    InvalidGroupId,
    #[error("the group id does not exist")]
    GroupIdNotFound,
    #[error("the group is not empty")]
    NonEmptyGroup,
    #[error("the group is at its maximum size")]
    GroupMaxSizeReached,
    #[error("the session timeout is outside the broker's bounds")]
    InvalidSessionTimeout,
    #[error("the member's protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    /// KIP-394: join again with the member id in the answer.
    #[error("a member id is required to join the group")]
    MemberIdRequired,
    /// KIP-345: another member took over this group.instance.id.
    #[error("the static member was fenced by a newer instance")]
    FencedInstanceId,
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the topic or partition does not exist")]
    UnknownTopicOrPartition,
    #[error("the offset metadata is too large")]
    OffsetMetadataTooLarge,
    #[error("the group still consumes the topic")]
    GroupSubscribedToTopic,
    /// KIP-447: a transaction's offsets for the group are not decided yet.
    #[error("the group has pending transactional offsets")]
    UnstableOffsetCommit,
    /// The caller may not use the group (decided before the coordinator runs).
    #[error("not authorized to access the group")]
    GroupAuthorizationFailed,
    /// The caller may not use the topic (decided before the coordinator runs).
    #[error("not authorized to access the topic")]
    TopicAuthorizationFailed,
}

#[derive(Debug, thiserror::Error)]
pub enum GroupLogError {
    #[error("group log I/O ({operation}) on {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("group log record is corrupt: {0}")]
    Corrupt(String),
    /// A write or fdatasync failed earlier. The disk state is unknown, so the
    /// log refuses further writes rather than acknowledge commits it may lose.
    #[error("group log is failed since an earlier I/O error: {0}")]
    Failed(String),
    /// Too many records wait for the disk; the request may be retried.
    #[error("group log has too many unflushed records")]
    Backlogged,
    /// The coordinator or its log was closed (shutdown).
    /// The offsets partition's leadership moved before the write committed.
    #[error("the write was not committed to the offsets topic")]
    NotCommitted,
    #[error("group coordinator is closed")]
    Closed,
    #[error("group log {path} is {bytes} bytes, above the {limit} byte limit for loading")]
    TooLarge {
        path: PathBuf,
        bytes: u64,
        limit: u64,
    },
    #[error("invalid group configuration: {0}")]
    Config(String),
}

impl GroupLogError {
    /// What a request gets when this stops it. Exhaustive on purpose: a new
    /// variant must decide its outcome.
    pub fn group_error(&self) -> GroupError {
        match self {
            // Retriable: the client backs off and tries again.
            GroupLogError::Backlogged => GroupError::RequestTimedOut,
            // The client looks for the coordinator again.
            GroupLogError::Closed | GroupLogError::NotCommitted => GroupError::NotCoordinator,
            GroupLogError::Io { .. }
            | GroupLogError::Corrupt(_)
            | GroupLogError::Failed(_)
            | GroupLogError::TooLarge { .. }
            | GroupLogError::Config(_) => GroupError::CoordinatorNotAvailable,
        }
    }

    /// Maps a glommio I/O error, naming the operation and file.
    pub(crate) fn io(
        operation: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(glommio::GlommioError<()>) -> GroupLogError {
        let path = path.to_path_buf();
        move |source| GroupLogError::Io {
            operation,
            path,
            source: source.into(),
        }
    }
}
