//! Per-partition producer state for idempotent producers (KIP-98, KIP-360):
//! producer id -> epoch and the sequence ranges of its last
//! [`BATCHES_RETAINED`] batches, checked before every append.
//!
//! The rules are Kafka's (`ProducerStateManager` / `ProducerAppendInfo`):
//! - a batch whose epoch and sequence range match one of the last batches is
//!   a retry: it is answered with the original offsets and not stored again;
//! - an older epoch is fenced (`INVALID_PRODUCER_EPOCH`);
//! - a new epoch must start at sequence 0, the current one must continue
//!   at last sequence + 1 (wrapping at `i32::MAX`), else `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//! - a producer the partition has no record of (never seen, or expired
//!   after `producer.id.expiration.ms`) may only start at sequence 0, else
//!   `UNKNOWN_PRODUCER_ID`, so the client resets its sequences (KIP-360).
//!
//! Transactions (KIP-98) add, per producer, the first offset of its open
//! transaction on this partition: set by its first transactional batch,
//! cleared by the transaction's marker. The smallest of them bounds the last
//! stable offset. A marker also carries the producer's epoch, which Kafka's
//! Transactions V2 (KIP-890) bumps at the end of every transaction, and the
//! coordinator's epoch, which fences a stale coordinator.
//!
//! State is kept on the partition's shard, snapshotted in Kafka's format
//! ([`snapshot`]) and rebuilt from batch headers on open.

pub mod snapshot;

use std::collections::{BTreeMap, HashMap};

use super::batch::{self, BatchHeader};
use super::control::{self, StoredMarker, TxnResult};
use super::types::Offset;

/// Batches per producer kept for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`, and the most in-flight requests an idempotent
/// producer may have).
pub const BATCHES_RETAINED: usize = 5;
/// Kafka's `RecordBatch.NO_PRODUCER_ID`; ids at or below it are not idempotent.
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Kafka's `producer.id.expiration.ms` default: one day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 86_400_000;

/// Why an idempotent batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: sequence {found} does not follow {last}")]
    OutOfOrderSequence {
        producer_id: i64,
        last: i32,
        found: i32,
    },
    /// A retry of a batch stored before whose offsets are no longer known.
    #[error("producer {producer_id}: sequence {found} was stored before (last {last})")]
    DuplicateSequence {
        producer_id: i64,
        last: i32,
        found: i32,
    },
    #[error(
        "producer {producer_id} is unknown to this partition and sent sequence {found}, not 0"
    )]
    UnknownProducerId { producer_id: i64, found: i32 },
    #[error("producer {producer_id}: invalid base sequence {found}")]
    InvalidSequence { producer_id: i64, found: i32 },
    /// Kafka's `InvalidTxnStateException`: a plain batch from a producer
    /// whose transaction on this partition is still open.
    #[error("producer {producer_id} sent a non-transactional batch inside its open transaction")]
    NotTransactional { producer_id: i64 },
    /// Kafka's `TransactionCoordinatorFencedException`: a marker from an
    /// older coordinator than the last one this producer's state saw.
    #[error("producer {producer_id}: coordinator epoch {found} is older than {current}")]
    CoordinatorFenced {
        producer_id: i64,
        found: i32,
        current: i32,
    },
}

/// One stored batch as duplicate detection remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// The batch's max timestamp (or its LogAppendTime).
    pub timestamp_ms: i64,
}

const NO_BATCH: BatchMetadata = BatchMetadata {
    first_seq: -1,
    last_seq: -1,
    first_offset: Offset(-1),
    last_offset: Offset(-1),
    timestamp_ms: -1,
};

/// What a partition knows of one producer. `Copy` and fixed-size, so
/// checking an append never allocates per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The last batches, oldest first; `len` of them are set.
    batches: [BatchMetadata; BATCHES_RETAINED],
    len: u8,
    /// The last batch's timestamp: what expiry compares against.
    pub last_timestamp_ms: i64,
    /// The coordinator epoch of the last transaction marker (-1: none yet).
    pub coordinator_epoch: i32,
    /// The first offset of this producer's open transaction on the
    /// partition, if one is open (Kafka's `currentTxnFirstOffset`).
    pub current_txn_first_offset: Option<Offset>,
}

impl ProducerEntry {
    pub fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: [NO_BATCH; BATCHES_RETAINED],
            len: 0,
            last_timestamp_ms: -1,
            coordinator_epoch: -1,
            current_txn_first_offset: None,
        }
    }

    pub fn batches(&self) -> &[BatchMetadata] {
        &self.batches[..usize::from(self.len)]
    }

    pub fn last_batch(&self) -> Option<&BatchMetadata> {
        self.batches().last()
    }

    /// The cached batch with exactly this epoch and sequence range.
    fn duplicate_of(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches()
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }

    /// Records a stored batch; a new epoch forgets the old epoch's batches.
    pub fn push(&mut self, epoch: i16, batch: BatchMetadata) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.len = 0;
        }
        if usize::from(self.len) == BATCHES_RETAINED {
            self.batches.copy_within(1.., 0);
            self.len -= 1;
        }
        self.batches[usize::from(self.len)] = batch;
        self.len += 1;
        self.last_timestamp_ms = batch.timestamp_ms;
        debug_assert!(usize::from(self.len) <= BATCHES_RETAINED);
    }

    /// Takes `epoch` (a marker's); a new epoch forgets the old epoch's
    /// batches, so the producer starts again at sequence 0 (KIP-360, KIP-890).
    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.len = 0;
        }
    }

    /// Opens a transaction at `first_offset` for a transactional batch, or
    /// refuses a plain batch while one is open (Kafka's ProducerAppendInfo).
    fn track_transaction(
        &mut self,
        producer_id: i64,
        transactional: bool,
        first_offset: Offset,
    ) -> Result<(), ProducerError> {
        match (self.current_txn_first_offset, transactional) {
            (Some(_), false) => Err(ProducerError::NotTransactional { producer_id }),
            (None, true) => {
                self.current_txn_first_offset = Some(first_offset);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A transaction a marker ended on this partition (Kafka's `CompletedTxn`):
/// what the transaction index records for an aborted one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: Offset,
    /// The marker's offset.
    pub last_offset: Offset,
    pub result: TxnResult,
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 (Kafka's
/// `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// `sequence - decrement`, the inverse of [`increment_sequence`].
pub fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX - (decrement - sequence) + 1
    } else {
        sequence - decrement
    }
}

/// Whether `next` directly follows `last` (wrapping at `i32::MAX`).
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// What checking one append found.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendCheck {
    /// Store it; afterwards [`ProducerStateTable::commit`] these updates
    /// (empty for batches without a producer id: no allocation).
    Fresh(Vec<(i64, ProducerEntry)>),
    /// A retry of a stored batch: answer with its offsets, store nothing.
    Duplicate(BatchMetadata),
}

/// The producers of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions by first offset: the first one bounds the last
    /// stable offset. Kept equal to the entries' `current_txn_first_offset`.
    open_transactions: BTreeMap<Offset, i64>,
}

impl ProducerStateTable {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    /// Sets a producer's entry, keeping the open transactions in step.
    pub fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        let old = self.producers.insert(producer_id, entry);
        let was = old.and_then(|old| old.current_txn_first_offset);
        if was != entry.current_txn_first_offset {
            if let Some(first) = was {
                self.open_transactions.remove(&first);
            }
            if let Some(first) = entry.current_txn_first_offset {
                self.open_transactions.insert(first, producer_id);
            }
        }
        debug_assert!(self.open_transactions.len() <= self.producers.len());
    }

    /// The first offset of the oldest open transaction: the last stable
    /// offset is this or the high watermark, whichever is lower.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.open_transactions.keys().next().copied()
    }

    /// Open transactions as (first offset, producer id), oldest first.
    pub fn open_transactions(&self) -> impl Iterator<Item = (Offset, i64)> + '_ {
        self.open_transactions
            .iter()
            .map(|(first, id)| (*first, *id))
    }

    /// Checks a transaction marker for `producer_id` written at `offset`
    /// (Kafka's `appendEndTxnMarker`): an older producer epoch is fenced,
    /// an older coordinator epoch too. Returns the entry after the marker
    /// and the transaction it ends (none when no transaction was open);
    /// nothing changes until it is [`insert`](Self::insert)ed.
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: StoredMarker,
        offset: Offset,
        timestamp_ms: i64,
    ) -> Result<(ProducerEntry, Option<CompletedTxn>), ProducerError> {
        let current = self.producers.get(&producer_id);
        if let Some(current) = current {
            if producer_epoch < current.epoch {
                return Err(ProducerError::InvalidProducerEpoch {
                    producer_id,
                    epoch: producer_epoch,
                    current: current.epoch,
                });
            }
            if marker.coordinator_epoch < current.coordinator_epoch {
                return Err(ProducerError::CoordinatorFenced {
                    producer_id,
                    found: marker.coordinator_epoch,
                    current: current.coordinator_epoch,
                });
            }
        }
        let marked = MarkedProducer {
            producer_id,
            producer_epoch,
            marker,
            offset,
            timestamp_ms,
        };
        Ok(marked.apply(current))
    }

    /// Checks every batch of `records` (already validated) as if stored from
    /// `base_offset` on. Nothing changes until [`commit`](Self::commit).
    pub fn check(
        &self,
        records: &[u8],
        base_offset: Offset,
        log_append_time_ms: Option<i64>,
    ) -> Result<AppendCheck, ProducerError> {
        self.check_after(records, base_offset, log_append_time_ms, |_| None)
    }

    /// [`check`](Self::check) where `proposed` knows producers' entries
    /// newer than this table's: a Raft leader's proposals that are not in
    /// its log yet, so a retry of one is a duplicate too.
    pub fn check_after(
        &self,
        records: &[u8],
        base_offset: Offset,
        log_append_time_ms: Option<i64>,
        proposed: impl Fn(i64) -> Option<ProducerEntry>,
    ) -> Result<AppendCheck, ProducerError> {
        let mut staged: Vec<(i64, ProducerEntry)> = Vec::new();
        let mut offset = base_offset;
        for item in batch::BatchIter::new(records) {
            // Validated by the caller: a framing error here cannot happen.
            let Ok((header, _)) = item else { break };
            let first_offset = offset;
            offset += i64::from(header.last_offset_delta) + 1;
            if header.producer_id <= NO_PRODUCER_ID {
                continue;
            }
            let current = staged
                .iter()
                .find(|(id, _)| *id == header.producer_id)
                .map(|(_, entry)| *entry)
                .or_else(|| proposed(header.producer_id))
                .or_else(|| self.producers.get(&header.producer_id).copied());
            let current = current.as_ref();
            let batch = batch_metadata(&header, first_offset, log_append_time_ms)?;
            if let Some(duplicate) = check_batch(&header, &batch, current)? {
                return Ok(AppendCheck::Duplicate(duplicate));
            }
            let mut updated = current
                .copied()
                .unwrap_or_else(|| ProducerEntry::new(header.producer_epoch));
            updated.push(header.producer_epoch, batch);
            updated.track_transaction(
                header.producer_id,
                control::is_transactional(&header),
                first_offset,
            )?;
            match staged.iter_mut().find(|(id, _)| *id == header.producer_id) {
                Some((_, entry)) => *entry = updated,
                None => staged.push((header.producer_id, updated)),
            }
        }
        Ok(AppendCheck::Fresh(staged))
    }

    /// Applies the updates of a checked append once it is staged.
    pub fn commit(&mut self, updates: Vec<(i64, ProducerEntry)>) {
        for (producer_id, entry) in updates {
            self.insert(producer_id, entry);
        }
    }

    /// Replays a stored batch (recovery): no checks, the log is the truth.
    /// `marker` is what a control batch says (see [`control::read_marker`]);
    /// a transaction it ends is returned.
    pub fn replay(
        &mut self,
        header: &BatchHeader,
        marker: Option<StoredMarker>,
    ) -> Option<CompletedTxn> {
        if header.producer_id <= NO_PRODUCER_ID {
            return None;
        }
        let offset = Offset(header.base_offset);
        if control::is_control(header) {
            let marked = MarkedProducer {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                marker: marker?,
                offset,
                timestamp_ms: header.max_timestamp,
            };
            let (entry, completed) = marked.apply(self.producers.get(&header.producer_id));
            self.insert(header.producer_id, entry);
            return completed;
        }
        let batch = batch_metadata(header, offset, None).ok()?;
        let mut entry = self
            .producers
            .get(&header.producer_id)
            .copied()
            .unwrap_or_else(|| ProducerEntry::new(header.producer_epoch));
        entry.push(header.producer_epoch, batch);
        if control::is_transactional(header) && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(offset);
        }
        self.insert(header.producer_id, entry);
        None
    }

    /// Forgets producers whose last batch is `expiration_ms` or more older than
    /// `now_ms` (Kafka's `producer.id.expiration.ms`). A producer with an open
    /// transaction is kept: its marker is still to come. Returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }
}

/// A marker for one producer, about to be applied to its entry.
struct MarkedProducer {
    producer_id: i64,
    producer_epoch: i16,
    marker: StoredMarker,
    offset: Offset,
    timestamp_ms: i64,
}

impl MarkedProducer {
    /// The entry after the marker, and the transaction it ended if one was open.
    fn apply(&self, current: Option<&ProducerEntry>) -> (ProducerEntry, Option<CompletedTxn>) {
        let mut entry = current
            .copied()
            .unwrap_or_else(|| ProducerEntry::new(self.producer_epoch));
        let completed = entry
            .current_txn_first_offset
            .map(|first_offset| CompletedTxn {
                producer_id: self.producer_id,
                first_offset,
                last_offset: self.offset,
                result: self.marker.result,
            });
        entry.set_epoch(self.producer_epoch);
        entry.coordinator_epoch = self.marker.coordinator_epoch;
        entry.current_txn_first_offset = None;
        entry.last_timestamp_ms = self.timestamp_ms;
        (entry, completed)
    }
}

fn batch_metadata(
    header: &BatchHeader,
    first_offset: Offset,
    log_append_time_ms: Option<i64>,
) -> Result<BatchMetadata, ProducerError> {
    // Kafka's LogValidator: an idempotent batch must carry a sequence.
    if header.base_sequence < 0 {
        return Err(ProducerError::InvalidSequence {
            producer_id: header.producer_id,
            found: header.base_sequence,
        });
    }
    Ok(BatchMetadata {
        first_seq: header.base_sequence,
        last_seq: increment_sequence(header.base_sequence, header.last_offset_delta),
        first_offset,
        last_offset: first_offset + i64::from(header.last_offset_delta),
        timestamp_ms: log_append_time_ms.unwrap_or(header.max_timestamp),
    })
}

/// Kafka's epoch and sequence rules for one batch against what the partition
/// knows of its producer. `Ok(Some(_))` is a duplicate.
fn check_batch(
    header: &BatchHeader,
    batch: &BatchMetadata,
    current: Option<&ProducerEntry>,
) -> Result<Option<BatchMetadata>, ProducerError> {
    let producer_id = header.producer_id;
    let epoch = header.producer_epoch;
    let Some(current) = current else {
        if batch.first_seq != 0 {
            return Err(ProducerError::UnknownProducerId {
                producer_id,
                found: batch.first_seq,
            });
        }
        return Ok(None);
    };
    if epoch < current.epoch {
        return Err(ProducerError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current: current.epoch,
        });
    }
    if let Some(duplicate) = current.duplicate_of(epoch, batch.first_seq, batch.last_seq) {
        return Ok(Some(duplicate));
    }
    let last = current.last_batch().map_or(-1, |b| b.last_seq);
    let follows = if epoch != current.epoch {
        // KIP-360: a bumped epoch starts its sequences again at 0.
        batch.first_seq == 0
    } else if current.last_batch().is_none() {
        // The epoch is known but no batch is: Kafka asks for a reset.
        if batch.first_seq != 0 {
            return Err(ProducerError::UnknownProducerId {
                producer_id,
                found: batch.first_seq,
            });
        }
        true
    } else {
        in_sequence(last, batch.first_seq)
    };
    if !follows {
        // A batch of this epoch wholly at or below the last stored sequence
        // was stored before (sequences are taken only in order), though it
        // is not among the batches remembered: a state rebuilt from a
        // snapshot remembers only each producer's last one. Kafka's clients
        // take DUPLICATE_SEQUENCE_NUMBER as delivered; OUT_OF_ORDER would be
        // fatal to a librdkafka producer retrying after a leader's restart.
        let stored_before =
            epoch == current.epoch && batch.first_seq <= batch.last_seq && batch.last_seq <= last;
        if stored_before {
            return Err(ProducerError::DuplicateSequence {
                producer_id,
                last,
                found: batch.first_seq,
            });
        }
        return Err(ProducerError::OutOfOrderSequence {
            producer_id,
            last,
            found: batch.first_seq,
        });
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
