//! The partitions a shard owns, open or idle. An idle partition is only
//! registered: its log opens on its first read or write. So start-up and
//! topic creation touch no file per partition, and only partitions in use
//! hold a log in memory.
//!
//! A clean close marks each log's `partition.meta`, and a log that is only
//! read keeps that mark; after a crash, the logs that were written are the
//! only ones whose first opening scans their tail.
//!
//! A log left unused for a while is closed and its partition is idle again
//! (its memory given back; its next use opens it as the first one did).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use super::partitions::PartitionError;
use super::topics::{ReplicaRole, TopicTable};
use super::{PartitionId, Shard};
use crate::storage::{self, AppendLock, AppendTurn, LogConfig, PartitionLog, StorageOptions};

/// Partition logs opened at once by first reads and writes.
pub const OPENS_IN_FLIGHT_MAX: usize = 16;

/// Partition logs closed at once at shutdown (each syncs its segment, its
/// indexes and its partition.meta; concurrent syncs share the disk's flushes).
pub const CLOSES_IN_FLIGHT_MAX: usize = 64;

/// Directories made between yields when a topic change adds partitions.
const CREATES_BETWEEN_YIELDS: usize = 256;

/// One owned partition.
pub enum Slot {
    Open {
        log: Rc<PartitionLog>,
        /// Whether a read or write took the log since the last look for
        /// unused logs.
        used: bool,
    },
    /// Registered; its log opens on first use.
    Idle(Idle),
    /// A first read or write is opening it; the others wait for that,
    /// appends in the queue the log will use.
    Opening(AppendLock),
    /// Unused for a while, its log is closing (the closer holds a turn of
    /// its append queue); a use waits and opens it again, appends in turn.
    Closing(AppendLock),
}

/// What a caller of [`Shard::owned_log_to_append`] waits for.
enum Waiting {
    /// Its turn in the append queue of a log being opened or closed.
    Queue(AppendLock),
    /// The end of an opening or closing in flight (seen at this epoch).
    Opened(u64),
    /// Nothing: it opens the log, holding a turn of the queue.
    Open(Idle, AppendLock, AppendTurn),
}

pub struct Idle {
    pub config: LogConfig,
    /// Whether the directory may hold sealed segments, which retention and
    /// the cleaner must see (unknown for partitions found at start-up; a
    /// partition made by this process holds none until it is opened).
    pub may_hold_sealed: bool,
    /// The queue of appends that arrived while its log closed, which its
    /// next opening takes over.
    pub queue: Option<AppendLock>,
}

/// Per topic, the slot of each partition by [`PartitionId::index`] (`None`
/// where another shard owns it).
pub type PartitionSlots = std::collections::HashMap<Arc<str>, Vec<Option<Slot>>>;

impl Shard {
    fn partition_dir(&self, topic: &str, index: usize) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{index}"))
    }

    /// The partition's log if it is open now (no opening).
    pub(super) fn log(&self, topic: &str, partition: PartitionId) -> Option<Rc<PartitionLog>> {
        let logs = self.logs.borrow();
        match logs.get(topic)?.get(partition.index()?)?.as_ref()? {
            Slot::Open { log, .. } => Some(log.clone()),
            Slot::Idle(_) | Slot::Opening(_) | Slot::Closing(_) => None,
        }
    }

    /// Every open log of this shard.
    pub(super) fn open_logs(&self) -> Vec<Rc<PartitionLog>> {
        self.logs
            .borrow()
            .values()
            .flatten()
            .filter_map(|slot| match slot {
                Some(Slot::Open { log, .. }) => Some(log.clone()),
                _ => None,
            })
            .collect()
    }

    /// The partition's log, opened on first use.
    pub(super) async fn owned_log(
        &self,
        topic: &str,
        partition: PartitionId,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        Ok(self.owned_log_to_append(topic, partition, false).await?.0)
    }

    /// The partition's log, opened on first use, and for an append
    /// (`in_turn`) the turn it took while the log was opening: an append
    /// that had to wait keeps its place ahead of those that came after it.
    /// Without a turn, the caller's append joins the queue as it starts.
    pub(super) async fn owned_log_to_append(
        &self,
        topic: &str,
        partition: PartitionId,
        in_turn: bool,
    ) -> Result<(Rc<PartitionLog>, Option<AppendTurn>), PartitionError> {
        let index = partition.index().ok_or(PartitionError::NotReady)?;
        let mut turn: Option<AppendTurn> = None;
        loop {
            let waiting = {
                let mut logs = self.logs.borrow_mut();
                let slot = logs
                    .get_mut(topic)
                    .and_then(|slots| slots.get_mut(index))
                    .and_then(Option::as_mut)
                    .ok_or(PartitionError::NotReady)?;
                match slot {
                    Slot::Open { log, used } => {
                        *used = true;
                        // A turn taken in a queue an earlier, failed opening made
                        // orders nothing now.
                        let turn = turn.filter(|t| log.is_turn_of(t));
                        return Ok((log.clone(), turn));
                    }
                    Slot::Opening(queue) | Slot::Closing(queue)
                        if in_turn && !turn.as_ref().is_some_and(|t| queue.gave(t)) =>
                    {
                        Waiting::Queue(queue.clone())
                    }
                    Slot::Opening(_) | Slot::Closing(_) => Waiting::Opened(self.opened.epoch()),
                    Slot::Idle(idle) => {
                        // Appends that waited while the log closed keep their
                        // turns in its queue; the one holding a turn opens it.
                        let queue = idle.queue.clone().unwrap_or_default();
                        let mine = turn.take().filter(|t| queue.gave(t));
                        match mine.or_else(|| queue.try_turn()) {
                            None if in_turn => Waiting::Queue(queue),
                            None => Waiting::Opened(self.opened.epoch()),
                            Some(first) => {
                                match std::mem::replace(slot, Slot::Opening(queue.clone())) {
                                    Slot::Idle(idle) => Waiting::Open(idle, queue, first),
                                    other => {
                                        *slot = other;
                                        continue;
                                    }
                                }
                            }
                        }
                    }
                }
            };
            match waiting {
                Waiting::Queue(queue) => turn = Some(queue.turn().await),
                Waiting::Opened(seen) => self.opened.changed(seen).await,
                Waiting::Open(idle, queue, first) => {
                    self.openings.set(self.openings.get() + 1);
                    let opened = self.open_idle(topic, index, &idle.config, queue).await;
                    self.openings.set(self.openings.get() - 1);
                    let outcome = self.settle_opening(topic, index, idle, opened);
                    self.opened.notify_all();
                    return Ok((outcome?, Some(first).filter(|_| in_turn)));
                }
            }
        }
    }

    async fn open_idle(
        &self,
        topic: &str,
        index: usize,
        config: &LogConfig,
        queue: AppendLock,
    ) -> Result<Rc<PartitionLog>, storage::Error> {
        let _permit = self.open_permits.acquire_permit(1).await;
        let options = StorageOptions {
            allow_buffered_io: self.config.allow_buffered_io,
            producer_id_expiration_ms: self.config.producer_id_expiration_ms,
        };
        let dir = self.partition_dir(topic, index);
        let log =
            PartitionLog::open_in_order(dir, config.clone(), self.cache.clone(), options, queue)
                .await?;
        // The topic's config may have changed while the log was opening.
        if let Some(topic) = self.topics().get(topic) {
            let current = topic.config.log_config();
            if &current != config {
                log.set_config(current);
            }
        }
        Ok(log)
    }

    /// Puts the outcome of a first opening in its slot: the log, or the idle
    /// partition again after a failure (the next use tries again).
    fn settle_opening(
        &self,
        topic: &str,
        index: usize,
        idle: Idle,
        opened: Result<Rc<PartitionLog>, storage::Error>,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        let mut logs = self.logs.borrow_mut();
        let slot = logs
            .get_mut(topic)
            .and_then(|slots| slots.get_mut(index))
            .and_then(Option::as_mut);
        match (slot, opened) {
            (Some(slot), Ok(log)) => {
                *slot = Slot::Open {
                    log: log.clone(),
                    used: true,
                };
                Ok(log)
            }
            (Some(slot), Err(error)) => {
                tracing::error!(topic, partition = index, %error, "opening a partition failed");
                *slot = Slot::Idle(idle);
                Err(error.into())
            }
            (None, _) => Err(PartitionError::NotReady),
        }
    }

    /// Waits until no first opening (nor closing of an unused log) is in
    /// flight, so that a topic change never removes a directory a log is
    /// being opened or closed in.
    pub(super) async fn settle_openings(&self) {
        while self.openings.get() > 0 {
            let seen = self.opened.epoch();
            self.opened.changed(seen).await;
        }
    }

    /// Registers every partition of `table` this shard owns as idle (start-up).
    pub fn start_topics(&self, table: Arc<TopicTable>) {
        {
            let mut logs = self.logs.borrow_mut();
            for topic in table.iter() {
                let config = topic.config.log_config();
                let slots = logs.entry(topic.name.clone()).or_default();
                slots.resize_with(topic.partition_shards.len(), || None);
                for (index, &owner) in topic.partition_shards.iter().enumerate() {
                    if owner == self.id && topic.role(index) != ReplicaRole::Absent {
                        slots[index] = Some(Slot::Idle(Idle {
                            config: config.clone(),
                            may_hold_sealed: true,
                            queue: None,
                        }));
                    }
                }
            }
        }
        *self.topics.borrow_mut() = table;
    }

    /// Brings this shard's partitions in line with `table`: deletes logs of
    /// removed topics, applies changed configs, and registers partitions it
    /// now owns, each in a new directory. When a directory cannot be made,
    /// the ones made here are removed again and the table is not applied.
    pub async fn apply_topics(
        self: Rc<Self>,
        table: Arc<TopicTable>,
    ) -> Result<(), storage::Error> {
        self.settle_openings().await;
        let old = self.topics();
        // Deleted topics first, so a re-created topic starts from an empty directory.
        let removed: Vec<(Arc<str>, Vec<Option<Slot>>)> = {
            let mut logs = self.logs.borrow_mut();
            old.iter()
                .filter(|t| table.get(&t.name).is_none_or(|new| new.id != t.id))
                .map(|t| {
                    let slots = logs.remove(&t.name).unwrap_or_default();
                    (t.name.clone(), slots)
                })
                .collect()
        };
        for (name, slots) in removed {
            for (index, slot) in slots.into_iter().enumerate() {
                match slot {
                    Some(Slot::Open { log, .. }) => log.delete().await?,
                    Some(Slot::Idle(_)) => remove_dir(self.partition_dir(&name, index))?,
                    Some(Slot::Opening(_) | Slot::Closing(_)) | None => {}
                }
            }
            self.groups.remove_topic(&name).await;
        }
        let new = self.new_partitions(&old, &table);
        let created = self.create_dirs(&new).await?;
        *self.topics.borrow_mut() = table.clone();
        self.register(&old, &table, created);
        Ok(())
    }

    /// Partitions of `table` this shard owns that `old` did not have.
    fn new_partitions(&self, old: &TopicTable, table: &TopicTable) -> Vec<(Arc<str>, usize)> {
        let mut new = Vec::new();
        for topic in table.iter() {
            let known = old
                .get(&topic.name)
                .filter(|o| o.id == topic.id)
                .map_or(0, |o| o.partition_shards.len());
            for (index, &owner) in topic.partition_shards.iter().enumerate().skip(known) {
                if owner == self.id && topic.role(index) != ReplicaRole::Absent {
                    new.push((topic.name.clone(), index));
                }
            }
        }
        new
    }

    /// Makes the directories of `new` partitions and syncs the data
    /// directory once for all of them. Returns which ones this call made.
    async fn create_dirs(&self, new: &[(Arc<str>, usize)]) -> Result<Vec<bool>, storage::Error> {
        let mut made = Vec::with_capacity(new.len());
        for (i, (topic, index)) in new.iter().enumerate() {
            let dir = self.partition_dir(topic, *index);
            match std::fs::create_dir(&dir) {
                Ok(()) => made.push(true),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
                    made.push(false)
                }
                Err(error) => {
                    self.undo_dirs(&new[..made.len()], &made);
                    return Err(storage::Error::io("creating", dir, error));
                }
            }
            if i % CREATES_BETWEEN_YIELDS == 0 {
                glommio::yield_if_needed().await;
            }
        }
        if made.iter().any(|&m| m) {
            if let Err(error) = storage::file::sync_dir(&self.config.data_dir).await {
                self.undo_dirs(new, &made);
                return Err(error);
            }
        }
        Ok(made)
    }

    fn undo_dirs(&self, partitions: &[(Arc<str>, usize)], made: &[bool]) {
        for ((topic, index), _) in partitions.iter().zip(made).filter(|(_, &m)| m) {
            if let Err(error) = remove_dir(self.partition_dir(topic, *index)) {
                tracing::error!(%error, "cannot remove a partition of a failed change");
            }
        }
    }

    /// Registers the partitions of `table` this shard owns: new ones idle,
    /// known ones with their config brought up to date.
    fn register(&self, old: &TopicTable, table: &TopicTable, created: Vec<bool>) {
        let mut created = created.into_iter();
        let mut logs = self.logs.borrow_mut();
        for topic in table.iter() {
            let config = topic.config.log_config();
            let before = old.get(&topic.name).filter(|o| o.id == topic.id);
            let changed = before.is_none_or(|o| o.config != topic.config);
            let known = before.map_or(0, |o| o.partition_shards.len());
            let slots = logs.entry(topic.name.clone()).or_default();
            slots.resize_with(topic.partition_shards.len(), || None);
            for (index, &owner) in topic.partition_shards.iter().enumerate() {
                // In a cluster, a partition without a replica here has no directory.
                if owner != self.id || topic.role(index) == ReplicaRole::Absent {
                    continue;
                }
                if index >= known {
                    // A directory that was there already may hold segments.
                    let made_here = created.next().unwrap_or(false);
                    slots[index] = Some(Slot::Idle(Idle {
                        config: config.clone(),
                        may_hold_sealed: !made_here,
                        queue: None,
                    }));
                    continue;
                }
                match &mut slots[index] {
                    Some(Slot::Open { log, .. }) if changed => log.set_config(config.clone()),
                    Some(Slot::Idle(idle)) if changed => idle.config = config.clone(),
                    // An opening log takes the table's config when it is
                    // open, a closing one when it is closed.
                    _ => {}
                }
            }
        }
    }

    /// Opens idle partitions whose directories hold sealed segments, so that
    /// retention and the cleaner see them; the others are marked as having
    /// none (an idle partition gains no segment until it is opened).
    pub(super) async fn open_idle_with_sealed_segments(&self) {
        let candidates: Vec<(Arc<str>, usize)> = self
            .logs
            .borrow()
            .iter()
            .flat_map(|(topic, slots)| {
                slots
                    .iter()
                    .enumerate()
                    .filter_map(|(index, slot)| match slot {
                        Some(Slot::Idle(idle)) if idle.may_hold_sealed => {
                            Some((topic.clone(), index))
                        }
                        _ => None,
                    })
            })
            .collect();
        for (topic, index) in candidates {
            glommio::yield_if_needed().await;
            match storage::segment_count(&self.partition_dir(&topic, index)) {
                Ok(count) if count > 1 => {
                    if let Err(error) = self.owned_log(&topic, PartitionId::from_index(index)).await
                    {
                        tracing::error!(%topic, partition = index, %error, "opening a partition for retention failed");
                    }
                }
                Ok(_) => self.mark_without_sealed(&topic, index),
                Err(error) => {
                    tracing::error!(%topic, partition = index, %error, "listing a partition's segments failed")
                }
            }
        }
    }

    /// Closes the open logs that no read or write took since the last call
    /// (so a log is closed between one and two calls' intervals after its
    /// last use), and makes their partitions idle again. A log someone holds
    /// (a fetch waiting on it) or with a transaction open stays open.
    pub(super) async fn close_unused_logs(&self) {
        let unused: Vec<(Arc<str>, usize, Rc<PartitionLog>, AppendTurn)> = {
            let mut logs = self.logs.borrow_mut();
            let mut unused = Vec::new();
            for (topic, slots) in logs.iter_mut() {
                for (index, slot) in slots.iter_mut().enumerate() {
                    let Some(Slot::Open { log, used }) = slot else {
                        continue;
                    };
                    if std::mem::take(used) || !closable(log) {
                        continue;
                    }
                    // Appends that arrive while it closes queue behind the close.
                    let Some(turn) = log.try_append_turn() else {
                        continue;
                    };
                    let queue = log.append_queue();
                    if let Some(Slot::Open { log, .. }) = slot.replace(Slot::Closing(queue)) {
                        unused.push((topic.clone(), index, log, turn));
                    }
                }
            }
            unused
        };
        if unused.is_empty() {
            return;
        }
        self.openings.set(self.openings.get() + unused.len());
        let close = |(topic, index, log, turn): (Arc<str>, usize, Rc<PartitionLog>, AppendTurn)| async move {
            let closed = log.close_in_turn(Some(turn)).await;
            self.settle_closing(&topic, index, log, closed);
            self.openings.set(self.openings.get() - 1);
            self.opened.notify_all();
        };
        futures::StreamExt::for_each_concurrent(
            futures::stream::iter(unused),
            CLOSES_IN_FLIGHT_MAX,
            close,
        )
        .await;
    }

    /// Puts a closed log's partition back as idle (with the table's config),
    /// or the log back as open when it could not be closed.
    fn settle_closing(
        &self,
        topic: &str,
        index: usize,
        log: Rc<PartitionLog>,
        closed: Result<(), storage::Error>,
    ) {
        let config = match self.topics().get(topic) {
            Some(topic) => topic.config.log_config(),
            None => log.config(),
        };
        let mut logs = self.logs.borrow_mut();
        let Some(slot) = logs
            .get_mut(topic)
            .and_then(|slots| slots.get_mut(index))
            .and_then(Option::as_mut)
        else {
            return;
        };
        *slot = match closed {
            Ok(()) => Slot::Idle(Idle {
                config,
                may_hold_sealed: log.segment_count() > 1,
                queue: Some(log.append_queue()),
            }),
            Err(error) => {
                tracing::error!(topic, partition = index, %error, "closing an unused partition failed");
                Slot::Open { log, used: true }
            }
        };
    }

    fn mark_without_sealed(&self, topic: &str, index: usize) {
        let mut logs = self.logs.borrow_mut();
        let slot = logs.get_mut(topic).and_then(|slots| slots.get_mut(index));
        if let Some(Some(Slot::Idle(idle))) = slot {
            idle.may_hold_sealed = false;
        }
    }
}

/// Whether an unused log may close: nobody else holds it, and no
/// transaction is open on it (its last stable offset is its end).
fn closable(log: &Rc<PartitionLog>) -> bool {
    Rc::strong_count(log) == 1 && log.last_stable_offset() == log.high_watermark()
}

fn remove_dir(dir: PathBuf) -> Result<(), storage::Error> {
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(storage::Error::io("removing", dir, error)),
    }
}
