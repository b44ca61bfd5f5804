//! A transactional id's state as the coordinator keeps it (Kafka's
//! `TransactionMetadata`): its producer id and epoch, the transaction's
//! state, partitions and groups, and when it started.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ids::PartitionId;

/// Kafka's `TransactionState`, with its names and ids (DescribeTransactions
/// and ListTransactions report the names; the log stores the ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// A producer id was handed out; no transaction is open.
    Empty,
    /// Partitions or groups were added; neither committed nor aborted.
    Ongoing,
    /// EndTxn(commit) is durable; the markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fence is durable; the markers are being written.
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    /// The transactional id expired.
    Dead,
}

impl TxnState {
    pub const ALL: [TxnState; 7] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Kafka's state ids (`TransactionState.id`).
    pub fn id(self) -> u8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
        }
    }

    pub fn from_id(id: u8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// Markers are owed: the outcome is decided but not yet written everywhere.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// A partition of a transaction.
pub type TxnPartition = (Arc<str>, PartitionId);

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_EPOCH: i16 = -1;
/// Kafka's `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;

/// What the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    /// The id before the last rotation (KIP-360 retries), or -1.
    pub last_producer_id: i64,
    /// KIP-890: the id the producer continues with once this transaction
    /// completes, when its epochs ran out (-1: none).
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (KIP-360 retries), or -1.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TxnPartition>,
    /// Groups whose offsets the transaction commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// When the open transaction started (-1 when none is open).
    pub txn_start_ms: i64,
    pub last_update_ms: i64,
    /// KIP-890: the transaction runs the V2 protocol (EndTxn bumps the epoch).
    pub v2: bool,
}

impl TxnMetadata {
    /// A fresh transactional id: a new producer id, no epoch handed out yet.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_EPOCH,
            last_producer_epoch: NO_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            txn_start_ms: -1,
            last_update_ms: now_ms,
            v2: false,
        }
    }

    /// Kafka's `isEpochExhausted`: the last epoch is kept for a fence bump.
    pub fn epoch_exhausted(epoch: i16) -> bool {
        epoch >= i16::MAX - 1
    }

    /// Whether the id may be removed at `now_ms` (Kafka's
    /// `removeExpiredTransactionalIds`): no transaction in flight and no
    /// update for `expiration_ms`.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        ) && self.last_update_ms <= now_ms.saturating_sub(expiration_ms)
    }

    /// Whether the transaction's deadline has passed at `now_ms`.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.txn_start_ms >= 0
            && now_ms.saturating_sub(self.txn_start_ms) > i64::from(self.timeout_ms)
    }
}
