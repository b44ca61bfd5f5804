//! Group commit: one fdatasync in flight at a time; everything made ready
//! while it runs is covered by the next one, so many appends share one sync.
//!
//! The owner numbers what it writes with increasing sequence numbers (bytes
//! for the partition log, records for the group log) and runs the sync itself.
//! This piece holds the durable frontier and the one-sync slot, and wakes the
//! waiters (in the order they began waiting) whenever either moves.

use std::cell::Cell;

use super::notify::Notify;

#[derive(Default)]
pub struct GroupCommit {
    /// Every sequence number up to this one is on stable storage.
    durable_seq: Cell<u64>,
    sync_in_flight: Cell<bool>,
    changed: Notify,
}

/// The right to run the one fdatasync, covering sequence numbers up to
/// `target_seq`. Give it back with [`GroupCommit::finish_sync`].
#[must_use = "the sync slot stays taken until finish_sync"]
pub struct SyncTurn {
    target_seq: u64,
}

impl GroupCommit {
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq.get()
    }

    pub fn covers(&self, seq: u64) -> bool {
        self.durable_seq.get() >= seq
    }

    pub fn sync_in_flight(&self) -> bool {
        self.sync_in_flight.get()
    }

    /// Takes the sync slot for a sync covering up to `target_seq`, unless a
    /// sync is already running (then its end is the next thing to wait for).
    pub fn begin_sync(&self, target_seq: u64) -> Option<SyncTurn> {
        if self.sync_in_flight.replace(true) {
            return None;
        }
        Some(SyncTurn { target_seq })
    }

    /// Frees the slot; when the sync succeeded, everything up to the turn's
    /// target is durable. Wakes every waiter either way.
    pub fn finish_sync(&self, turn: SyncTurn, synced: bool) {
        debug_assert!(self.sync_in_flight.get(), "a turn frees a taken slot");
        self.sync_in_flight.set(false);
        if synced {
            self.advance(turn.target_seq);
        }
        self.changed.notify_all();
    }

    /// Marks everything up to `seq` durable when a sync outside the slot
    /// covered it (sealing a segment syncs its file).
    pub fn mark_durable(&self, seq: u64) {
        self.advance(seq);
        self.changed.notify_all();
    }

    /// Wakes every waiter so it looks at its owner's state again (a failure or
    /// a close).
    pub fn wake_all(&self) {
        self.changed.notify_all();
    }

    /// Waits until `seq` is durable, or `failed` reports why it never will be.
    /// The sync is someone else's job (a flusher task, another waiter).
    pub async fn wait_durable<E>(
        &self,
        seq: u64,
        mut failed: impl FnMut() -> Option<E>,
    ) -> Result<(), E> {
        loop {
            if self.covers(seq) {
                return Ok(());
            }
            if let Some(error) = failed() {
                return Err(error);
            }
            self.next_change().await;
        }
    }

    /// Resolves at the next change of the frontier or the slot.
    pub async fn next_change(&self) {
        let epoch = self.changed.epoch();
        self.changed.changed(epoch).await;
    }

    fn advance(&self, seq: u64) {
        self.durable_seq.set(self.durable_seq.get().max(seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sync_at_a_time_and_the_frontier_only_moves_forward() {
        let commit = GroupCommit::default();
        let turn = commit.begin_sync(10).expect("slot is free");
        assert!(commit.begin_sync(20).is_none());
        commit.finish_sync(turn, true);
        assert!(commit.covers(10) && !commit.covers(11));
        let turn = commit.begin_sync(5).expect("slot is free again");
        commit.finish_sync(turn, true);
        assert_eq!(commit.durable_seq(), 10);
        let turn = commit.begin_sync(30).expect("slot is free again");
        commit.finish_sync(turn, false);
        assert_eq!(commit.durable_seq(), 10);
    }
}
