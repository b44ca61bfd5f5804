//! The transaction coordinator of one shard (Kafka's `TransactionCoordinator`
//! and `TransactionMetadata` transitions, KIP-98, KIP-360, KIP-890).
//!
//! Every transition is written to the shard's transaction log and applied
//! in memory only once durable; while one is being written, the id answers
//! CONCURRENT_TRANSACTIONS, as Kafka's `pendingTransitionInProgress` does.
//! A decided transaction (PrepareCommit / PrepareAbort) hands back a
//! [`Completion`]: the markers to write and groups to tell; whoever writes
//! them calls [`TxnCoordinator::complete`]. After a crash the prepared
//! transactions are handed back again by [`TxnCoordinator::prepared`].
//!
//! In a prepared state the markers are written with the metadata's own
//! producer id and epoch: the transaction's epoch (V1), or the bumped one
//! (V2, and the fence of a timed-out or replaced producer).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::rc::{Rc, Weak};

use super::error::TxnError;
use super::record::{decode_epoch, decode_txn, encode_epoch, encode_txn, Key};
use super::state::{TxnMetadata, TxnPartition, TxnState, NO_EPOCH, NO_PRODUCER_ID};
use crate::clock::now_ms;
use crate::group::log::{GroupLog, GroupLogConfig};
use crate::group::GroupLogError;

/// The transaction log's file in the coordinator's directory.
pub const TXN_LOG_FILE: &str = "transactions.log";
/// Most partitions one transaction may hold, and groups: bounds one record
/// of the transaction log.
pub const TXN_PARTITIONS_MAX: usize = 2_500;
pub const TXN_GROUPS_MAX: usize = 50;
/// Longest transactional id accepted (Kafka bounds it by the request size).
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = 4096;
/// Kafka's `transaction.max.timeout.ms` default.
pub const TRANSACTION_MAX_TIMEOUT_MS_DEFAULT: i32 = 900_000;
/// Kafka's `transaction.abort.timed.out.transaction.cleanup.interval.ms` is
/// 10 s; a shorter check lets a short `transaction.timeout.ms` act promptly.
pub const ABORT_CHECK_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Kafka's `transactional.id.expiration.ms` default (7 days).
pub const TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT: i64 = 604_800_000;
/// Most transactional ids one check expires: bounds the tombstones one
/// write carries (ids are at most `TRANSACTIONAL_ID_BYTES_MAX`); the rest
/// expire at the next check.
pub const EXPIRE_BATCH_MAX: usize = 1_000;

// Topic names are at most 249 bytes, group ids GROUP_ID_BYTES_MAX.
const _: () = assert!(
    TXN_PARTITIONS_MAX * (4 + 249 + 4)
        + TXN_GROUPS_MAX * (4 + crate::group::GROUP_ID_BYTES_MAX)
        + 128
        < crate::group::log::RECORD_BYTES_MAX
);

#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// transaction.max.timeout.ms
    pub max_timeout_ms: i32,
    /// How often open transactions are checked against their timeout.
    pub abort_check_interval_ms: u64,
    /// transactional.id.expiration.ms: how long an id with no transaction
    /// open is kept after its last update.
    pub id_expiration_ms: i64,
    pub log_compact_bytes: u64,
    pub log_compact_records: u64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: TRANSACTION_MAX_TIMEOUT_MS_DEFAULT,
            abort_check_interval_ms: ABORT_CHECK_INTERVAL_MS_DEFAULT,
            id_expiration_ms: TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT,
            log_compact_bytes: 16 << 20,
            log_compact_records: 100_000,
        }
    }
}

/// A decided transaction whose markers are owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The epoch the markers carry.
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
    pub partitions: Vec<TxnPartition>,
    pub groups: Vec<String>,
}

/// What InitProducerId gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Ready {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// The id had an open transaction: it is fenced and being aborted; write
    /// the markers, complete it and ask again.
    AbortFirst(Completion),
}

/// What EndTxn gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Decided and durable: write the markers, then [`TxnCoordinator::complete`].
    Prepared(Completion),
    /// Nothing more to do (a retry of a completed EndTxn, or an empty V2 abort).
    Done {
        producer_id: i64,
        producer_epoch: i16,
    },
}

/// A transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

/// Which transactions ListTransactions wants; empty filters match all.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub states: Vec<TxnState>,
    pub producer_ids: Vec<i64>,
    /// KIP-994: only transactions open longer than this (-1: any).
    pub duration_ms_min: i64,
}

struct Entry {
    meta: TxnMetadata,
    /// A transition is being written; `None` once the id is in the log.
    pending: bool,
}

pub struct TxnCoordinator {
    config: TxnConfig,
    log: Rc<GroupLog>,
    txns: RefCell<HashMap<String, Entry>>,
    coordinator_epoch: i32,
    closed: Cell<bool>,
    this: Weak<TxnCoordinator>,
}

fn log_error(error: GroupLogError) -> TxnError {
    match error {
        GroupLogError::Backlogged => TxnError::RequestTimedOut,
        GroupLogError::Closed => TxnError::NotCoordinator,
        other => {
            tracing::error!(error = %other, "transaction log write failed");
            TxnError::StorageError
        }
    }
}

impl TxnCoordinator {
    /// Opens the log in `dir`, rebuilds every transactional id and raises the
    /// coordinator epoch. Prepared transactions are left for [`Self::prepared`].
    pub async fn open(dir: &Path, config: TxnConfig) -> Result<Rc<TxnCoordinator>, GroupLogError> {
        let log_config = GroupLogConfig {
            compact_bytes: config.log_compact_bytes,
            compact_records: config.log_compact_records,
        };
        let log = Rc::new(GroupLog::open_file(dir, TXN_LOG_FILE, log_config).await?);
        let (txns, last_epoch) = log.with_live(|live| {
            let mut txns = HashMap::new();
            let mut epoch = -1;
            for (key, value) in live {
                match Key::decode(key)? {
                    Key::Txn { transactional_id } => {
                        let meta = decode_txn(value)?;
                        txns.insert(
                            transactional_id,
                            Entry {
                                meta,
                                pending: false,
                            },
                        );
                    }
                    Key::CoordinatorEpoch => epoch = decode_epoch(value)?,
                }
            }
            Ok::<_, GroupLogError>((txns, epoch))
        })?;
        let coordinator_epoch = last_epoch.saturating_add(1);
        let seq = log.enqueue(
            Key::CoordinatorEpoch.encode(),
            Some(encode_epoch(coordinator_epoch)),
        )?;
        log.sync(seq).await?;
        Ok(Rc::new_cyclic(|this| TxnCoordinator {
            config,
            log,
            txns: RefCell::new(txns),
            coordinator_epoch,
            closed: Cell::new(false),
            this: this.clone(),
        }))
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    /// The transactional ids this shard holds.
    pub fn txn_count(&self) -> usize {
        self.txns.borrow().len()
    }

    /// A copy of what the coordinator knows of `transactional_id`.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnMetadata, TxnError> {
        self.txns
            .borrow()
            .get(transactional_id)
            .map(|entry| entry.meta.clone())
            .ok_or(TxnError::TransactionalIdNotFound)
    }

    pub fn list(&self, filter: &ListFilter) -> Vec<ListedTxn> {
        let now = now_ms();
        let txns = self.txns.borrow();
        let mut listed: Vec<ListedTxn> = txns
            .iter()
            .filter(|(_, e)| filter.states.is_empty() || filter.states.contains(&e.meta.state))
            .filter(|(_, e)| {
                filter.producer_ids.is_empty() || filter.producer_ids.contains(&e.meta.producer_id)
            })
            .filter(|(_, e)| {
                filter.duration_ms_min < 0
                    || (e.meta.state == TxnState::Ongoing
                        && now.saturating_sub(e.meta.txn_start_ms) > filter.duration_ms_min)
            })
            .map(|(id, e)| ListedTxn {
                transactional_id: id.clone(),
                producer_id: e.meta.producer_id,
                state: e.meta.state,
            })
            .collect();
        listed.sort_unstable_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        listed
    }

    /// The prepared transactions whose markers are owed (after a restart).
    pub fn prepared(&self) -> Vec<Completion> {
        let txns = self.txns.borrow();
        txns.iter()
            .filter(|(_, e)| e.meta.state.is_prepared() && !e.pending)
            .map(|(id, e)| self.completion(id, &e.meta))
            .collect()
    }

    /// Ongoing transactions past their `transaction.timeout.ms`.
    pub fn timed_out(&self, now_ms: i64) -> Vec<String> {
        let txns = self.txns.borrow();
        txns.iter()
            .filter(|(_, e)| !e.pending && e.meta.timed_out(now_ms))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Removes the transactional ids idle past `transactional.id.expiration.ms`
    /// with no transaction in flight (Kafka's `removeExpiredTransactionalIds`):
    /// a tombstone in the log for each, so they stay gone after a restart or
    /// a compaction, then out of memory. Returns how many expired.
    pub async fn expire_idle(&self, now_ms: i64) -> usize {
        if self.closed.get() {
            return 0;
        }
        let expired: Vec<String> = {
            let mut txns = self.txns.borrow_mut();
            let mut expired = Vec::new();
            for (id, entry) in txns.iter_mut() {
                if expired.len() == EXPIRE_BATCH_MAX {
                    break;
                }
                if !entry.pending && entry.meta.expired(now_ms, self.config.id_expiration_ms) {
                    entry.pending = true;
                    expired.push(id.clone());
                }
            }
            expired
        };
        if expired.is_empty() {
            return 0;
        }
        let Some(this) = self.this.upgrade() else {
            return 0;
        };
        // Its own task, as `persist`: memory follows the log even if the
        // caller is dropped.
        let removed = glommio::spawn_local(async move {
            let tombstones = expired
                .iter()
                .map(|id| {
                    let key = Key::Txn {
                        transactional_id: id.clone(),
                    };
                    (key.encode(), None)
                })
                .collect();
            let durable = match this.log.enqueue_all(tombstones) {
                Ok(seqs) => match seqs.last() {
                    Some(&seq) => this.log.sync(seq).await,
                    None => Ok(()),
                },
                Err(error) => Err(error),
            };
            let mut txns = this.txns.borrow_mut();
            if let Err(error) = durable {
                tracing::warn!(%error, "could not expire idle transactional ids");
                for id in &expired {
                    if let Some(entry) = txns.get_mut(id) {
                        entry.pending = false;
                    }
                }
                return 0;
            }
            for id in &expired {
                tracing::info!(transactional_id = %id, "transactional id expired");
                txns.remove(id);
            }
            expired.len()
        })
        .detach()
        .await;
        removed.unwrap_or(0)
    }

    fn completion(&self, transactional_id: &str, meta: &TxnMetadata) -> Completion {
        debug_assert!(meta.state.is_prepared());
        Completion {
            transactional_id: transactional_id.to_string(),
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            coordinator_epoch: self.coordinator_epoch,
            commit: meta.state == TxnState::PrepareCommit,
            partitions: meta.partitions.iter().cloned().collect(),
            groups: meta.groups.iter().cloned().collect(),
        }
    }

    /// Kafka's `validateTransactionTimeoutMs` plus the id checks.
    fn validate_init(&self, transactional_id: &str, timeout_ms: i32) -> Result<(), TxnError> {
        if self.closed.get() {
            return Err(TxnError::NotCoordinator);
        }
        if transactional_id.is_empty() || transactional_id.len() > TRANSACTIONAL_ID_BYTES_MAX {
            return Err(TxnError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        Ok(())
    }

    /// InitProducerId for a transactional id. `expected` is the producer id
    /// and epoch the client has (KIP-360, v3+); `fresh_id` draws a new
    /// producer id when one is needed (a new id, or an exhausted epoch).
    pub async fn init_producer_id<F, Fut>(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_id: F,
    ) -> Result<InitOutcome, TxnError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<i64, TxnError>>,
    {
        self.validate_init(transactional_id, timeout_ms)?;
        let needs_id = match self.txns.borrow().get(transactional_id) {
            None => true,
            Some(e) => {
                e.meta.state == TxnState::Dead
                    || (TxnMetadata::epoch_exhausted(e.meta.producer_epoch)
                        && e.meta.state != TxnState::Ongoing)
            }
        };
        let fresh = if needs_id {
            Some(fresh_id().await?)
        } else {
            None
        };
        let now = now_ms();
        let (next, outcome) = {
            let mut txns = self.txns.borrow_mut();
            let entry = txns
                .entry(transactional_id.to_string())
                .or_insert_with(|| Entry {
                    meta: TxnMetadata::new(fresh.unwrap_or(NO_PRODUCER_ID), timeout_ms, now),
                    pending: false,
                });
            if entry.pending {
                return Err(TxnError::ConcurrentTransactions);
            }
            if entry.meta.state == TxnState::Dead {
                let Some(id) = fresh else {
                    return Err(TxnError::ConcurrentTransactions);
                };
                entry.meta = TxnMetadata::new(id, timeout_ms, now);
            }
            match self.init_transition(
                transactional_id,
                &entry.meta,
                timeout_ms,
                expected,
                fresh,
                now,
            )? {
                Some((next, outcome)) => {
                    entry.pending = true;
                    (next, outcome)
                }
                None => {
                    return Ok(InitOutcome::Ready {
                        producer_id: entry.meta.producer_id,
                        producer_epoch: entry.meta.producer_epoch,
                    })
                }
            }
        };
        self.persist(transactional_id, next).await?;
        Ok(outcome)
    }

    /// Kafka's `prepareInitProducerIdTransit`: the next metadata and the
    /// answer, or `None` to answer the current id and epoch unchanged.
    fn init_transition(
        &self,
        transactional_id: &str,
        meta: &TxnMetadata,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh: Option<i64>,
        now: i64,
    ) -> Result<Option<(TxnMetadata, InitOutcome)>, TxnError> {
        let valid_expected = |(id, epoch): (i64, i16)| {
            meta.producer_epoch == NO_EPOCH
                || id == meta.producer_id
                || (id == meta.last_producer_id && TxnMetadata::epoch_exhausted(epoch))
        };
        if !expected.is_none_or(valid_expected) {
            return Err(TxnError::ProducerFenced);
        }
        let mut next = meta.clone();
        next.last_update_ms = now;
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // Fence the current producer and abort its transaction; the
                // caller completes it and asks again, so the new producer
                // gets the epoch after the fence.
                next.producer_epoch = fence_epoch(meta.producer_epoch);
                next.last_producer_epoch = NO_EPOCH;
                next.state = TxnState::PrepareAbort;
                let completion = self.completion(transactional_id, &next);
                Ok(Some((next, InitOutcome::AbortFirst(completion))))
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                let exhausted = TxnMetadata::epoch_exhausted(meta.producer_epoch);
                if exhausted && expected.is_none_or(|(_, epoch)| epoch == meta.producer_epoch) {
                    let Some(new_id) = fresh else {
                        return Err(TxnError::ConcurrentTransactions);
                    };
                    next.last_producer_id = meta.producer_id;
                    next.last_producer_epoch = if expected.is_some() {
                        meta.producer_epoch
                    } else {
                        NO_EPOCH
                    };
                    next.producer_id = new_id;
                    next.producer_epoch = 0;
                } else {
                    match expected {
                        None => {
                            next.producer_epoch = meta.producer_epoch + 1;
                            next.last_producer_epoch = NO_EPOCH;
                        }
                        Some((_, epoch))
                            if meta.producer_epoch == NO_EPOCH || epoch == meta.producer_epoch =>
                        {
                            next.producer_epoch = meta.producer_epoch + 1;
                            next.last_producer_epoch = meta.producer_epoch;
                        }
                        // A retry of a bump whose answer was lost.
                        Some((_, epoch)) if epoch == meta.last_producer_epoch => return Ok(None),
                        Some(_) => return Err(TxnError::ProducerFenced),
                    }
                }
                next.timeout_ms = timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.groups.clear();
                next.txn_start_ms = -1;
                next.v2 = false;
                let outcome = InitOutcome::Ready {
                    producer_id: next.producer_id,
                    producer_epoch: next.producer_epoch,
                };
                Ok(Some((next, outcome)))
            }
        }
    }

    /// The checks every in-transaction request makes (Kafka's
    /// AddPartitionsToTxn order): the id, the producer and its epoch, then
    /// a transition in flight or markers being written.
    fn check_producer(
        entry: Option<&Entry>,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&TxnMetadata, TxnError> {
        let Some(entry) = entry else {
            return Err(TxnError::InvalidProducerIdMapping);
        };
        if entry.pending {
            return Err(TxnError::ConcurrentTransactions);
        }
        let meta = &entry.meta;
        if meta.producer_id != producer_id || meta.state == TxnState::Dead {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        if meta.state.is_prepared() {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(meta)
    }

    /// AddPartitionsToTxn, AddOffsetsToTxn and the implicit adds of KIP-890
    /// (`v2`: Produce v12+, TxnOffsetCommit v5+): opens the transaction if
    /// needed and adds what is not in it yet. Answered once durable.
    pub async fn add(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TxnPartition],
        groups: &[String],
        v2: bool,
    ) -> Result<(), TxnError> {
        if self.closed.get() {
            return Err(TxnError::NotCoordinator);
        }
        let next = {
            let mut txns = self.txns.borrow_mut();
            let meta = Self::check_producer(txns.get(transactional_id), producer_id, epoch)?;
            let has_all = meta.state == TxnState::Ongoing
                && partitions.iter().all(|p| meta.partitions.contains(p))
                && groups.iter().all(|g| meta.groups.contains(g));
            if has_all {
                return Ok(());
            }
            let mut next = meta.clone();
            let now = now_ms();
            if meta.state != TxnState::Ongoing {
                next.state = TxnState::Ongoing;
                next.txn_start_ms = now;
                next.partitions.clear();
                next.groups.clear();
                next.v2 = v2;
            }
            next.last_update_ms = now;
            next.partitions.extend(partitions.iter().cloned());
            next.groups.extend(groups.iter().cloned());
            if next.partitions.len() > TXN_PARTITIONS_MAX || next.groups.len() > TXN_GROUPS_MAX {
                return Err(TxnError::InvalidRequest);
            }
            if let Some(entry) = txns.get_mut(transactional_id) {
                entry.pending = true;
            }
            next
        };
        self.persist(transactional_id, next).await
    }

    /// KIP-890 verification (AddPartitionsToTxn v4+ `verify_only`, and a
    /// transactional Produce below v12): whether each partition is in the
    /// producer's ongoing transaction.
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TxnPartition],
    ) -> Result<Vec<bool>, TxnError> {
        let txns = self.txns.borrow();
        let meta = Self::check_producer(txns.get(transactional_id), producer_id, epoch)?;
        let ongoing = meta.state == TxnState::Ongoing;
        Ok(partitions
            .iter()
            .map(|p| ongoing && meta.partitions.contains(p))
            .collect())
    }

    /// Whether `group` is in the producer's ongoing transaction (TxnOffsetCommit below v5).
    pub fn verify_group(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<bool, TxnError> {
        let txns = self.txns.borrow();
        let meta = Self::check_producer(txns.get(transactional_id), producer_id, epoch)?;
        Ok(meta.state == TxnState::Ongoing && meta.groups.contains(group))
    }

    /// EndTxn (Kafka's `endTransaction`). `v2` (EndTxn v5+, KIP-890) bumps
    /// the epoch at every commit and abort; at the last epoch the next
    /// transaction gets a fresh producer id from `fresh_id`.
    pub async fn end_txn<F, Fut>(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        v2: bool,
        fresh_id: F,
    ) -> Result<EndOutcome, TxnError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<i64, TxnError>>,
    {
        if self.closed.get() {
            return Err(TxnError::NotCoordinator);
        }
        let needs_id = v2
            && self.txns.borrow().get(transactional_id).is_some_and(|e| {
                TxnMetadata::epoch_exhausted(e.meta.producer_epoch.saturating_add(1))
            });
        let fresh = if needs_id {
            Some(fresh_id().await?)
        } else {
            None
        };
        let (next, outcome) = {
            let mut txns = self.txns.borrow_mut();
            let Some(entry) = txns.get_mut(transactional_id) else {
                return Err(TxnError::InvalidProducerIdMapping);
            };
            match self.end_transition(
                transactional_id,
                entry,
                producer_id,
                epoch,
                commit,
                v2,
                fresh,
            )? {
                Ok(done) => return Ok(done),
                Err(next) => {
                    entry.pending = true;
                    let outcome = if next.state.is_prepared() {
                        EndOutcome::Prepared(self.completion(transactional_id, &next))
                    } else {
                        EndOutcome::Done {
                            producer_id: next.producer_id,
                            producer_epoch: next.producer_epoch,
                        }
                    };
                    (next, outcome)
                }
            }
        };
        self.persist(transactional_id, next).await?;
        Ok(outcome)
    }

    /// The next metadata to write (`Err`), or an answer without a write (`Ok`).
    #[allow(clippy::too_many_arguments)]
    fn end_transition(
        &self,
        transactional_id: &str,
        entry: &Entry,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        v2: bool,
        fresh: Option<i64>,
    ) -> Result<Result<EndOutcome, TxnMetadata>, TxnError> {
        let meta = &entry.meta;
        let (prepared, completed) = if commit {
            (TxnState::PrepareCommit, TxnState::CompleteCommit)
        } else {
            (TxnState::PrepareAbort, TxnState::CompleteAbort)
        };
        // KIP-890: a retry of a V2 EndTxn carries the epoch before its bump.
        let v2_retry = v2
            && meta.producer_id == producer_id
            && meta.last_producer_epoch == epoch
            && meta.producer_epoch == epoch.saturating_add(1);
        if v2_retry && meta.state == completed {
            return Ok(Ok(EndOutcome::Done {
                producer_id: meta.producer_id,
                producer_epoch: meta.producer_epoch,
            }));
        }
        if v2_retry && meta.state == prepared {
            return Err(TxnError::ConcurrentTransactions);
        }
        if meta.producer_id != producer_id || meta.state == TxnState::Dead {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        if entry.pending {
            return Err(TxnError::ConcurrentTransactions);
        }
        let mut next = meta.clone();
        next.last_update_ms = now_ms();
        match meta.state {
            TxnState::Ongoing => {
                next.state = prepared;
                next.v2 = next.v2 || v2;
                if v2 {
                    bump_for_next_txn(&mut next, fresh)?;
                }
                Ok(Err(next))
            }
            // KIP-890: a V2 producer may abort when nothing is open (the
            // epoch is bumped all the same); its retries were answered above.
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                if v2 && !commit =>
            {
                next.state = TxnState::CompleteAbort;
                next.v2 = true;
                bump_for_next_txn(&mut next, fresh)?;
                if let Some(id) = take_next_id(&mut next) {
                    next.last_producer_id = next.producer_id;
                    next.producer_id = id;
                    next.producer_epoch = 0;
                }
                Ok(Err(next))
            }
            TxnState::CompleteCommit | TxnState::CompleteAbort if v2 => {
                tracing::debug!(
                    transactional_id,
                    commit,
                    "V2 commit without an open transaction"
                );
                Err(TxnError::InvalidTxnState)
            }
            state if state == completed => Ok(Ok(EndOutcome::Done {
                producer_id: meta.producer_id,
                producer_epoch: meta.producer_epoch,
            })),
            state if state == prepared => Err(TxnError::ConcurrentTransactions),
            state => {
                tracing::debug!(
                    transactional_id,
                    ?state,
                    commit,
                    "EndTxn in an invalid state"
                );
                Err(TxnError::InvalidTxnState)
            }
        }
    }

    /// Records that the markers of `completion` are written everywhere: the
    /// transaction is CompleteCommit / CompleteAbort. Returns the producer id
    /// and epoch the producer continues with.
    pub async fn complete(&self, completion: &Completion) -> Result<(i64, i16), TxnError> {
        let next = {
            let mut txns = self.txns.borrow_mut();
            let Some(entry) = txns.get_mut(&completion.transactional_id) else {
                return Err(TxnError::InvalidProducerIdMapping);
            };
            let meta = &entry.meta;
            let expected = if completion.commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            if meta.state != expected
                || meta.producer_id != completion.producer_id
                || meta.producer_epoch != completion.producer_epoch
            {
                // Completed already (a second driver of the same transaction).
                return Ok((meta.producer_id, meta.producer_epoch));
            }
            if entry.pending {
                return Err(TxnError::ConcurrentTransactions);
            }
            let mut next = meta.clone();
            next.state = if completion.commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            };
            if let Some(id) = take_next_id(&mut next) {
                next.last_producer_id = next.producer_id;
                next.producer_id = id;
                next.producer_epoch = 0;
            }
            next.partitions.clear();
            next.groups.clear();
            next.txn_start_ms = -1;
            next.last_update_ms = now_ms();
            entry.pending = true;
            next
        };
        let answer = (next.producer_id, next.producer_epoch);
        self.persist(&completion.transactional_id, next).await?;
        Ok(answer)
    }

    /// Aborts a transaction past its timeout, fencing its producer (Kafka's
    /// `abortTimedOutTransactions`). `None` when it is no longer ongoing.
    pub async fn abort_timed_out(&self, transactional_id: &str) -> Option<Completion> {
        let next = {
            let mut txns = self.txns.borrow_mut();
            let entry = txns.get_mut(transactional_id)?;
            if entry.pending || !entry.meta.timed_out(now_ms()) {
                return None;
            }
            let mut next = entry.meta.clone();
            next.producer_epoch = fence_epoch(next.producer_epoch);
            next.last_producer_epoch = NO_EPOCH;
            next.state = TxnState::PrepareAbort;
            next.last_update_ms = now_ms();
            entry.pending = true;
            next
        };
        let completion = self.completion(transactional_id, &next);
        match self.persist(transactional_id, next).await {
            Ok(()) => Some(completion),
            Err(error) => {
                tracing::warn!(transactional_id, %error, "could not abort a timed-out transaction");
                None
            }
        }
    }

    /// Writes `next` as the id's metadata and applies it once durable. The
    /// caller marked the entry pending; it is cleared either way. Runs as
    /// its own task, so a dropped request still leaves memory matching the log.
    async fn persist(&self, transactional_id: &str, next: TxnMetadata) -> Result<(), TxnError> {
        let key = Key::Txn {
            transactional_id: transactional_id.to_string(),
        }
        .encode();
        let Some(this) = self.this.upgrade() else {
            return Err(TxnError::NotCoordinator);
        };
        let id = transactional_id.to_string();
        let written = glommio::spawn_local(async move {
            let durable = match this.log.enqueue(key, Some(encode_txn(&next))) {
                Ok(seq) => this.log.sync(seq).await.map_err(log_error),
                Err(error) => Err(log_error(error)),
            };
            let mut txns = this.txns.borrow_mut();
            if let Some(entry) = txns.get_mut(&id) {
                entry.pending = false;
                if durable.is_ok() {
                    entry.meta = next;
                } else if entry.meta.producer_epoch == NO_EPOCH {
                    // A new id that never reached the log.
                    txns.remove(&id);
                }
            }
            durable
        })
        .detach()
        .await;
        written.unwrap_or(Err(TxnError::NotCoordinator))
    }

    /// Refuses further requests and flushes the log.
    pub async fn close(&self) -> Result<(), GroupLogError> {
        self.closed.set(true);
        self.log.close().await
    }
}

/// The epoch that fences the current producer (Kafka's
/// `prepareFenceProducerEpoch`; the last epoch is kept for this).
fn fence_epoch(epoch: i16) -> i16 {
    if epoch < i16::MAX {
        epoch + 1
    } else {
        epoch
    }
}

/// The V2 bump (KIP-890): the markers carry the next epoch, and the producer
/// continues with it; at the last usable epoch it continues with a fresh id
/// (`next_producer_id`, taken when the transaction completes).
fn bump_for_next_txn(next: &mut TxnMetadata, fresh: Option<i64>) -> Result<(), TxnError> {
    next.last_producer_epoch = next.producer_epoch;
    next.producer_epoch = fence_epoch(next.producer_epoch);
    if TxnMetadata::epoch_exhausted(next.producer_epoch) {
        let Some(id) = fresh else {
            return Err(TxnError::ConcurrentTransactions);
        };
        next.next_producer_id = id;
    }
    Ok(())
}

fn take_next_id(next: &mut TxnMetadata) -> Option<i64> {
    let id = next.next_producer_id;
    next.next_producer_id = NO_PRODUCER_ID;
    (id >= 0).then_some(id)
}
