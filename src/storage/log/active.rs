//! The write position in the active segment: bytes staged and issued, the
//! partial last block the next write rewrites, and the space reserved ahead
//! of the writes. It starts afresh with every segment.

use std::cell::Cell;
use std::rc::Rc;

use super::super::error::Error;
use super::super::file::{self, SegmentFile};
use super::super::segment::Segment;

/// Bounds of one space reservation ahead of the writes. A reservation grows
/// with the segment (doubling), so a quiet partition holds little unused space
/// and a busy one calls fallocate rarely.
pub(super) const RESERVE_STEP_MIN: u64 = 1024 * 1024;
pub(super) const RESERVE_STEP_MAX: u64 = 64 * 1024 * 1024;
/// A segment reserves space only once it holds this much: a partition
/// written rarely reserves nothing (100,000 of them would otherwise hold
/// 100 GB unwritten), and one written fast gets here within its first writes.
pub(super) const RESERVE_AFTER_BYTES: u64 = 1024 * 1024;
/// Space a shard's active segments may hold reserved ahead of their writes
/// in all; past it, appends extend their files until writes catch up.
pub const RESERVED_AHEAD_BYTES_PER_SHARD_MAX: u64 = 2 * 1024 * 1024 * 1024;

thread_local! {
    /// Bytes this shard's active segments hold reserved and not yet written.
    static RESERVED_AHEAD_BYTES: Cell<u64> = const { Cell::new(0) };
}

/// Bytes this shard's active segments hold reserved ahead of their writes.
pub fn reserved_ahead_bytes() -> u64 {
    RESERVED_AHEAD_BYTES.with(Cell::get)
}

/// The file length to reserve, once the segment holds `RESERVE_AFTER_BYTES`,
/// when less than `RESERVE_STEP_MIN` would be left
/// ahead of a write ending at `write_end`: one step (the reserved length so
/// far, within the step bounds) past it, never past `segment_bytes` rounded up
/// to a block, where the segment rolls.
pub(super) fn next_reservation(reserved: u64, write_end: u64, segment_bytes: u64) -> Option<u64> {
    if write_end < RESERVE_AFTER_BYTES || write_end + RESERVE_STEP_MIN <= reserved {
        return None;
    }
    let from = reserved.max(write_end);
    let step = reserved.clamp(RESERVE_STEP_MIN, RESERVE_STEP_MAX);
    let target = (from + step).min(file::align_up(segment_bytes));
    (target > from).then_some(target)
}

/// Whether the segment reserves space ahead of its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reservation {
    Idle,
    InFlight,
    /// Buffered I/O, or a reservation failed (appends then extend the file).
    Off,
}

pub(super) struct ActiveWrite {
    /// The active segment's file.
    pub(super) file: Rc<SegmentFile>,
    /// Bytes written plus bytes staged for the next write.
    pub(super) staged_bytes: u64,
    /// Bytes handed to writes (the partial block of `tail` ends here).
    pub(super) issued_bytes: u64,
    /// The issued bytes of the partial last block, rewritten with the next write.
    pub(super) tail: Vec<u8>,
    /// File length reserved ahead of the writes. A direct write that ends
    /// below it does not extend the file, so io_uring completes it in line
    /// instead of handing it to a kernel worker thread on the shard's core.
    reserved_bytes: u64,
    reservation: Reservation,
    /// This segment's share of `RESERVED_AHEAD_BYTES`.
    counted_ahead: u64,
}

impl ActiveWrite {
    /// The write position at the end of `segment`, with its partial last
    /// block read back so the next write can rewrite that block whole.
    pub(super) async fn resume(segment: &Segment) -> Result<ActiveWrite, Error> {
        let file = segment.file().clone();
        let bytes = segment.written_bytes();
        let reservation = if file.is_direct() {
            Reservation::Idle
        } else {
            Reservation::Off
        };
        let mut tail = Vec::with_capacity(file::BLOCK_BYTES as usize);
        let block_start = file::align_down(bytes);
        if bytes > block_start {
            let read = file
                .read(block_start, (bytes - block_start) as usize)
                .await?;
            if read.len() as u64 != bytes - block_start {
                return Err(Error::io(
                    "reading the last block of",
                    file.path(),
                    std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                ));
            }
            tail.extend_from_slice(&read);
        }
        Ok(ActiveWrite {
            file,
            staged_bytes: bytes,
            issued_bytes: bytes,
            tail,
            reserved_bytes: bytes,
            reservation,
            counted_ahead: 0,
        })
    }

    /// Starts a reservation alongside a write ending at `write_end`, when one is
    /// due (see `next_reservation`), and returns the file length to reserve.
    pub(super) fn start_reservation(&mut self, write_end: u64, segment_bytes: u64) -> Option<u64> {
        self.recount();
        if self.reservation != Reservation::Idle {
            return None;
        }
        let target = next_reservation(self.reserved_bytes, write_end, segment_bytes)?;
        let more = target - self.reserved_bytes.max(write_end);
        if reserved_ahead_bytes() + more > RESERVED_AHEAD_BYTES_PER_SHARD_MAX {
            return None;
        }
        self.reservation = Reservation::InFlight;
        Some(target)
    }

    /// Records how a reservation to `target` ended.
    pub(super) fn finish_reservation(&mut self, target: u64, result: Result<(), Error>) {
        match result {
            Ok(()) => {
                self.reserved_bytes = self.reserved_bytes.max(target);
                self.reservation = Reservation::Idle;
                self.recount();
            }
            Err(error) => {
                tracing::warn!(%error, "reserving segment space failed; appends to this segment extend the file instead");
                self.reservation = Reservation::Off;
            }
        }
    }
}

impl ActiveWrite {
    /// The file was trimmed to its written bytes: nothing is reserved ahead
    /// any more, and nothing will be.
    pub(super) fn give_back_reservation(&mut self) {
        self.reserved_bytes = self.issued_bytes;
        self.reservation = Reservation::Off;
        self.recount();
    }

    /// Brings this segment's share of the shard's reserved-ahead bytes up to date.
    fn recount(&mut self) {
        let ahead = self.reserved_bytes.saturating_sub(self.issued_bytes);
        let before = std::mem::replace(&mut self.counted_ahead, ahead);
        RESERVED_AHEAD_BYTES.with(|total| total.set(total.get() - before + ahead));
    }
}

impl Drop for ActiveWrite {
    fn drop(&mut self) {
        let counted = self.counted_ahead;
        RESERVED_AHEAD_BYTES.with(|total| total.set(total.get().saturating_sub(counted)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn reservations_start_once_a_segment_holds_a_mebibyte_and_double_up_to_the_step_limit() {
        assert_eq!(
            next_reservation(0, 4096, GIB),
            None,
            "a rare writer reserves nothing"
        );
        assert_eq!(next_reservation(0, MIB - 1, GIB), None);
        assert_eq!(next_reservation(0, MIB, GIB), Some(2 * MIB));
        let mut reserved = 2 * MIB;
        let mut steps = Vec::new();
        while reserved < 300 * MIB {
            let next = next_reservation(reserved, reserved - MIB / 2, GIB).expect("due");
            steps.push(next - reserved);
            reserved = next;
        }
        assert_eq!(
            &steps[..6],
            &[2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB]
        );
        assert!(steps[6..].iter().all(|s| *s == RESERVE_STEP_MAX));
    }

    #[test]
    fn no_reservation_while_a_step_is_left_or_past_the_segment_size() {
        assert_eq!(next_reservation(8 * MIB, 7 * MIB, GIB), None);
        assert_eq!(next_reservation(8 * MIB, 7 * MIB + 1, GIB), Some(16 * MIB));
        // Capped where the segment rolls, rounded up to a whole block.
        assert_eq!(next_reservation(MIB, MIB, MIB + 100), Some(MIB + 4096));
        assert_eq!(next_reservation(MIB + 4096, MIB + 4000, MIB + 100), None);
        // A first batch larger than the segment size extends the file itself.
        assert_eq!(next_reservation(0, 3 * MIB, 2 * MIB), None);
    }
}
