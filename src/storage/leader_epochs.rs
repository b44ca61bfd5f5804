//! The leader epochs of a log and the offset each began at (Kafka's
//! `LeaderEpochFileCache`, the `leader-epoch-checkpoint`): what
//! OffsetForLeaderEpoch answers from (KIP-101, KIP-279, KIP-320).
//!
//! Rebuilt at open from the batches' `partitionLeaderEpoch` and kept on
//! append with one comparison per append, never per record. Epochs only
//! grow along a log, so a sealed segment whose first batch has the same
//! epoch as the next segment's first batch holds that epoch throughout and
//! needs no scan; only segments where the epoch changes are read whole.

use super::error::Error;
use super::segment;
use super::segment_set::SegmentSet;
use super::types::Offset;

/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Epochs kept per log; a log changes leader far less often than this
/// between retention passes, and the oldest entries go first when it does.
pub const EPOCHS_KEPT_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: Offset,
}

/// An epoch and the offset it ended at, as OffsetForLeaderEpoch answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub epoch: i32,
    pub end_offset: i64,
}

impl EpochEnd {
    pub const UNDEFINED: EpochEnd = EpochEnd {
        epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_EPOCH_OFFSET,
    };
}

/// Epochs ascending, each with the first offset written in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochs {
    /// Notes a batch written at `base_offset` in `epoch`; only a newer
    /// epoch adds an entry. Negative epochs (batches from before epochs
    /// were stamped) are not epochs (Kafka skips them too).
    pub fn on_batch(&mut self, epoch: i32, base_offset: Offset) {
        if epoch < 0 || self.latest().is_some_and(|e| e.epoch >= epoch) {
            return;
        }
        if self.entries.len() == EPOCHS_KEPT_MAX {
            self.entries.remove(0);
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset: base_offset,
        });
    }

    /// Kafka's `truncateFromStart`: epochs that ended before `log_start`
    /// are forgotten, and the one it falls in now begins there.
    pub fn truncate_from_start(&mut self, log_start: Offset) {
        let started = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= log_start)
            .count();
        if started == 0 {
            return;
        }
        self.entries.drain(..started - 1);
        self.entries[0].start_offset = log_start;
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The epoch `offset` was written in (Kafka's `epochForOffset`), if known.
    pub fn epoch_for_offset(&self, offset: Offset) -> Option<i32> {
        let found = self.entries.iter().rev().find(|e| e.start_offset <= offset);
        found.map(|e| e.epoch)
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the requested epoch's
    /// end is the start of the first later epoch, or `log_end` for the
    /// latest; an epoch older than every known one ends where the first
    /// known begins; a newer one, or -1, is undefined.
    pub fn end_offset_for(&self, requested: i32, log_end: Offset) -> EpochEnd {
        if requested == UNDEFINED_EPOCH {
            return EpochEnd::UNDEFINED;
        }
        if self.latest().is_some_and(|e| e.epoch == requested) {
            return EpochEnd {
                epoch: requested,
                end_offset: log_end.get(),
            };
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return EpochEnd::UNDEFINED;
        };
        let floor = self.entries.iter().rev().find(|e| e.epoch <= requested);
        EpochEnd {
            epoch: floor.map_or(requested, |e| e.epoch),
            end_offset: higher.start_offset.get(),
        }
    }

    /// The epochs of `segments` (recovered up to their written bytes),
    /// where the log's newest epoch is `current`.
    pub async fn rebuild(segments: &SegmentSet, current: i32) -> Result<LeaderEpochs, Error> {
        let mut epochs = LeaderEpochs::default();
        let mut firsts = Vec::with_capacity(segments.len());
        for s in segments.iter() {
            let first = segment::first_batch_header(s.file(), s.written_bytes()).await?;
            firsts.push(first.map(|h| (h.partition_leader_epoch, Offset(h.base_offset))));
        }
        let count = firsts.len();
        for (i, s) in segments.iter().enumerate() {
            let Some((epoch, base)) = firsts[i] else {
                continue;
            };
            // The epoch this segment ends in, where known without a scan.
            let next_epoch = if i + 1 == count {
                Some(current)
            } else {
                firsts[i + 1..].iter().flatten().next().map(|(e, _)| *e)
            };
            if next_epoch == Some(epoch) {
                epochs.on_batch(epoch, base);
                continue;
            }
            segment::scan_batches(s.file(), s.written_bytes(), |header, _| {
                epochs.on_batch(header.partition_leader_epoch, Offset(header.base_offset));
            })
            .await?;
        }
        Ok(epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(entries: &[(i32, i64)]) -> LeaderEpochs {
        let mut e = LeaderEpochs::default();
        for &(epoch, offset) in entries {
            e.on_batch(epoch, Offset(offset));
        }
        e
    }

    #[test]
    fn only_a_newer_epoch_adds_an_entry() {
        let e = epochs(&[(-1, 0), (0, 3), (0, 7), (2, 10), (1, 12), (2, 15), (5, 20)]);
        let found: Vec<(i32, i64)> = e
            .entries()
            .iter()
            .map(|x| (x.epoch, x.start_offset.get()))
            .collect();
        assert_eq!(found, vec![(0, 3), (2, 10), (5, 20)]);
    }

    #[test]
    fn end_offsets_follow_kafkas_leader_epoch_cache() {
        let e = epochs(&[(1, 0), (3, 10), (6, 25)]);
        let end = Offset(40);
        let at = |epoch| {
            let found = e.end_offset_for(epoch, end);
            (found.epoch, found.end_offset)
        };
        assert_eq!(at(6), (6, 40), "the latest epoch ends at the log end");
        assert_eq!(at(3), (3, 25), "an older one where the next begins");
        assert_eq!(at(1), (1, 10));
        assert_eq!(
            at(4),
            (3, 25),
            "an unknown epoch between: the one before it"
        );
        assert_eq!(at(0), (0, 0), "older than every known epoch");
        assert_eq!(at(7), (-1, -1), "newer than every known epoch");
        assert_eq!(at(-1), (-1, -1));
        assert_eq!(
            LeaderEpochs::default().end_offset_for(0, end),
            EpochEnd::UNDEFINED
        );
        assert_eq!(e.epoch_for_offset(Offset(9)), Some(1));
        assert_eq!(e.epoch_for_offset(Offset(25)), Some(6));
    }

    #[test]
    fn a_moved_log_start_forgets_the_epochs_before_it() {
        let mut e = epochs(&[(1, 0), (3, 10), (6, 25)]);
        e.truncate_from_start(Offset(0));
        assert_eq!(
            e.entries()[0],
            EpochEntry {
                epoch: 1,
                start_offset: Offset(0)
            }
        );
        e.truncate_from_start(Offset(12));
        let found: Vec<(i32, i64)> = e
            .entries()
            .iter()
            .map(|x| (x.epoch, x.start_offset.get()))
            .collect();
        assert_eq!(found, vec![(3, 12), (6, 25)]);
        assert_eq!(
            e.end_offset_for(1, Offset(40)),
            EpochEnd {
                epoch: 1,
                end_offset: 12
            }
        );
        e.truncate_from_start(Offset(30));
        assert_eq!(
            e.entries(),
            &[EpochEntry {
                epoch: 6,
                start_offset: Offset(30)
            }]
        );
    }

    #[test]
    fn the_oldest_epochs_go_first_past_the_bound() {
        let mut e = LeaderEpochs::default();
        for epoch in 0..(EPOCHS_KEPT_MAX as i32 + 3) {
            e.on_batch(epoch, Offset(i64::from(epoch) * 2));
        }
        assert_eq!(e.entries().len(), EPOCHS_KEPT_MAX);
        assert_eq!(e.entries()[0].epoch, 3);
    }
}
